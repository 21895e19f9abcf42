"""The plan: a versioned JSON contract between the engine, the service, the SDK and PEFT.

Import-light (no torch, peft imported lazily) so the SDK can return a `Plan`.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from heterolora.errors import PlanError
from heterolora.init_format import InitInfo, verify_artifact

SCHEMA_VERSION = "1.0"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelInfo(_Model):
    id: str = Field(description="Model id or path as given by the user.")
    revision: str | None = Field(default=None, description="Hub commit, or a content hash for local folders.")
    architecture: str = Field(description="transformers class name, e.g. BertForSequenceClassification.")
    model_type: str = Field(description="config.model_type, e.g. bert, llama.")
    num_layers: int
    hidden_size: int | None = None


class BudgetInfo(_Model):
    kind: Literal["trainable_params", "like", "fraction"]
    request: dict[str, Any] = Field(description="The budget exactly as requested.")
    limit: int = Field(description="Parameter limit the request resolves to on this model.")
    used: int = Field(description="Trainable adapter parameters the plan uses (LoRA A/B + shortcuts).")


class ModuleEntry(_Model):
    name: str = Field(description="Full module name in model.named_modules() (LoRA) or a shortcut id.")
    kind: Literal["lora", "shortcut"] = "lora"
    type: str = Field(description="Canonical type: q k v o qkv gate up down, or a shortcut type.")
    layer: int
    rank: int = Field(ge=0, description="0 means not adapted.")
    alpha: float
    score: float
    params: int = Field(ge=0, description="Trainable parameters at this rank: r * (d_in + d_out).")
    d_in: int
    d_out: int


class PeftKwargs(_Model):
    """Keyword arguments for peft.LoraConfig (exact names, anchored patterns)."""

    r: int
    lora_alpha: float
    target_modules: list[str]
    rank_pattern: dict[str, int]
    alpha_pattern: dict[str, float]
    use_rslora: bool = False
    lora_dropout: float = 0.0
    fan_in_fan_out: bool = False
    modules_to_save: list[str] | None = None
    task_type: str | None = None


class Plan(_Model):
    schema_version: str = SCHEMA_VERSION
    heterolora_version: str = ""
    created_at: str = ""
    model: ModelInfo
    task: str
    proxy: str
    seed: int
    budget: BudgetInfo
    alpha_mode: Literal["constant_ratio", "rslora"] = "constant_ratio"
    settings: dict[str, Any] = Field(default_factory=dict, description="Options that produced the plan.")
    modules: list[ModuleEntry]
    peft: PeftKwargs
    shortcuts: dict[str, Any] | None = Field(
        default=None,
        description="Machine-readable shortcut section (placement, alpha); see docs/shortcuts.md.",
    )
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds per phase.")
    # ---- gradient init (issue 14; heterolora/gradient_init.py): section + tensor file bytes ----
    init: InitInfo | None = Field(default=None, description="LoRA A/B init carried by the plan (plan-format.md).")
    _init_data: bytes | None = PrivateAttr(default=None)

    @property
    def init_data(self) -> bytes | None:
        """The init tensor file (safetensors bytes), verified against `init`; None for zero init."""
        return self._init_data

    def attach_init_data(self, data: bytes) -> Plan:
        """Keep the tensor file with the plan after checking it against the `init` section."""
        if self.init is None:
            raise ValueError("this plan has no init section")
        self._init_data = verify_artifact(data, self.init)
        return self

    @property
    def recommended_learning_rate(self) -> float | None:
        """The learning rate the plan's init was built for (None: standard init, no advice)."""
        if self.init is not None:
            return self.init.recommended_learning_rate
        return self.settings.get("learning_rate")

    # ---- views -------------------------------------------------------------------------
    @property
    def lora_modules(self) -> list[ModuleEntry]:
        return [m for m in self.modules if m.kind == "lora"]

    @property
    def shortcut_modules(self) -> list[ModuleEntry]:
        return [m for m in self.modules if m.kind == "shortcut"]

    @property
    def ranks(self) -> dict[str, int]:
        return {m.name: m.rank for m in self.modules if m.rank > 0}

    @property
    def max_rank(self) -> int:
        return max((m.rank for m in self.modules), default=0)

    def fingerprint(self) -> dict[str, Any]:
        """The plan without timestamps and timings: equal for equal inputs and seed."""
        # init.file is where Plan.save put the tensors, not part of the plan (its sha256 is).
        return self.model_dump(exclude={"created_at": True, "timings": True, "init": {"file"}})

    # ---- I/O ---------------------------------------------------------------------------
    def to_json(self, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent)

    def save(self, path: str | Path) -> Path:
        """Write the JSON; with an init, also its tensor file next to it (`<stem>.safetensors`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        plan = self
        if self.init is not None:
            if self._init_data is None:
                raise ValueError("plan has an init section but no tensor data; attach_init_data first")
            plan = self.model_copy(update={"init": self.init.model_copy(update={"file": f"{path.stem}.safetensors"})})
            (path.parent / plan.init.file).write_bytes(self._init_data)
        path.write_text(plan.to_json() + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        """Read the JSON and, with an init, its tensor file (sha256-verified; PlanError if not)."""
        path = Path(path)
        plan = cls.model_validate_json(path.read_text())
        if plan.init is not None:
            tensor_file = path.parent / plan.init.file
            if not tensor_file.is_file():
                raise PlanError(f"the plan's init tensor file {tensor_file} is missing", field="init.file")
            plan._init_data = verify_artifact(tensor_file.read_bytes(), plan.init, str(tensor_file))
        return plan

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls.model_validate(data)

    def to_lora_config(self, **overrides: Any) -> Any:
        """A `peft.LoraConfig` that applies exactly this plan's LoRA ranks."""
        from peft import LoraConfig

        kwargs = self.peft.model_dump(exclude_none=True)
        kwargs.update(overrides)
        return LoraConfig(**kwargs)

    def table(self) -> str:
        from heterolora.heatmap import rank_table

        return rank_table(self)


def pattern_key(name: str) -> str:
    """PEFT rank/alpha pattern key that matches exactly one full module name."""
    return "^" + re.escape(name)


def build_peft_kwargs(
    modules: list[ModuleEntry],
    *,
    use_rslora: bool,
    fan_in_fan_out: bool = False,
    modules_to_save: list[str] | None = None,
    task_type: str | None = None,
) -> PeftKwargs:
    chosen = sorted((m for m in modules if m.kind == "lora" and m.rank > 0), key=lambda m: m.name)
    if chosen:
        r, _ = Counter(m.rank for m in chosen).most_common(1)[0]
        alpha = next(m.alpha for m in chosen if m.rank == r)
    else:
        r, alpha = 8, 16.0
    return PeftKwargs(
        r=r,
        lora_alpha=alpha,
        target_modules=[m.name for m in chosen],
        # Every chosen module gets an exact, anchored key, so no key can shadow another (PEFT
        # takes the first regex match in dict order) and unmatched names cannot fall back silently.
        rank_pattern={pattern_key(m.name): m.rank for m in chosen},
        alpha_pattern={pattern_key(m.name): m.alpha for m in chosen},
        use_rslora=use_rslora,
        fan_in_fan_out=fan_in_fan_out,
        modules_to_save=modules_to_save or None,
        task_type=task_type,
    )
