"""A real MLflow tracking store (sqlite, no server) for the tests that log plans. Load it with
`pytest_plugins = ("mlflow_store",)` and use the `mlflow_uri` fixture.

The store is made once per session (creating its tables takes seconds); each test gets it in
$MLFLOW_TRACKING_URI and runs in its own folder, so experiments it creates keep their artifacts
under its tmp_path.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mlflow_store_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    mlflow = pytest.importorskip("mlflow")
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder}/mlflow.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)  # MLflow's default experiment keeps its artifacts under the folder it was made in
        mlflow.MlflowClient(uri).search_experiments()  # creates the tables
    return uri


@pytest.fixture
def mlflow_uri(mlflow_store_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """$MLFLOW_TRACKING_URI set to the session's store, no run or experiment preset, cwd tmp_path."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store_uri)
    for name in ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return mlflow_store_uri
