"""Helpers of the reliability tests (tests/test_reliability_*.py): CLI runs on tiny data."""

import json
import os
import subprocess
import sys

import numpy as np
import yaml
from conftest import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIGER_SMALL = {
    "n_layers": 1, "d_model": 32, "d_ff": 64, "n_heads": 2, "d_kv": 16,
    "beam_size": 20, "valid_beam_size": 10, "warmup_steps": 2, "learning_rate": 0.01,
}


def env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


def write_sid_file(path, n_items=30, seed=0, big_code=None):
    """Random collision-free codes ``{"i<k>": ["<a_x>", "<b_y>", "<c_z>"]}`` for items i0..i<n-1>."""
    rng = np.random.default_rng(seed)
    pick = rng.permutation(8 * 8 * 8)[:n_items]
    table = {f"i{k}": [f"<a_{p // 64}>", f"<b_{(p // 8) % 8}>", f"<c_{p % 8}>"] for k, p in enumerate(pick)}
    if big_code is not None:
        table["i0"][0] = f"<a_{big_code}>"
    with open(path, "w") as f:
        json.dump(table, f)
    return str(path)


def write_config(tmp_path, data_path, name="tiny.yaml", **overrides):
    path = os.path.join(str(tmp_path), name)
    with open(path, "w") as f:
        yaml.safe_dump(tiny_config(data_path, tmp_path, **overrides), f)
    return path


def cli(tmp_path, *args, module=None, timeout=600):
    """Run ``run_recbole_genrec.py`` (or ``python -m <module>``) in ``tmp_path``; CompletedProcess."""
    command = [sys.executable, "-m", module] if module else [sys.executable, os.path.join(ROOT, "run_recbole_genrec.py")]
    return subprocess.run(
        command + list(args), capture_output=True, text=True, cwd=str(tmp_path), env=env(), timeout=timeout
    )


def one_line_error(proc):
    """The process failed with a single ``error: ...`` line and no traceback; returns that line."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]
