"""The plan: a versioned JSON contract between the engine, the service, the SDK and PEFT.

Import-light (no torch, peft imported lazily) so the SDK can return a `Plan`.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from heterolora._version import __version__
from heterolora.config import LORA_TYPES, SHORTCUT_TYPES, TASK_TYPES, BudgetKind
from heterolora.errors import PlanError
from heterolora.init.format import InitInfo, verify_artifact
from heterolora.training import TrainingInfo

SCHEMA_VERSION = "1.3"  # 1.1 added `labels`, 1.2 `init`, 1.3 `training`; older plans still load
PLAN_ATTR = "heterolora_plan"  # where apply_plan / load_adapted keep the plan on a model


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
    kind: BudgetKind
    request: dict[str, Any] = Field(description="The budget exactly as requested.")
    limit: int = Field(description="Parameter limit the request resolves to on this model.")
    used: int = Field(description="Trainable adapter parameters the plan uses (LoRA A/B + shortcuts).")


class Site(Protocol):
    """What a plan entry needs from a candidate site (heterolora.search_space.Candidate)."""

    name: str
    type: str
    layer: int
    d_in: int
    d_out: int


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

    @classmethod
    def from_candidate(cls, site: Site, *, rank: int, alpha: float, score: float = 0.0) -> ModuleEntry:
        """The entry for `site` at `rank` (0: not adapted, alpha 0)."""
        return cls(
            name=site.name,
            kind="shortcut" if site.type in SHORTCUT_TYPES else "lora",
            type=site.type,
            layer=site.layer,
            rank=rank,
            alpha=alpha if rank else 0.0,
            score=score,
            params=rank * (site.d_in + site.d_out),
            d_in=site.d_in,
            d_out=site.d_out,
        )


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
    labels: list[int | str] | None = Field(
        default=None, description="seq-cls class names: label id i is labels[i] (see docs/plan-format.md)."
    )
    modules: list[ModuleEntry]
    peft: PeftKwargs
    shortcuts: dict[str, Any] | None = Field(
        default=None,
        description="Machine-readable shortcut section (placement, alpha); see docs/shortcuts.md.",
    )
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds per phase.")
    # ---- gradient init (heterolora/init/build.py): section + tensor file bytes ----
    init: InitInfo | None = Field(default=None, description="LoRA A/B init carried by the plan (plan-format.md).")
    training: TrainingInfo | None = Field(
        default=None, description="The training recipe the plan's evidence was measured with (make_optimizer)."
    )
    _init_data: bytes | None = PrivateAttr(default=None)
    _job_id: str | None = PrivateAttr(default=None)

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
    def job_id(self) -> str | None:
        """The service job that computed this plan (the SDK sets it; not part of the JSON)."""
        return self._job_id

    @job_id.setter
    def job_id(self, value: str | None) -> None:
        self._job_id = value

    @property
    def recommended_learning_rate(self) -> float | None:
        """The plan's training rate (its training section), else the one its init was built for
        (None: a plan from before the training section with standard init, no advice)."""
        if self.training is not None:
            return self.training.learning_rate
        if self.init is not None:
            return self.init.recommended_learning_rate
        return self.settings.get("learning_rate")

    @classmethod
    def build(
        cls,
        *,
        model: ModelInfo,
        task: str,
        proxy: str,
        seed: int,
        budget: BudgetInfo,
        modules: list[ModuleEntry],
        use_rslora: bool,
        fan_in_fan_out: bool,
        modules_to_save: list[str] | None,
        settings: dict[str, Any],
        **extra: Any,
    ) -> Plan:
        """A plan stamped with this version and time, its PEFT kwargs derived from `modules`.
        `extra`: the optional sections (labels, shortcuts, timings, init; the engine adds a gradient
        init after allocation, with its tensor file: heterolora.init.build.attach_init)."""
        return cls(
            heterolora_version=__version__,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            model=model,
            task=task,
            proxy=proxy,
            seed=seed,
            budget=budget,
            alpha_mode="rslora" if use_rslora else "constant_ratio",
            settings=settings,
            modules=modules,
            peft=build_peft_kwargs(
                modules,
                use_rslora=use_rslora,
                fan_in_fan_out=fan_in_fan_out,
                modules_to_save=modules_to_save if task == "seq-cls" else None,
                task_type=TASK_TYPES[task],
            ),
            **extra,
        )

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


def rank_grid(plan: Plan) -> tuple[list[str], list[int], dict[tuple[str, int], int]]:
    """(column types in canonical order, layers, {(type, layer): rank})."""
    cells = {(m.type, m.layer): m.rank for m in plan.modules}
    present = {t for t, _ in cells}
    types = [t for t in (*LORA_TYPES, *SHORTCUT_TYPES) if t in present]
    return types, list(range(plan.model.num_layers)), cells


def rank_table(plan: Plan) -> str:
    types, layers, cells = rank_grid(plan)
    widths = {t: max(6, len(t) + 2) for t in types}
    lines = ["layer" + "".join(t.rjust(widths[t]) for t in types)]
    for layer in layers:
        row = "".join((str(cells[(t, layer)]) if (t, layer) in cells else "-").rjust(widths[t]) for t in types)
        lines.append(f"{layer:>5}{row}")
    b = plan.budget
    lines.append(
        f"budget {b.kind}: used {b.used:,} of {b.limit:,} parameters ({100 * b.used / max(b.limit, 1):.1f}%), "
        f"max rank {plan.max_rank}, proxy {plan.proxy}"
    )
    if plan.training is not None:
        lines.append(plan.training.summary())
    return "\n".join(lines)


def plan_of(peft_model: Any) -> Plan:
    """The plan `apply_plan` / `load_adapted` attached to a model."""
    plan = getattr(peft_model, PLAN_ATTR, None)
    if plan is None:
        raise PlanError("no plan attached to this model; pass the Plan", field="plan")
    return plan
