"""What a request may ask for: sample count, allowed models, local folders without traversal."""

from __future__ import annotations

import os
import re
from fnmatch import fnmatchcase
from pathlib import Path

from heterolora.errors import ConfigError, ModelNotAllowedError
from heterolora.schemas import AllocateRequest
from service.settings import Settings

# org/name or a bare name such as "minilm"; no "..", no leading dot or dash.
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?", re.ASCII)


def check_request(request: AllocateRequest, settings: Settings) -> None:
    if len(request.samples) > settings.max_samples:
        raise ConfigError(
            f"{len(request.samples)} samples is more than the limit of {settings.max_samples}", field="samples"
        )
    check_model(request.model_id, settings)


def is_local_path(model_id: str) -> bool:
    return model_id.startswith(("/", ".", "~")) or "\\" in model_id or model_id.count("/") > 1


def check_model(model_id: str, settings: Settings) -> None:
    """Raise unless `model_id` is an allowed hub id or a folder under HETEROLORA_MODEL_DIRS."""
    if is_local_path(model_id):
        check_local_path(model_id, settings.model_dirs)
        return
    if not HUB_ID.fullmatch(model_id) or ".." in model_id:
        raise ConfigError(
            "model_id must be a hub id such as 'org/name', 'minilm', or an absolute folder path", field="model_id"
        )
    if not any(fnmatchcase(model_id, pattern) for pattern in settings.model_allowlist):
        raise ModelNotAllowedError(f"model {model_id!r} is not in HETEROLORA_MODEL_ALLOWLIST", field="model_id")


def check_local_path(model_id: str, model_dirs: list[str]) -> None:
    if not model_dirs:
        raise ModelNotAllowedError("local model paths are disabled (HETEROLORA_MODEL_DIRS is empty)", field="model_id")
    path = Path(model_id)
    if not path.is_absolute() or ".." in path.parts:
        raise ModelNotAllowedError("a local model path must be absolute, without '..'", field="model_id")
    # realpath follows symlinks, so a link inside an allowed folder cannot point outside it.
    real = Path(os.path.realpath(path))
    for folder in model_dirs:
        root = Path(os.path.realpath(folder))
        if real != root and real.is_relative_to(root):
            return
    raise ModelNotAllowedError(f"{model_id!r} is not under HETEROLORA_MODEL_DIRS", field="model_id")
