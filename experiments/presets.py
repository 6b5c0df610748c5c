"""Named training settings compared by the facet experiments (issue 16), kept as data in
presets.json beside this file: keys that are FAMEConfig fields set the model, the others are
training terms (fame_core.objectives). Settings with options retired in issue 40 are listed in
experiments/retired-options.md."""

from __future__ import annotations

import json
from pathlib import Path

from fame_core.models import FAMEConfig

PRESETS: dict[str, dict] = {k: v for k, v in json.loads((Path(__file__).with_name("presets.json")).read_text()).items()
                            if not k.startswith("_")}


def split_preset(options: dict) -> tuple[dict, dict]:
    """(model settings, training-term settings) of a preset: FAMEConfig fields, then the rest."""
    model = set(FAMEConfig.__dataclass_fields__)
    return ({k: v for k, v in options.items() if k in model}, {k: v for k, v in options.items() if k not in model})
