"""Dependency direction and import weight."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> list[str]:
    """Top-level packages a file imports, at any depth (inside functions too)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return [n.split(".")[0] for n in names]


def test_engine_imports_nothing_from_service_or_worker() -> None:
    """Only the CLI's `serve`/`worker` commands import them, lazily inside the command bodies."""
    allowed = ROOT / "heterolora" / "cli" / "service.py"
    offenders = [
        f"{path.relative_to(ROOT)}: {top}"
        for path in (ROOT / "heterolora").rglob("*.py")
        for top in _imports(path)
        if top in ("service", "worker") and path != allowed
    ]
    assert offenders == []


def test_service_imports_nothing_from_worker() -> None:
    """worker/ imports service/, never the reverse: the Celery app lives with the job machinery."""
    offenders = [
        f"{path.relative_to(ROOT)}: {top}"
        for path in (ROOT / "service").rglob("*.py")
        for top in _imports(path)
        if top == "worker"
    ]
    assert offenders == []


def test_light_modules_do_not_import_torch() -> None:
    code = "import sys, heterolora, heterolora.plans, heterolora.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_never_trust_remote_code() -> None:
    flag = "trust_remote_code" + "=True"
    for top in ("heterolora", "service", "worker", "benchmarks"):
        for path in (ROOT / top).rglob("*.py"):
            assert flag not in path.read_text().replace(" ", ""), path


def test_public_surface() -> None:
    import heterolora

    assert heterolora.__all__ == sorted(heterolora.__all__)
    for name in heterolora.__all__:
        assert getattr(heterolora, name) is not None


BLOCKER = """
import importlib.abc, sys
HEAVY = {HEAVY}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError(f"{{name}} is blocked")
sys.meta_path.insert(0, Block())
"""


def test_the_sdk_needs_nothing_heavier_than_pydantic_and_httpx() -> None:
    heavy = {"torch", "transformers", "peft", "numpy", "safetensors", "tokenizers", "tqdm", "click"}
    heavy |= {"fastapi", "uvicorn", "celery", "redis", "pydantic_settings", "matplotlib", "prometheus_client"}
    code = BLOCKER.format(HEAVY=sorted(heavy)) + (
        "import heterolora.client as c, heterolora\n"
        "plan = heterolora.Plan.model_json_schema()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in HEAVY))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_serve_and_worker_name_the_missing_service_extra(monkeypatch) -> None:
    from click.testing import CliRunner

    from heterolora.cli import main

    monkeypatch.setitem(sys.modules, "fastapi", None)  # what an install without [service] looks like
    for command in ("serve", "worker"):
        res = CliRunner().invoke(main, [command])
        assert res.exit_code == 1, res.output
        assert "pip install 'heterolora[service]' (missing: fastapi)" in res.output
        assert "Traceback" not in res.output
