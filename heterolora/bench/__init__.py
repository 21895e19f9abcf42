"""Benchmarks shipped with the package: `heterolora bench quality` (fine-tuning quality)."""
