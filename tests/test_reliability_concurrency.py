"""Defect 2 (issue 15): runs of one model in one folder never share or truncate a checkpoint."""

import glob
import os
import subprocess
import sys

import pytest
import torch
from reliability_util import ROOT, TIGER_SMALL, env, write_config, write_sid_file

from recbole_genrec.safe_io import atomic_torch_save, unique_run_name

# RecBole names a checkpoint <model>-<local time to the second>: freeze that clock so the two
# runs below are "started in the same second" however the scheduler interleaves them.
_SAME_SECOND = """
import runpy, sys
import recbole.utils.utils as u, recbole.trainer.trainer as t, recbole.utils.logger as lg
fixed = lambda: "Dec-02-2026_07-00-00"
u.get_local_time = t.get_local_time = lg.get_local_time = fixed
sys.argv = [sys.argv[0]] + sys.argv[1:]
runpy.run_path({script!r}, run_name="__main__")
"""


def test_two_same_model_runs_started_in_the_same_second_keep_both_checkpoints(tiny_data, tmp_path):
    config = write_config(tmp_path, tiny_data, state="INFO", epochs=2, **TIGER_SMALL, sid_file=write_sid_file(tmp_path / "codes.json"))
    code = _SAME_SECOND.format(script=os.path.join(ROOT, "run_recbole_genrec.py"))
    args = ["--model=TIGER", "--dataset=tiny", f"--config_files={config}"]
    procs = [
        subprocess.Popen([sys.executable, "-c", code, *args], cwd=str(tmp_path), env=env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for proc, (stdout, stderr) in zip(procs, outs):
        assert proc.returncode == 0, stderr[-3000:]
        assert "test result" in stdout + stderr
    best = [p for p in glob.glob(str(tmp_path / "saved" / "TIGER-*.pth")) if not p.endswith(".resume.pth")]
    assert len(best) == 2, best
    from recbole_genrec.compat import allow_recbole_checkpoints
    from recbole_genrec.config import Config

    allow_recbole_checkpoints(Config)  # what a run registers before it reloads its checkpoint (this process ran none)
    for path in best:
        state = torch.load(path, weights_only=True)  # intact and safely loadable
        assert "state_dict" in state


def test_unique_run_names_differ_within_one_second():
    names = {unique_run_name("TIGER") for _ in range(50)}
    assert len(names) == 50
    assert all(n.startswith("TIGER-") and f"-{os.getpid()}-" in n for n in names)


def test_failed_checkpoint_write_leaves_the_previous_file_intact(tmp_path):
    path = str(tmp_path / "ckpt.pth")
    atomic_torch_save({"w": torch.ones(3)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_torch_save({"w": torch.zeros(3), "bad": Unpicklable()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(3))
    assert os.listdir(tmp_path) == ["ckpt.pth"]  # no temporary file left behind


def test_atomic_writes_get_the_permissions_of_a_plain_write(tmp_path):
    # the temporary file behind an atomic write is private (0600); the file it becomes must not be,
    # or results and checkpoints on a shared machine are unreadable to the rest of the group
    from recbole_genrec.safe_io import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(str(tmp_path / "results.json"), "{}")
        with open(tmp_path / "plain.json", "w") as f:
            f.write("{}")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "results.json").st_mode & 0o777 == os.stat(tmp_path / "plain.json").st_mode & 0o777 == 0o644
