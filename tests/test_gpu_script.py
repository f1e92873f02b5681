"""benchmarks/gpu_tiger_beauty.py --smoke: the GPU reproduction's code path, end to end on CPU.

Runs the script as the device machine would (a subprocess, its own working directory) on a
tiny synthetic dataset with a published-style ``sid_file`` whose 3-level codes collide (so the
package adds the collision level, as it does for Beauty's RQ-VAE IDs), and checks the JSON and
markdown it writes.
"""

import json
import math
import os
import subprocess
import sys

import numpy as np

from conftest import write_tiny_dataset
from recbole_genrec.config import PROPERTIES_DIR, load_yaml_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_tiger_beauty.py")
METRICS = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")


def write_sid_file(path, n_items, seed=0):
    """``{raw item id: ["<a_x>", "<b_y>", "<c_z>"]}`` with few codes per level (collisions)."""
    rng = np.random.default_rng(seed)
    table = {f"i{i}": [f"<{level}_{int(rng.integers(4))}>" for level in "abc"] for i in range(n_items)}
    with open(path, "w") as f:
        json.dump(table, f)
    assert len({tuple(v) for v in table.values()}) < n_items  # the collision level is exercised
    return path


def test_smoke_run_writes_results(tmp_path):
    data = write_tiny_dataset(tmp_path / "data", name="tinyb", n_users=40, n_items=30, with_item_file=False)
    sid = write_sid_file(tmp_path / "tinyb.sid.json", 30)
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, SCRIPT, "--smoke", "--dataset", "tinyb", "--data-path", data, "--sid-file", str(sid),
           "--out", str(out)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    res = json.loads((out / "gpu_tiger_beauty.json").read_text())
    for key in ("test", "paper", "best_valid", "wall_seconds", "train_seconds", "epochs_planned", "epochs_run",
                "config", "device", "calibration", "precision", "command"):
        assert key in res, key
    assert res["smoke"] is True
    assert set(res["test"]) == {"unconstrained", "constrained"}
    for mode, metrics in res["test"].items():
        assert set(metrics) == set(METRICS), (mode, metrics)
        for name, value in metrics.items():
            assert math.isfinite(value) and 0.0 <= value <= 1.0, (mode, name, value)
            assert name.startswith("ndcg") or value >= metrics[f"ndcg@{name.split('@')[1]}"]  # recall >= ndcg
    assert res["paper"]["TIGER"]["ndcg@10"] == 0.0384  # spec tiger.md §8, Beauty
    assert 1 <= res["epochs_run"] <= res["epochs_planned"] <= 2
    assert res["wall_seconds"] > res["train_seconds"] > 0
    cfg = res["config"]
    assert cfg["decoding"] == "unconstrained" and cfg["beam_size"] == 50 and cfg["valid_beam_size"] == 20
    assert cfg["n_levels"] == 4  # 3 published levels + the collision level
    assert cfg["epochs"] == res["epochs_planned"] and cfg["train_time_budget"] > 0
    recipe = load_yaml_file(os.path.join(PROPERTIES_DIR, "model", "TIGER.yaml"))
    assert res["calibration"]["train_step_s"] > 0 and res["calibration"]["recipe_epochs"] == recipe["epochs"]
    assert res["device"]["device"].startswith("CPU")
    md = (out / "gpu_tiger_beauty.md").read_text()
    assert "0.0384" in md and "decoding constrained" in md and "decoding unconstrained" in md
