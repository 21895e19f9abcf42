"""Performance benchmarks.

Transitional (until benchmarks/perf*.py move into this package): this package shadows the module
benchmarks/perf.py, the `make bench-perf` entry point, so its names are re-exported here and
`python -m benchmarks.perf` runs it through __main__.py. Drop this file's body when the move lands.
"""

import importlib.util as _importlib_util
import sys as _sys
from pathlib import Path as _Path

_spec = _importlib_util.spec_from_file_location("benchmarks._perf_entry", _Path(__file__).parents[1] / "perf.py")
_entry = _importlib_util.module_from_spec(_spec)
_sys.modules[_spec.name] = _entry  # dataclasses look their module up there
_spec.loader.exec_module(_entry)
globals().update({k: v for k, v in vars(_entry).items() if not k.startswith("__")})
