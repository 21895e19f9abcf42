"""Pytest fixtures over devtools.stack (loaded by the service test modules as a plugin)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devtools.stack import Stack, save_tiny_bert, start_stack, stop_stack


@pytest.fixture(scope="session")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    save_tiny_bert(root / "tiny-bert")
    return root


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, model_root: Path) -> Iterator[Stack]:
    """Redis + one worker + the API with auth on, shared by the API and SDK test modules."""
    running = start_stack(tmp_path_factory.mktemp("stack"), model_root)
    yield running
    stop_stack(running)


@pytest.fixture()
def http(stack: Stack) -> Iterator[httpx.Client]:
    with stack.api.client() as client:
        yield client
