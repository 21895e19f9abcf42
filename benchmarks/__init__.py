"""Benchmarks run from a repository checkout (not shipped in the wheel): `python -m benchmarks.quality`,
`python -m benchmarks.perf`, `python -m benchmarks.plan_stability`."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GLUE = REPO.parent / "shared" / "data" / "glue"  # the team's GLUE copy beside the checkout (never committed)
RESULTS = REPO / "benchmarks" / "results"
