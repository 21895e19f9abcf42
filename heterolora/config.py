"""Allocation options and the three budget forms. Import-light: no torch.

One definition serves the library, the CLI, the HTTP schema and the worker, so every knob is
described once (its `Field(description=...)` feeds OpenAPI and the docs).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from heterolora.errors import BudgetError, ConfigError
from heterolora.init.format import DEFAULT_INIT_VARIANT

# The vocabulary: every name and default is defined here once; Literals, the CLI's choices, the
# HTTP schema and the dynamic variant derive from these.
TASK_TYPES = {"seq-cls": "SEQ_CLS", "causal-lm": "CAUSAL_LM"}  # task -> peft.TaskType
TASKS = tuple(TASK_TYPES)
POOLED_HEAD = "PooledSequenceClassifier"  # a seq-cls model that pools as its checkpoint declares (heads.py)
PROXY_NAMES = ("constant", "grad_norm", "snip", "synflow", "alpha_test", "rank_energy")  # == the registry
# Proxies that need labelled samples for seq-cls, known without importing torch (the API validates
# with it); tests/unit/test_schemas.py checks it against the registry's `needs_labels`.
LABEL_PROXIES = frozenset({"grad_norm", "snip", "alpha_test", "rank_energy"})
DEFAULT_PROXY = "rank_energy"  # the best-supported proxy in docs/quality.md
# Canonical site types. Architectures map their own module names onto these.
LORA_TYPES = ("q", "k", "v", "o", "qkv", "gate", "up", "down")
SHORTCUT_TYPES = ("residual1", "residual2", "shortcut_sa", "shortcut_ffn")
NORMALIZE_MODES = ("none", "layer", "type")
SHORTCUT_MODES = ("combined", "separated")
BUDGET_KINDS = ("trainable_params", "like", "fraction")
DEFAULT_LIKE = {"r": 8, "types": ["q", "v"]}  # the default budget: as many parameters as LoRA r=8 on q, v
DEFAULT_RANK_SET = (1, 2, 4, 8, 16, 32, 64)  # rank 1 lets a tight budget differ from uniform r=2 (docs/quality.md)

# Bounds on every size a user can ask for.
MAX_TEXT_CHARS = 20_000  # per sample (text + text_pair): bounds tokenizer work and request size
MAX_CLASSES = 1_000  # label classes of a seq-cls sample: the head has one output per class
MAX_LABEL_CHARS = 256  # a class name (or number) longer than this is not a label
MAX_RANK = 4096  # no LoRA rank above a large model's hidden size
MAX_PARAMS = 10**12  # a parameter budget beyond any model's size is a typo
MAX_LAYERS = 1024
MAX_SEED = 2**32 - 1
MAX_ALPHA_RATIO = 1024.0
MAX_LORA_PLUS_RATIO = 64.0  # LoRA+ uses 16-20; far beyond is a typo
# The default plan's training recipe: the MRPC hold-out's pick for the plan's ranks (docs/quality.md,
# round 4): LoRA+ with B at 4x the A rate, rsLoRA scaling, A rate 1e-3 (training.DEFAULT_TRAINING_RATE).
DEFAULT_LORA_PLUS_RATIO = 4.0
DEFAULT_SKETCH_OVERSAMPLING = 2  # sketch width k = 2·r_max + 1 (Tropp et al. 2017); docs/proxies.md

Task = Literal[TASKS]  # type: ignore[valid-type]
ProxyName = Literal[PROXY_NAMES]  # type: ignore[valid-type]
NormalizeMode = Literal[NORMALIZE_MODES]  # type: ignore[valid-type]
ShortcutMode = Literal[SHORTCUT_MODES]  # type: ignore[valid-type]
BudgetKind = Literal[BUDGET_KINDS]  # type: ignore[valid-type]
SiteType = Literal[LORA_TYPES]  # type: ignore[valid-type]
WEIGHT_DTYPES = ("float32", "bfloat16", "float16")  # what the weights are loaded in; sketches stay float32
WeightDtype = Literal[WEIGHT_DTYPES]  # type: ignore[valid-type]
DEVICE_MAPS = ("auto",)  # accelerate's placement over the visible GPUs (heterolora.loading)
DeviceMap = Literal[DEVICE_MAPS]  # type: ignore[valid-type]


def known_site_types(value: object) -> object:
    """Our message for a site type outside LORA_TYPES (the schema declares them as an enum)."""
    if isinstance(value, list | tuple):
        bad = [t for t in value if t not in LORA_TYPES]
        if bad or not value:
            raise ValueError(f"unknown site types {bad}; choose from {list(LORA_TYPES)}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParamsBudget(_Strict):
    """An exact number of trainable LoRA (and shortcut) A/B parameters."""

    trainable_params: int = Field(gt=0, le=MAX_PARAMS, description="Upper limit on trainable adapter parameters.")


class UniformSpec(_Strict):
    r: int = Field(gt=0, le=MAX_RANK, description="Rank of the uniform LoRA whose size is matched.")
    types: list[SiteType] = Field(
        default_factory=lambda: list(DEFAULT_LIKE["types"]), min_length=1, description="Site types it adapts."
    )

    @field_validator("types", mode="before")
    @classmethod
    def _known_types(cls, v: object) -> object:
        return known_site_types(v)


class LikeBudget(_Strict):
    """As many parameters as uniform LoRA at rank `r` on `types` would train on this model."""

    like: UniformSpec


class FractionBudget(_Strict):
    """The paper's mode: the top `fraction` of candidate modules, each at the fixed `rank`."""

    fraction: float = Field(gt=0, le=1, description="Share of candidate modules switched on.")
    rank: int = Field(default=8, gt=0, le=MAX_RANK, description="Rank of every selected module.")


Budget = ParamsBudget | LikeBudget | FractionBudget


def default_budget() -> LikeBudget:
    return LikeBudget.model_validate({"like": DEFAULT_LIKE})


def budget_kind(budget: Budget) -> BudgetKind:
    if isinstance(budget, ParamsBudget):
        return "trainable_params"
    if isinstance(budget, LikeBudget):
        return "like"
    return "fraction"


def parse_budget(value: Budget | dict | None) -> Budget:
    """Accept any of the three JSON forms (or a Budget) and return the typed form."""
    if value is None:
        return default_budget()
    if isinstance(value, ParamsBudget | LikeBudget | FractionBudget):
        return value
    if not isinstance(value, dict):
        raise BudgetError("budget must be an object", field="budget")
    for cls in (ParamsBudget, LikeBudget, FractionBudget):
        keys = set(cls.model_fields)
        required = {k for k, f in cls.model_fields.items() if f.is_required()}
        if required <= set(value) <= keys:
            try:
                return cls.model_validate(value)
            except Exception as exc:  # pydantic ValidationError -> our error naming the field
                raise BudgetError(f"invalid budget: {_first_error(exc)}", field="budget") from exc
    raise BudgetError(
        "budget must be one of {'trainable_params': N}, {'like': {'r': 8, 'types': ['q','v']}} "
        "or {'fraction': 0.25, 'rank': 8}",
        field="budget",
    )


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        err = errors()[0]
        loc = ".".join(str(x) for x in err.get("loc", ()))
        return f"{loc}: {err.get('msg')}" if loc else str(err.get("msg"))
    return str(exc)


class AllocationConfig(_Strict):
    """Everything that decides a plan, apart from the model and the data."""

    task: Task = Field(default=TASKS[0], description="seq-cls (sequence classification) or causal-lm.")
    proxy: ProxyName = Field(default=DEFAULT_PROXY, description="Zero-cost proxy that scores candidates.")
    budget: Annotated[Budget, Field(description="One of the three budget forms.")] = Field(
        default_factory=default_budget
    )
    rank_set: list[int] = Field(
        default_factory=lambda: list(DEFAULT_RANK_SET),
        min_length=1,
        max_length=64,
        json_schema_extra={"items": {"type": "integer", "minimum": 1, "maximum": MAX_RANK}},
        description="Ranks a module may receive.",
    )
    max_rank: int | None = Field(
        default=None, gt=0, le=MAX_RANK, description="Cap on any rank (e.g. vLLM max_lora_rank)."
    )
    types: list[SiteType] | None = Field(
        default=None,
        min_length=1,
        max_length=len(LORA_TYPES),
        description=f"Restrict candidates to these site types ({','.join(LORA_TYPES)}).",
    )
    layers: list[Annotated[int, Field(ge=0, lt=MAX_LAYERS)]] | None = Field(
        default=None, min_length=1, max_length=MAX_LAYERS, description="Restrict candidates to these layer indices."
    )
    seed: int = Field(
        default=0, ge=0, le=MAX_SEED, description="Seed for sampling the scoring batches and breaking ties."
    )
    num_batches: int = Field(default=32, gt=0, le=1024, description="K: scoring batches.")
    batch_size: int = Field(default=8, gt=0, le=256, description="Examples per scoring batch.")
    max_length: int = Field(default=128, gt=1, le=4096, description="Token limit per example.")
    alpha_ratio: float = Field(
        default=2.0, gt=0, le=MAX_ALPHA_RATIO, description="lora_alpha / r, kept constant per module."
    )
    use_rslora: bool = Field(
        default=True,
        description="rsLoRA scaling alpha/sqrt(r) with one alpha (a module at the budget's rank keeps scale "
        "alpha_ratio); False: alpha/r with alpha = alpha_ratio * r per module.",
    )
    normalize: NormalizeMode = Field(
        default="layer", description="Divide scores by their layer's or type's mean before allocating."
    )
    head_warmup_steps: int = Field(
        default=0, ge=0, le=1000, description="Train only the task head this many steps before scoring."
    )
    shortcuts: bool = Field(default=False, description="Add LoRA-adapted shortcut connections.")
    shortcut_mode: ShortcutMode = Field(
        default=SHORTCUT_MODES[0], description="One ranking over both families, or a share for each."
    )
    shortcut_share: float = Field(default=0.5, gt=0, lt=1, description="Budget share of shortcuts in separated mode.")
    scoring: Literal["auto", "exact", "stream"] = Field(
        default="auto",
        description="exact: keep every site's dense gradient; stream: low-rank gradient sketches, no base-weight "
        "gradients (docs/proxies.md); auto: exact when the dense gradients fit in scoring_memory_mb.",
    )
    scoring_memory_mb: int = Field(
        default=256,
        gt=0,
        le=1 << 20,
        description="Cap on dense float32 gradient state while scoring: auto's switch to streaming, and the group "
        "size of proxies that stream in several passes (snip).",
    )
    sketch_oversampling: int = Field(
        default=DEFAULT_SKETCH_OVERSAMPLING,
        ge=2,
        le=8,
        description="Streamed scoring's sketch width k = sketch_oversampling * max rank + 1: 4 is about 10x more "
        "accurate than 2 on trained weights, for twice the sketch memory (docs/proxies.md).",
    )
    gradient_checkpointing: bool = Field(
        default=False,
        description="Recompute layer internals during scoring's backward passes (less memory, more time).",
    )
    # ---- gradient init (heterolora/init/build.py) ----
    init: Literal["zero", "gradient"] = Field(
        default="zero",
        description="LoRA A/B init: zero (standard LoRA, B = 0) or gradient (from the scoring gradients).",
    )
    init_variant: Literal["lora_ga", "gora"] = Field(
        default=DEFAULT_INIT_VARIANT,
        description="Gradient init: gora (base untouched) or lora_ga (function-preserving).",
    )
    learning_rate: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Training rate of the A matrices, recorded in the plan's training section (default 1e-3); "
        "a gradient init with init_step='learning_rate' is built for it.",
    )
    lora_plus_ratio: float = Field(
        default=DEFAULT_LORA_PLUS_RATIO,
        ge=1,
        le=MAX_LORA_PLUS_RATIO,
        description="LoRA+: B matrices train at this many times the rate (training section).",
    )
    init_step: Literal["line_search", "lora_one", "learning_rate"] = Field(
        default="line_search",
        description="gora init's step size: a line search on a scoring batch (candidates 0.8^k down to 1e-5, "
        "forward passes only; 0 if none lowers the loss), LoRA-One's normalisation (each site's first update "
        "at spectral norm scaling/128), or the learning rate.",
    )

    @field_validator("rank_set")
    @classmethod
    def _ranks_positive(cls, v: list[int]) -> list[int]:
        if not v or any(not 0 < r <= MAX_RANK for r in v):
            raise ValueError(f"rank_set must hold integers from 1 to {MAX_RANK}")
        return sorted(set(v))

    @field_validator("types", mode="before")
    @classmethod
    def _types_known(cls, v: object) -> object:
        return None if v is None else known_site_types(v)

    @model_validator(mode="before")
    @classmethod
    def _budget_forms(cls, data: object) -> object:
        # Any other value is one error on `budget` itself, not one per union member
        # (pydantic's `budget.ParamsBudget`, a name the user never wrote).
        if isinstance(data, dict) and "budget" in data and not isinstance(data["budget"], Budget):
            if data["budget"] is None:
                raise BudgetError("budget must be an object, e.g. {'trainable_params': 100000}", field="budget")
            data = {**data, "budget": parse_budget(data["budget"])}
        return data

    def effective_ranks(self) -> list[int]:
        ranks = [r for r in self.rank_set if self.max_rank is None or r <= self.max_rank]
        if not ranks:
            raise ConfigError(f"no rank in {self.rank_set} is <= max_rank={self.max_rank}", field="max_rank")
        return ranks

    def scoring_ranks(self) -> list[int]:
        """The rank set the allocation chooses from (a fraction budget: its one rank)."""
        return [self.budget.rank] if isinstance(self.budget, FractionBudget) else self.effective_ranks()
