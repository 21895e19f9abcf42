"""load_model's dtype and device_map options (the scale path: bf16 weights, multi-GPU placement)."""

from __future__ import annotations

import importlib.util
import shutil

import pytest
import torch
from conftest import tiny_model

from heterolora.errors import ConfigError
from heterolora.loading import embedded_model_path, load_model


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_model("llama", "causal-lm").save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (embedded_model_path() / name).exists():
            shutil.copy(embedded_model_path() / name, path / name)
    return path


def test_dtype_sets_the_weights_dtype_and_rejects_unknown_names(folder) -> None:
    loaded = load_model(str(folder), "causal-lm", dtype="bfloat16")
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
    with pytest.raises(ConfigError) as err:
        load_model(str(folder), "causal-lm", dtype="int8")
    assert err.value.field == "dtype"


@pytest.mark.skipif(importlib.util.find_spec("accelerate") is None, reason="accelerate is optional")
def test_device_map_auto_places_the_model_through_accelerate(folder) -> None:
    loaded = load_model(str(folder), "causal-lm", device_map="auto")
    devices = {p.device.type for p in loaded.model.parameters()}
    assert devices <= {"cpu", "cuda"} and "meta" not in devices  # every weight materialised


def test_device_map_without_accelerate_names_the_field(folder, monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "accelerate" else real(name, *a))
    with pytest.raises(ConfigError) as err:
        load_model(str(folder), "causal-lm", device_map="auto")
    assert err.value.field == "device_map"
