"""Fine-tuning quality benchmark (issue 5); the same as `heterolora bench quality`.

python benchmarks/quality.py --task mrpc --seeds 0,1,2 --data-dir ../shared/data/glue
python benchmarks/quality.py --quick --task mrpc        # tiny subset, 1 epoch, two arms
python benchmarks/quality.py --merge-only --task mrpc   # rebuild quality-mrpc.{json,md,png}
"""

from heterolora.bench.cli import quality

if __name__ == "__main__":
    quality(prog_name="heterolora bench quality")
