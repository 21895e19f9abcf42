"""Secure defaults of `heterolora serve` (real uvicorn processes, single-machine mode): without
API keys it serves on loopback only, with a warning; it refuses another address unless
HETEROLORA_AUTH=disabled, which then warns at every start. Before, it served anyone anywhere."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from devtools.stack import REPO, Api, env_for
from heterolora.samples import builtin_sample

pytestmark = pytest.mark.integration
pytest_plugins = ("stack_fixtures",)  # fixture: model_root


def open_env(model_root: Path, **extra: str | None) -> dict[str, str]:
    return env_for(None, model_root, HETEROLORA_API_KEYS=None, **extra)


def test_no_keys_refuses_a_reachable_address(tmp_path: Path, model_root: Path) -> None:
    api = Api(open_env(model_root), tmp_path / "api.log", host="0.0.0.0")
    done = subprocess.run(api.command(), env=api.env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "no API keys: refusing to serve on 0.0.0.0" in done.stderr and "HETEROLORA_AUTH=disabled" in done.stderr


def test_no_keys_serves_loopback_with_a_warning(tmp_path: Path, model_root: Path) -> None:
    api = Api(open_env(model_root), tmp_path / "api.log").start()
    try:
        assert "WARNING: no API keys" in api.log.read_text()
        r = httpx.post(api.url + "/allocate", json={"model_id": "minilm", "samples": builtin_sample()[:8]})
        assert r.status_code == 202  # zero setup on one's own machine
    finally:
        api.stop()


def test_auth_disabled_allows_any_address_and_warns(tmp_path: Path, model_root: Path) -> None:
    api = Api(open_env(model_root, HETEROLORA_AUTH="disabled"), tmp_path / "api.log", host="0.0.0.0").start()
    try:
        assert "WARNING: authentication is disabled (HETEROLORA_AUTH=disabled)" in api.log.read_text()
    finally:
        api.stop()
