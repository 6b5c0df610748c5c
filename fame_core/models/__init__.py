"""The models and their registry.

A model is one module: a config dataclass (a `ModelConfig` subclass with a registry `name`) and a
`Recommender` subclass that answers the contract of `fame_core.models.base`. Adding a variant is
that file plus one line in `MODELS` below; nothing else in fame_core asks which model it has.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .base import MERGE_MODES, ModelConfig, ModelOutput, Provenance, Recommender, check_merge, merge_modes
from .fame import FAME, FAMEConfig, FacetMoELayer, assign_head_clusters, fame_from_sasrec
from .sasrec import SASRec, SASRecConfig

MODELS: dict[str, type[Recommender]] = {cls.config_class.name: cls for cls in (
    SASRec,
    FAME,
)}

# keys that checkpoints written before the per-model configs (code 0.1.0) carry for every model
_LEGACY_KEYS = {"n_experts": 1, "residual": False}


def model_class(name: str) -> type[Recommender]:
    if not isinstance(name, str) or name not in MODELS:
        raise ConfigError(f"model must be one of {', '.join(MODELS)}, got {name!r}")
    return MODELS[name]


def model_config(name: str, **fields) -> ModelConfig:
    """The config of the registered model `name`: model_config("fame", n_items=600, n_experts=4)."""
    return model_class(name).config_class(**fields)


# model settings retired in issue 40 -> their default (a record holding it opens as before)
RETIRED_MODEL_SETTINGS = {"recent_window": 0}


def config_from_dict(record, where: str = "model configuration") -> ModelConfig:
    """A config from a checkpoint's `config.json` "model" record, checked (types, ranges, unknown
    keys). Records of code 0.1.0 wrote n_experts and residual for every model; for a model without
    those settings they had no effect and are dropped."""
    if not isinstance(record, dict):
        raise ConfigError(f"{where} must be a JSON object, got {type(record).__name__}")
    fields = dict(record)
    cls = model_class(fields.pop("model", None)).config_class
    known = set(cls.__dataclass_fields__)
    for key in _LEGACY_KEYS:
        if key in fields and key not in known:
            fields.pop(key)
    for key, default in RETIRED_MODEL_SETTINGS.items():   # issue 40: settings that did not work
        if key in fields and key not in known:
            value = fields.pop(key)
            if value != default:
                from ..objectives import retired_message
                raise ConfigError(f"{where}: {retired_message(key, value)}")
    return cls.from_dict(fields, where)


@torch.no_grad()
def sasrec_continued(sasrec: SASRec, cfg: SASRecConfig, reinit_last: bool = False, seed: int = 0) -> SASRec:
    """A copy of a trained SASRec to train on (with a fresh optimizer): the equal-budget control
    for FAME, which the paper builds from the same SASRec and trains for further epochs.

    reinit_last: the last block is drawn afresh (SASRec's own initialisation, from `seed`) except
    W_K and W_V, which are kept, as fame_from_sasrec keeps them and draws everything else of the
    last layer anew. A control for the part of FAME's gain that a restart of the last block alone
    would give."""
    s = sasrec.config
    for key in ("n_items", "d", "n_layers", "n_heads", "max_len", "ffn_dim", "activation"):
        if getattr(s, key) != getattr(cfg, key):
            raise ConfigError(f"--init-from checkpoint has {key}={getattr(s, key)} but SASRec was asked for "
                              f"{key}={getattr(cfg, key)}; pass the same value")
    model = SASRec(cfg)
    model.load_state_dict(sasrec.state_dict())
    if reinit_last:
        torch.manual_seed(seed)
        fresh = SASRec(cfg).blocks[-1]
        last = model.blocks[-1]
        with torch.no_grad():
            for name in ("W_Q", "W_O", "ffn", "ln_attn", "ln_ffn"):
                getattr(last, name).load_state_dict(getattr(fresh, name).state_dict())
    return model


def build_model(cfg: ModelConfig) -> Recommender:
    """The registered model for a config, freshly initialised."""
    for cls in MODELS.values():
        if type(cfg) is cls.config_class:
            return cls(cfg)
    raise ConfigError(f"no registered model takes a {type(cfg).__name__}; register it in fame_core.models.MODELS")


__all__ = ["MODELS", "MERGE_MODES", "ModelConfig", "ModelOutput", "Provenance", "Recommender", "SASRec", "SASRecConfig", "FAME",
           "FAMEConfig", "FacetMoELayer", "build_model", "config_from_dict", "model_config", "model_class",
           "fame_from_sasrec", "assign_head_clusters", "sasrec_continued", "merge_modes", "check_merge"]
