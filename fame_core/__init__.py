"""fame_core: FAME (Facet-Aware Multi-Head Mixture-of-Experts) and SASRec for sequential
recommendation, with the inspection API that the app, notebooks and exports use.

    import fame_core
    model, data = fame_core.load("checkpoints/demo")
    seq, target = fame_core.user_example(data, "7")
    result = fame_core.inspect(model, seq, target)   # an Inspection

The public submodules (models, data, checkpoint, training, evaluate, inspection, facets, cohort,
compare, attribution, export, ...) are listed in docs/design.md, "Public API".
"""

import os

# OpenMP spin-waiting stalls PyTorch on busy small machines (CALIBRATION.md); takes effect only
# if torch has not been imported yet, and never overrides a value the user set.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# tqdm.auto, imported by the training, evaluation and download modules, picks the notebook bar in a
# Jupyter kernel and, where ipywidgets is missing, falls back to the text bar with a warning
# ("IProgress not found") printed under the first `import fame_core` of every notebook: the
# fallback is what we want, so it is imported here once without that line
import warnings  # noqa: E402

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="IProgress not found")
    import tqdm.auto  # noqa: E402, F401

from ._version import __version__  # noqa: E402
from .checkpoint import check_dataset, find_checkpoints, load, load_checkpoint, read_metrics  # noqa: E402
from .data import SequenceDataset, load_dataset  # noqa: E402
from .errors import CheckpointError, ConfigError, DataError, FameError  # noqa: E402
from .evaluate import EvalOptions, evaluate, rank_users  # noqa: E402
from .inspection import Inspection, inspect, user_example  # noqa: E402
from .labels import facet_labels  # noqa: E402
from .models import (FAME, MODELS, SASRec, FAMEConfig, ModelConfig, ModelOutput, Provenance,  # noqa: E402
                     Recommender, SASRecConfig, build_model, merge_modes, model_config)
from .objectives import FacetObjectives  # noqa: E402
from .training import TrainConfig, train  # noqa: E402
from .users import gated_wins, user_table  # noqa: E402

__all__ = ["__version__", "load", "load_checkpoint", "find_checkpoints", "check_dataset", "read_metrics", "inspect",
           "user_example", "Inspection", "evaluate", "rank_users", "EvalOptions", "train", "TrainConfig",
           "FacetObjectives", "ModelConfig", "SASRecConfig", "FAMEConfig", "ModelOutput", "Provenance", "Recommender", "MODELS",
           "build_model", "model_config", "merge_modes", "SequenceDataset", "load_dataset", "facet_labels",
           "user_table", "gated_wins", "FAME", "SASRec", "FameError", "ConfigError", "DataError", "CheckpointError"]
