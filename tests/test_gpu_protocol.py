"""bench/gpu_protocol.sh cannot run here (no CUDA), so check what it would run: every command names
a script that exists (a bench/ file, or an experiments/ module run with -m), every ablation row and
gate preset it asks for exists, and bash parses it."""

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRESETS = json.loads((REPO / "experiments" / "presets.json").read_text())
# research, not fast: it runs a bench/ script (in its dry mode), and the fast tier runs none
pytestmark = pytest.mark.research


def test_the_gpu_protocol_asks_only_for_scripts_rows_and_presets_that_exist():
    script = REPO / "bench" / "gpu_protocol.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    out = subprocess.run(["bash", str(script)], env={"DRY": "1", "PATH": "/usr/bin:/bin"}, capture_output=True,
                         text=True, check=True, cwd=REPO).stdout.splitlines()
    assert len(out) >= 10
    ablation = (REPO / "experiments" / "ablation.py").read_text()
    rows = set(re.findall(r'^    "([a-z0-9-]+)": \(', ablation, re.M))
    for line in out:
        words = shlex.split(line)
        script = REPO / (words[2].replace(".", "/") + ".py" if words[1] == "-m" else words[1])
        assert words[0] == "python" and script.exists(), line
        assert "--device" in words and words[words.index("--device") + 1] == "cuda", line
        if "--rows" in words:
            asked = words[words.index("--rows") + 1:words.index("--device")]
            assert set(asked) <= rows and len(asked) == len(rows), (asked, rows)
        if "--variants" in words:
            assert set(words[words.index("--variants") + 1].split(",")) <= set(PRESETS), line
