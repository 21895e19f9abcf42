from benchmarks.quality.cli import quality

quality(prog_name="python -m benchmarks.quality")
