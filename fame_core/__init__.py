"""fame_core: FAME (Facet-Aware Multi-Head Mixture-of-Experts) and SASRec for sequential
recommendation, with the inspection API that the app, notebooks and exports use.

    import fame_core
    model, data = fame_core.load("checkpoints/demo")
    seq, target = fame_core.user_example(data, "7")
    result = fame_core.inspect(model, seq, target)   # an Inspection
"""

import os

# OpenMP spin-waiting stalls PyTorch on busy small machines (CALIBRATION.md); takes effect only
# if torch has not been imported yet, and never overrides a value the user set.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .checkpoint import load_checkpoint  # noqa: E402
from .data import SequenceDataset, load_dataset  # noqa: E402
from .errors import CheckpointError, DataError, FameError  # noqa: E402
from .evaluate import evaluate  # noqa: E402
from .inspection import Inspection, inspect, load, user_example  # noqa: E402
from .models import FAME, SASRec, ModelConfig  # noqa: E402
from .training import TrainConfig, train  # noqa: E402

__version__ = "0.1.0"
__all__ = ["load", "inspect", "user_example", "Inspection", "evaluate", "train", "TrainConfig", "ModelConfig",
           "SequenceDataset", "load_dataset", "load_checkpoint", "FAME", "SASRec", "FameError", "DataError",
           "CheckpointError"]
