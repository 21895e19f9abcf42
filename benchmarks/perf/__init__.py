"""The performance benchmark (`python -m benchmarks.perf`, `make bench-perf`); docs/performance.md."""
