"""Model loading: hub ids resolve from the local HF cache when offline (the hub itself cannot be
reached here, so the test lays out a real cache folder instead), local folders, the embedded model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from heterolora.errors import ModelNotFoundError
from heterolora.loading import embedded_model_path, folder_fingerprint, load_model, resolve_source

SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


def _hub_cache(tmp_path):
    """A hub cache holding 'acme/tiny-bert' in the layout huggingface_hub writes."""
    from conftest import tiny_model

    repo = tmp_path / "hub" / "models--acme--tiny-bert"
    snap = repo / "snapshots" / SNAPSHOT
    tiny_model("bert").save_pretrained(snap)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (embedded_model_path() / name).exists():
            shutil.copy(embedded_model_path() / name, snap / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SNAPSHOT)
    return tmp_path / "hub"


def test_hub_id_loads_offline_from_the_cache(tmp_path) -> None:
    cache = _hub_cache(tmp_path)
    code = (
        "from heterolora.loading import load_model;"
        "m = load_model('acme/tiny-bert', 'seq-cls', num_labels=3);"
        "print(type(m.model).__name__, m.model.config.num_labels, m.revision)"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["BertForSequenceClassification", "3", SNAPSHOT]


def test_unknown_hub_id_offline_is_model_not_found() -> None:
    with pytest.raises(ModelNotFoundError, match="cannot load model 'acme/does-not-exist'") as err:
        load_model("acme/does-not-exist")
    assert err.value.code == "model_not_found" and err.value.field == "model_id"


def test_local_folder_and_fingerprint(tmp_path) -> None:
    from conftest import tiny_model

    tiny_model("llama").save_pretrained(tmp_path / "m")
    assert resolve_source(str(tmp_path / "m")) == (str(tmp_path / "m"), True)
    first = folder_fingerprint(tmp_path / "m")
    assert first == folder_fingerprint(tmp_path / "m") and first.startswith("sha256:")
    tiny_model("llama", seed=1).save_pretrained(tmp_path / "m")
    assert folder_fingerprint(tmp_path / "m") != first
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"without config\.json"):
        resolve_source(str(tmp_path / "empty"))


def test_embedded_aliases() -> None:
    path = embedded_model_path()
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    for alias in ("minilm", "sentence-transformers/all-MiniLM-L6-v2"):
        assert resolve_source(alias) == (str(path), True)
