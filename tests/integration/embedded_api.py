"""A real `heterolora serve` in single-machine mode (uvicorn, no Redis) with an API key, shared by
the example and README tests. Loaded with `pytest_plugins = ("stack_fixtures", "embedded_api")`."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devtools.stack import REPO, Api, env_for

MAX_SAMPLES = "4096"  # the built-in sample (128 rows) must fit; devtools.stack caps at 64


@pytest.fixture(scope="session")
def embedded_api(tmp_path_factory: pytest.TempPathFactory, model_root: Path) -> Iterator[Api]:
    env = env_for(None, model_root, HETEROLORA_MAX_SAMPLES=MAX_SAMPLES, HETEROLORA_MAX_BODY_BYTES=str(2**22))
    running = Api(env, tmp_path_factory.mktemp("embedded-api") / "api.log").start()  # polls /healthz
    yield running
    running.stop()


@pytest.fixture(scope="session")
def user_env() -> Callable[..., dict[str, str]]:
    """`user_env(**extra)`: see `example_env`."""
    return example_env


def example_env(**extra: str) -> dict[str, str]:
    """Environment for running an example or README snippet as a user would: this checkout's code,
    the venv's `heterolora` on PATH, offline, and none of the caller's HETEROLORA_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HETEROLORA_")}
    env.update(
        PYTHONPATH=str(REPO),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHON=sys.executable,
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        # Two shared cores: one thread per process. Measured on the finetune example under load 8:
        # 39 s wall / 13 s CPU with one thread, 118 s / 35 s with two (threads spin on busy cores).
        OMP_NUM_THREADS="1",
    )
    env.update(extra)
    return env
