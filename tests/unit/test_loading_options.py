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


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    from devtools.stack import save_tiny_bert

    return save_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert")


def _request(folder, **over):
    from heterolora.schemas import AllocateRequest

    samples = [{"text": f"sample number {i} for the tiny model", "label": i % 2} for i in range(8)]
    base = {"model_id": str(folder), "samples": samples, "num_batches": 2, "batch_size": 4}
    return AllocateRequest(**(base | {"budget": {"trainable_params": 2000}, "max_length": 32} | over))


def test_the_request_dtype_overrides_the_worker_default(bert_folder) -> None:
    from heterolora.caches import ModelCache
    from service.jobs.run import run_request

    cache = ModelCache(size=2)
    plan = run_request(_request(bert_folder, dtype="bfloat16"), cache=cache, dtype="float32", device="cpu")
    assert plan.settings["weights_dtype"] == "bfloat16"
    plan = run_request(_request(bert_folder), cache=cache, dtype="float32", device="cpu")  # none asked: the worker's
    assert plan.settings["weights_dtype"] == "float32"
    assert sorted(key[3] for key in cache._items) == ["bfloat16", "float32"]  # two cached copies, told apart


def test_an_unknown_request_dtype_names_the_field(bert_folder) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as err:
        _request(bert_folder, dtype="int8")
    assert err.value.errors()[0]["loc"] == ("dtype",)


@pytest.mark.skipif(importlib.util.find_spec("accelerate") is None, reason="accelerate is optional")
def test_device_map_plans_like_one_device_and_is_cached_apart(bert_folder) -> None:
    """On this CPU-only machine accelerate's "auto" map puts every layer on the CPU, so the plan must
    equal the single-device one; the placement is part of the cache key (a GPU split is checked by
    tests/gpu on a machine with several GPUs)."""
    from heterolora.caches import ModelCache
    from service.jobs.run import run_request

    cache = ModelCache(size=2)
    mapped = run_request(_request(bert_folder), cache=cache, device="cpu", device_map="auto")
    single = run_request(_request(bert_folder), cache=cache, device="cpu")
    assert mapped.ranks == single.ranks and mapped.fingerprint() == single.fingerprint()
    assert sorted(key[4] for key in cache._items) == ["cpu", "device_map=auto"]
