"""The plan's `init` section and its tensor file: format, names and integrity. Import-light (no
torch), so the SDK can verify a downloaded artifact. See docs/plan-format.md, "Initialisation".

The tensors are a safetensors file in PEFT's adapter key layout (`KEY_FORMAT`), so
`peft.set_peft_model_state_dict` and `PeftModel.from_pretrained(..., is_trainable=True)` load them.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from heterolora.errors import PlanError

InitMethod = Literal["zero", "gradient"]
InitVariant = Literal["lora_ga", "gora"]

KEY_FORMAT = "base_model.model.{module}.lora_{factor}.weight"
DEFAULT_FILE = "adapter.safetensors"
# The default variant and the learning rate each is built for when the request names none, from the
# MRPC train hold-out pilot (benchmarks/results/init-variant-pilot.md: gora 72.12 at 3e-3, the
# rate tuned for standard LoRA; lora_ga 69.42 at 1e-3 and 69.17 at 3e-3) and the first calibration of
# the gradient init (PEFT's lora_ga: 82.60 at 1e-3 on validation, majority-class collapse at 3e-3).
DEFAULT_INIT_VARIANT: InitVariant = "gora"
# gora: the rate the round-3 hold-out sweep picked for it (docs/plan-format.md), as for standard LoRA
DEFAULT_LEARNING_RATE: dict[str, float] = {"lora_ga": 1e-3, "gora": 1e-3}
LORA_GA_GAMMA = 16  # LoRA-GA's stable scale: B * d_out**0.25 / sqrt(gamma) (PEFT's default gamma)
MAX_ARTIFACT_BYTES = 2 << 30  # bound on a tensor file the SDK accepts (2 GiB)


class InitInfo(BaseModel):
    """How the plan's LoRA A and B start, and what the user must do with the base weights."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["gradient"] = "gradient"
    variant: InitVariant = Field(description="lora_ga: function-preserving; gora: base untouched, one-step change.")
    direction: str = Field(description="Which singular vectors go to A and B (LoRA-GA's ArB2r) or 'random_A'.")
    scale: str = Field(description="Scale rule: 'stable' (LoRA-GA, gamma) or 'one_step' (GoRA-like, lr).")
    stable_gamma: int | None = Field(default=None, description="LoRA-GA stable scale gamma.")
    recommended_learning_rate: float = Field(gt=0, description="The learning rate the init was built for.")
    base_correction: bool = Field(
        description="True: before training, subtract scaling * B @ A from each adapted base weight "
        "(W in (d_out, d_in); Conv1D stores W transposed). The model's step-0 function is then unchanged."
    )
    gradient: str = Field(default="mean over the scoring batches of dL/dW", description="What was factorised.")
    num_batches: int = Field(ge=1, description="Scoring batches the gradient was averaged over.")
    seed: int = Field(description="Seed of the random A (gora) and of nothing else.")
    shortcuts: Literal["standard"] = Field(
        default="standard", description="Shortcut modules keep their standard init (A random, B zero)."
    )
    file: str = Field(default=DEFAULT_FILE, description="Tensor file name, next to the plan JSON.")
    key_format: str = KEY_FORMAT
    dtype: Literal["float32"] = "float32"
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the tensor file.")
    size: int = Field(ge=0, le=MAX_ARTIFACT_BYTES, description="Bytes of the tensor file.")
    modules: int = Field(ge=0, description="LoRA modules initialised (each has an A and a B key).")

    @field_validator("file")
    @classmethod
    def _bare_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.safetensors", v):
            raise ValueError("init.file must be a bare *.safetensors file name")
        return v


def adapter_key(module: str, factor: Literal["A", "B"]) -> str:
    """The PEFT state-dict key of one LoRA factor (no adapter name, as PEFT saves it)."""
    return KEY_FORMAT.format(module=module, factor=factor)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_artifact(data: bytes, info: InitInfo, source: str = "init tensor file") -> bytes:
    """Return `data` if its size and sha256 match the plan's init section, else raise PlanError."""
    if len(data) != info.size:
        raise PlanError(f"{source} has {len(data)} bytes, the plan says {info.size}", field="init.size")
    digest = sha256_hex(data)
    if digest != info.sha256:
        raise PlanError(
            f"{source} does not match the plan (sha256 {digest[:12]}..., expected {info.sha256[:12]}...): "
            "it was changed or belongs to another plan",
            field="init.sha256",
        )
    return data
