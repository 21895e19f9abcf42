"""`python -m benchmarks.perf`: the performance benchmark (see __init__.py)."""

from benchmarks.perf import main

main()
