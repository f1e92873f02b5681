"""Defect 4 (issue 15): the comparison's worker dies with the comparison, even on SIGKILL."""

import os
import signal
import subprocess
import sys
import time

from reliability_util import env, write_config


def _children(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[1]) == pid and "spawn_main" in cmdline:
            kids.append(int(entry))
    return kids


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_worker_dies_when_compare_is_killed(tiny_data, tmp_path):
    config = write_config(tmp_path, tiny_data)
    compare = subprocess.Popen(
        [sys.executable, "-m", "recbole_genrec.compare", "--models", "SASRec", "--dataset", "tiny",
         "--config_files", config, "--epochs", "100000", "--out", str(tmp_path / "out")],
        cwd=str(tmp_path), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    worker = None
    try:
        deadline = time.time() + 120
        while worker is None and time.time() < deadline:
            kids = _children(compare.pid)
            worker = kids[0] if kids else None
            time.sleep(0.2)
        assert worker is not None, "the comparison started no worker"
        time.sleep(3)  # let it get into training
        assert _alive(worker)
        compare.send_signal(signal.SIGKILL)
        compare.wait()
        deadline = time.time() + 10
        while _alive(worker) and time.time() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), "the worker outlived the killed comparison"
    finally:
        if compare.poll() is None:
            compare.kill()
        if worker is not None and _alive(worker):
            os.kill(worker, signal.SIGKILL)
