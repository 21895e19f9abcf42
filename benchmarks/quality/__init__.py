"""The fine-tuning quality benchmark (`python -m benchmarks.quality`, `make bench-quality`); docs/quality.md."""
