"""Errors raised by the HeteroLoRA engine.

    HeteroLoraError
     ├── ConfigError (ValueError)          bad option or input; `.field` names it
     │    ├── BudgetError                  budget form, size or feasibility
     │    ├── DataError                    empty sample, missing labels, bad file
     │    └── ProxyError                   unknown proxy, or one that cannot score this input
     ├── ModelNotFoundError (ValueError)   model id or path that cannot be loaded
     ├── ModelNotAllowedError (ValueError) model rejected by an allow-list
     ├── UnsupportedModelError (ValueError) no transformer layers / adaptable sites found
     └── PlanError (ValueError)            a plan that does not fit the model it is applied to

Every error carries `code` (a stable snake_case string used in API bodies) and, where one
input is to blame, `field` (a dotted path such as ``budget.trainable_params``).
"""

from __future__ import annotations


class HeteroLoraError(Exception):
    code = "heterolora_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, str]:
        out = {"code": self.code, "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


class ConfigError(HeteroLoraError, ValueError):
    code = "invalid_config"


class BudgetError(ConfigError):
    code = "invalid_budget"


class DataError(ConfigError):
    code = "invalid_data"


class ProxyError(ConfigError):
    code = "invalid_proxy"


class ModelNotFoundError(HeteroLoraError, ValueError):
    code = "model_not_found"


class ModelNotAllowedError(HeteroLoraError, ValueError):
    code = "model_not_allowed"


class UnsupportedModelError(HeteroLoraError, ValueError):
    code = "unsupported_model"


class PlanError(HeteroLoraError, ValueError):
    code = "plan_mismatch"
