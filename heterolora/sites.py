"""The plan's search space: the LoRA sites its types and layers select and, with shortcuts, the
shortcut sites, found in one walk over the model and passed down to every later phase."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from heterolora.config import AllocationConfig
from heterolora.search_space import Candidate, select_sites, walk_sites
from heterolora.shortcuts.planning import shortcut_candidates


@dataclass(frozen=True)
class SearchSpace:
    """One plan's candidates, discovered once and passed down to every step."""

    all_sites: list[Candidate]  # every LoRA site: a `like` budget is sized on these
    sites: list[Candidate]  # the LoRA sites the config's types/layers select
    shortcut_sites: list[Candidate]
    num_layers: int


def discover_space(model: nn.Module, config: AllocationConfig) -> SearchSpace:
    found, num_layers = walk_sites(model)
    sites = select_sites(found, config.types, config.layers, num_layers=num_layers)
    shortcut_sites = shortcut_candidates(model, config.layers) if config.shortcuts else []
    return SearchSpace(found, sites, shortcut_sites, num_layers)
