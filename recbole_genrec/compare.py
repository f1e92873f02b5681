"""Side-by-side comparison of any plugin and RecBole models on one dataset.

    python -m recbole_genrec.compare --models SASRec,GRU4Rec,BERT4Rec --dataset office \
        --config_files properties/dataset/office.yaml --epochs 30 --out benchmarks/results/compare_office

Every model runs through ``run_recbole_genrec`` with the same config files, seed and split,
one fresh process per model (so peak memory is per model and no state leaks between
runs). ``--epochs`` / ``--minutes`` give every model the same budget. Other ``--key=value``
pairs are passed to every model as on the ``run_recbole_genrec.py`` command line;
``--model_config Model=file.yaml`` adds a config file for one model only (``--models
Label=Model`` runs one model under several rows, each with its own ``--model_config``); ``--append``
adds models to an existing comparison (same dataset and config files, checked), and
``--merge DIR DIR ... --out DIR`` joins comparisons run in parallel on identical settings.
``--keep_finished`` continues an interrupted comparison (the same command plus this flag): the rows
and grid settings ``--out`` finished are kept and the one it was stopped in resumes from its last
epoch (each row and grid setting keeps its checkpoints, with a resume state while it trains, in
:func:`setting_checkpoint_dir`). The same command with ``--keep_finished`` started in several
processes (one per core or GPU) shares the work: each claims the row or setting it trains (a
``.compare-claim`` file in its folder), leaves those another live process claimed or finished, and
saves its results beside theirs; a claim whose process died (same machine) is taken over.

``--grid key=v1,v2,...`` (repeatable; the product of the values) tunes every model the same
way: each row trains once per setting, the setting with the best validation score (RecBole's
``valid_metric``, early stopping as configured) is the row, and every setting's validation and
test scores are listed beside it (the test never chooses). ``results.json`` keeps each run's
validation curve, drawn in ``curves.png`` (validation score against epochs and training time).

Writes ``results.json`` (everything), ``results.md`` (a paper-style table: rows models,
columns test metrics, best in bold, plus train seconds and peak memory, and the command)
and ``results.png`` (grouped bars of the test metrics).
"""

import argparse
import contextlib
import hashlib
import json
import multiprocessing
import os
import shlex
import signal
import socket
import sys
import time

from recbole_genrec.errors import ConfigError, UserError
from recbole_genrec.safe_io import atomic_write_text, file_lock


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m recbole_genrec.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", required=True,
                        help="comma-separated model names; LABEL=Model runs Model under its own row LABEL "
                             "(e.g. SASRec-BPR=SASRec with --model_config SASRec-BPR=bpr.yaml)")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--config_files", default=None, help="space-separated yaml files for every model")
    parser.add_argument("--model_config", action="append", default=[], metavar="MODEL=FILE",
                        help="an extra yaml for one model (repeatable)")
    parser.add_argument("--epochs", type=int, default=None, help="max epochs for every model")
    parser.add_argument("--minutes", type=float, default=None, help="training time budget per model")
    parser.add_argument("--out", default=None, help="output folder (default: benchmarks/results/compare_<dataset>)")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                        help="tune every model over these values of a config key (repeatable: the product), "
                             "chosen on validation, e.g. --grid learning_rate=0.001,0.003,0.005,0.01")
    parser.add_argument("--append", action="store_true",
                        help="add these models to the results.json in --out (same dataset and config files)")
    parser.add_argument("--keep_finished", action="store_true",
                        help="continue an interrupted comparison: keep the rows and grid settings --out already "
                             "finished (extending its results.json, if any), resume the one it was stopped in, run the others; "
                             "several processes given the same command share its rows and settings")
    args, extra = parser.parse_known_args(argv)
    models = model_rows(args.models)
    per_model = {}
    for item in args.model_config:
        name, sep, path = item.partition("=")
        if not sep or name not in models:
            raise ConfigError(f"--model_config '{item}' must be MODEL=FILE with MODEL in --models.")
        per_model.setdefault(name, []).append(path)
    bad = [a for a in extra if not (a.startswith("--") and "=" in a)]
    if bad:
        raise ConfigError(f"Unrecognised arguments {bad}. Fix: config overrides are --key=value.")
    return args, models, per_model, extra


def grid_settings(specs):
    """``[{key: value string}]``: the product of ``--grid key=v1,v2`` specs (``[{}]`` without any)."""
    settings = [{}]
    for spec in specs:
        key, sep, values = (part.strip() for part in spec.partition("="))
        values = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key or not values:
            raise ConfigError(f"--grid '{spec}' must be KEY=V1,V2,... (e.g. --grid learning_rate=0.001,0.003).")
        if any(key in s for s in settings):
            raise ConfigError(f"--grid names '{key}' twice. Fix: give all its values in one --grid.")
        settings = [dict(s, **{key: v}) for s in settings for v in values]
    return settings


def setting_label(setting):
    return ", ".join(f"{k}={v}" for k, v in setting.items())


NOT_RUN = "not run (the grid stopped before it)"


def choose_on_validation(runs):
    """The run with the best validation score (``valid_score_bigger`` respected), with every run listed.

    ``runs``: ``[(setting, result)]``. Failed runs (and :data:`NOT_RUN` ones) are listed but never
    chosen; if all failed, the first failure is the row.
    """
    runs = list(runs)
    summary = [{"setting": s, "error": r["error"]} if "error" in r else {"setting": s, **r} for s, r in runs]
    ok = [(s, r) for s, r in runs if "error" not in r]
    if not ok:
        return dict(runs[0][1], grid=summary)
    sign = 1.0 if ok[0][1].get("valid_score_bigger", True) else -1.0
    setting, best = max(ok, key=lambda sr: sign * sr[1]["best_valid_score"])  # first of equals wins
    return dict(best, chosen=setting, grid=summary)


def grid_row(grid, done):
    """The results row of a grid of which ``done`` (``{setting label: result}``) has run; the rest: :data:`NOT_RUN`."""
    return choose_on_validation([(s, done.get(setting_label(s), {"error": NOT_RUN})) for s in grid])


def finished_settings(row):
    """``{setting label: result}`` of the grid settings a results.json row finished (for ``--keep_finished``);
    ``{"": row}`` for a finished row without a grid.

    The chosen setting's result is the row itself (complete in every version of results.json).
    """
    row = row or {}
    if "grid" not in row:
        return {"": row} if "test_result" in row else {}
    chosen = {k: v for k, v in row.items() if k not in ("chosen", "grid")}
    return {setting_label(run["setting"]): chosen if run["setting"] == row.get("chosen") else
            {k: v for k, v in run.items() if k != "setting"}
            for run in row.get("grid", []) if "error" not in run}


def configured(key, overrides, files):
    """What a run gets for ``key`` from the command line (``--key=``) or else from its config files (the
    last that sets it), as RecBole resolves them; None when neither sets it."""
    from recbole_genrec.config import load_yaml_file

    value = next((o.split("=", 1)[1] for o in reversed(overrides) if o.startswith(f"--{key}=")), None)
    if value is None:
        value = next((d[key] for d in map(load_yaml_file, reversed(files)) if d.get(key) is not None), None)
    return value


def setting_checkpoint_dir(out, label, setting, base):
    """The checkpoint folder of one grid setting of one row: ``<base>/compare/<out>-<hash>/<label>/<setting>``
    (``default`` without a grid; ``base`` = the runs' ``checkpoint_dir``).

    Its own folder per comparison, row and setting, so ``--keep_finished`` finds the resume state
    of the run a stopped comparison was training (``--resume=latest`` there).
    """
    where = os.path.abspath(out)
    tag = f"{os.path.basename(where)}-{hashlib.sha1(where.encode()).hexdigest()[:8]}"
    # no "=" in the folder name: RecBole's command-line parser splits each argument at every "="
    return os.path.join(base, "compare", tag, label, setting_label(setting).replace(", ", ",").replace("=", "-") or "default")


def run_overrides(folder, label, model, setting, overrides, files, resume):
    """The overrides one run (a row, or a grid setting of it) adds: its checkpoint folder ``folder``
    (:func:`setting_checkpoint_dir`), one semantic-ID cache for every run (``<checkpoint_dir>/semantic_ids``
    unless ``sid_cache_dir`` is set) and, with ``resume`` (``--keep_finished``), ``--resume=latest`` when
    that folder holds a stopped run's resume state."""
    from recbole_genrec.trainer.resume import latest_resume_state

    extra = [f"--checkpoint_dir={folder}"]
    if configured("sid_cache_dir", overrides, files) is None:
        extra.append(f"--sid_cache_dir={os.path.join(checkpoint_base(overrides, files), 'semantic_ids')}")
    stopped = latest_resume_state(folder, model) if resume else None
    if stopped:
        print(f"[compare] {label}: {setting_label(setting) or 'the row'} resumes from {stopped}", flush=True)
        extra.append("--resume=latest")
    return extra


def checkpoint_base(overrides, files):
    """The ``checkpoint_dir`` the command line or the config files give, else ``saved``."""
    return configured("checkpoint_dir", overrides, files) or "saved"


CLAIM = ".compare-claim"


def _start_time(pid):
    """A process's start time (clock ticks since boot, Linux ``/proc``): with its pid it names the process
    even after the pid is reused. None where there is no such process or no ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]  # field 22; the command name may hold spaces
    except (OSError, IndexError):
        return None


def process_id(pid=None):
    """``"<host> <pid> <start time>"`` of a process (this one by default): what a claim holds."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()} {pid} {_start_time(pid) or '-'}"


def _claim_owner(folder):
    """:func:`process_id` of the live process whose claim ``folder`` holds, or None (no claim, or its
    process is gone: a comparison killed while it trained, also when its pid now names another process)."""
    try:
        with open(os.path.join(folder, CLAIM)) as f:
            owner = f.read().strip()
    except FileNotFoundError:
        return None
    host, pid, started = (owner.split() + ["", "", ""])[:3]
    if host != socket.gethostname() or not pid.isdigit():
        return owner  # another machine's process (a shared file system): it cannot be checked from here
    if os.path.isdir("/proc"):
        return owner if _start_time(int(pid)) == started else None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return owner


def claim_setting(folder):
    """Claim a row's (grid setting's) checkpoint folder for this process: None when it is now ours, else
    the :func:`process_id` of the live process training it. Take it under the results lock, so two
    processes never claim one folder; :func:`release_setting` after its result is saved."""
    owner = _claim_owner(folder)
    if owner is not None and owner != process_id():
        return owner
    atomic_write_text(os.path.join(folder, CLAIM), process_id())
    return None


def release_setting(folder):
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(folder, CLAIM))


def model_rows(spec):
    """``{row label: model name}`` of a ``--models`` value (``SASRec,BPR-long=BPR``)."""
    rows = {}
    for item in (m.strip() for m in spec.split(",")):
        if item:
            label, _, model = item.rpartition("=")
            label, model = (label or model).strip(), model.strip()
            if not model or label in rows:
                raise ConfigError(f"--models entry '{item}' is empty or repeats the row '{label}'.")
            rows[label] = model
    if not rows:
        raise ConfigError("--models is empty. Fix: e.g. --models SASRec,GRU4Rec")
    return rows


def _worker(model, dataset, config_files, config_dict, overrides, result_path, parent_pid):
    # runs in a fresh (spawned) process, which a comparison killed even with SIGKILL takes with it
    from recbole_genrec.lifeline import die_with_parent

    die_with_parent(parent_pid)
    from recbole_genrec.quick_start import run_recbole_genrec

    try:
        result = run_recbole_genrec(model, dataset, config_files, config_dict, argv=overrides)
        result = {k: (dict(v) if isinstance(v, dict) else v) for k, v in result.items()}  # OrderedDicts -> JSON
        result["best_valid_score"] = float(result["best_valid_score"])
    except UserError as err:
        result = {"error": f"{type(err).__name__}: {err}"}
    with open(result_path, "w") as f:
        json.dump(result, f)


def check_model_names(models):
    """``UnknownModelError`` for the first name that is no plugin or RecBole model."""
    from recbole_genrec.utils import get_model

    for model in models:
        get_model(model)


def read_results_json(path, flag, missing_fix=""):
    """A comparison's results.json, or a ConfigError naming the file when it is missing or not one."""
    if not os.path.isfile(path):
        raise ConfigError(f"{flag}: '{path}' does not exist.{missing_fix}")
    try:
        with open(path) as f:
            payload = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"{flag}: '{path}' is not valid JSON ({err}; truncated or hand-edited?). Fix: rerun that "
            "comparison, or restore the file."
        ) from err
    missing = [key for key in ("results", "commands", *COMPARABLE_KEYS) if not isinstance(payload, dict) or key not in payload]
    if missing:
        raise ConfigError(f"{flag}: '{path}' is not a comparison's results.json (no {', '.join(missing)}).")
    return payload


COMPARABLE_KEYS = ("dataset", "config_files", "budget", "overrides")


def check_comparable(payload, reference, where):
    for key in COMPARABLE_KEYS + ("grid",):  # (a comparison without --grid has no "grid")
        if payload.get(key) != reference.get(key):
            raise ConfigError(
                f"{where} differs in {key} ({payload.get(key)!r} vs {reference.get(key)!r}): "
                "results would not be comparable."
            )


def run_model(model, dataset, config_files, config_dict, overrides, result_path):
    """Train/evaluate one model in a spawned process; return its result dict."""
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(
        target=_worker, args=(model, dataset, config_files, config_dict, overrides, result_path, os.getpid())
    )
    start = time.perf_counter()
    proc.start()
    try:
        proc.join()
    finally:  # interrupted or terminated: never leave the worker training on its own
        if proc.is_alive():
            proc.terminate()
            proc.join()
    if proc.exitcode != 0 or not os.path.isfile(result_path):
        return {"error": f"process exited with code {proc.exitcode} (see the log above)"}
    with open(result_path) as f:
        result = json.load(f)
    result["wall_seconds"] = time.perf_counter() - start
    return result


def metric_names(results):
    return next((list(r["test_result"]) for r in results.values() if "test_result" in r), [])


def markdown_table(results, command):
    """Rows models, columns test metrics (best in bold), train seconds, peak memory."""
    metrics = metric_names(results)
    best = {m: max(r["test_result"][m] for r in results.values() if m in r.get("test_result", {})) for m in metrics}
    header = ["model"] + metrics + ["train s", "epochs", "peak MB", "params"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model, r in results.items():
        if "test_result" not in r:
            lines.append(f"| {model} | " + " | ".join(["—"] * (len(header) - 2)) + f" | {r.get('error', '')} |")
            continue
        cells = [
            "—" if m not in r["test_result"] else
            f"**{r['test_result'][m]:.4f}**" if r["test_result"][m] == best[m] else f"{r['test_result'][m]:.4f}"
            for m in metrics
        ]
        if "ensemble" in r:  # A+B fixed/adaptive: fused saved predictions, nothing trained
            lines.append(f"| {model} | " + " | ".join(cells + ["—"] * 4) + " |")
            continue
        epochs = r.get("epochs_run") or "—"
        cells += [f"{r['train_seconds']:.0f}", str(epochs), f"{r['peak_rss_mb']:.0f}", f"{r['num_params']:,}"]
        label = f"{model} ({setting_label(r['chosen'])})" if r.get("chosen") else model
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(
        ["Test metrics (full ranking; best in bold). Model selection on validation "
         "(RecBole's valid_metric), best checkpoint reloaded for test.", "", *lines, "",
         *grid_table(results, metrics), "Command:", "", "```", command, "```", ""]
    )


def grid_table(results, metrics):
    """Markdown lines: every grid setting of every row, its validation score and test metrics."""
    tuned = {m: r for m, r in results.items() if r.get("grid")}
    if not tuned:
        return []
    lines = ["Grid: every setting of every model; the row above is the best validation score (marked *).", "",
             "| model | setting | valid score | " + " | ".join(metrics) + " | train s | epochs |",
             "|" + "---|" * (len(metrics) + 5)]
    for model, r in tuned.items():
        for run in r["grid"]:
            mark = " *" if run["setting"] == r.get("chosen") else ""
            if "error" in run:
                lines.append(f"| {model} | {setting_label(run['setting'])} | {run['error']} |" + " — |" * (len(metrics) + 2))
                continue
            cells = [f"{run['best_valid_score']:.4f}{mark}"] + [f"{run['test_result'].get(m, float('nan')):.4f}" for m in metrics]
            cells += [f"{run['train_seconds']:.0f}", str(run.get("epochs_run") or "—")]
            lines.append(f"| {model} | {setting_label(run['setting'])} | " + " | ".join(cells) + " |")
    return lines + [""]


def bar_chart(results, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    metrics = metric_names(results)
    models = [m for m, r in results.items() if "test_result" in r]
    if not metrics or not models:
        return
    x = np.arange(len(metrics))
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(metrics) + 2), 4))
    for i, model in enumerate(models):
        ax.bar(x + i * width - 0.4 + width / 2, [results[model]["test_result"][m] for m in metrics], width, label=model)
    ax.set_xticks(x)
    ax.set_xticklabels(metrics, rotation=30)
    ax.set_ylabel("test score")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def curve_chart(results, path, title):
    """Validation score against epochs and against training seconds, one line per row (chosen run)."""
    curves = {m: r["valid_curve"] for m, r in results.items() if r.get("valid_curve")}
    if not curves:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for model, curve in curves.items():
        scores = [p["valid_score"] for p in curve]
        axes[0].plot([p["epoch"] for p in curve], scores, marker=".", label=model)
        axes[1].plot([p["train_seconds"] for p in curve], scores, marker=".", label=model)
    axes[0].set_xlabel("epochs trained")
    axes[1].set_xlabel("training seconds")
    axes[0].set_ylabel("validation score (valid_metric)")
    axes[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(out, payload):
    """results.json, results.md (table) and results.png for a comparison payload."""
    results = payload["results"]
    # atomic: an interrupted comparison leaves the previous file, never a truncated one
    atomic_write_text(os.path.join(out, "results.json"), json.dumps(payload, indent=2))
    table = markdown_table(results, "\n".join(payload["commands"]))
    atomic_write_text(os.path.join(out, "results.md"), f"# {', '.join(results)} on {payload['dataset']}\n\n{table}")
    bar_chart(results, os.path.join(out, "results.png"), f"{payload['dataset']}: test metrics")
    curve_chart(results, os.path.join(out, "curves.png"), f"{payload['dataset']}: validation")
    return table


def merge(folders, out):
    """One table from comparisons run separately (e.g. in parallel) on identical settings; a row in
    several folders is taken from the last of them.

    Refuses folders whose dataset, shared config files, budget or overrides differ.
    """
    payloads = [read_results_json(os.path.join(folder, "results.json"), "--merge") for folder in folders]
    merged = dict(payloads[0], commands=[], results={}, model_config={})
    for folder, payload in zip(folders, payloads):
        check_comparable(payload, payloads[0], f"--merge: '{folder}'")
        merged["commands"] += [c for c in payload["commands"] if c not in merged["commands"]]  # shared history once
        merged["results"].update(payload["results"])
        merged["model_config"].update(payload["model_config"])
    return write_outputs(out, merged)  # (its first write creates ``out``)


def compare(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args, models, per_model, overrides = parse_args(argv)
    check_model_names(models.values())  # every name, before any model trains
    out = args.out or os.path.join("benchmarks", "results", f"compare_{args.dataset}")
    if any(a.startswith("--save_predictions=") and a.endswith(".npz") for a in overrides) and len(models) > 1:
        raise ConfigError("--save_predictions must name a folder (one <model>.npz each) when comparing several models.")
    os.makedirs(out, exist_ok=True)
    config_files = args.config_files.split() if args.config_files else []
    budget = {"epochs": args.epochs, "train_time_budget": args.minutes}
    config_dict = {key: value for key, value in budget.items() if value is not None}
    command = "python -m recbole_genrec.compare " + " ".join(shlex.quote(a) for a in argv)
    results = {}
    grid = grid_settings(args.grid)
    settings = {"dataset": args.dataset, "config_files": config_files, "budget": config_dict, "overrides": overrides}
    if args.grid:
        settings["grid"] = args.grid
    # a comparison stopped in its first run has no results.json yet: --keep_finished still resumes it
    path, lock = os.path.join(out, "results.json"), os.path.join(out, ".results.lock")
    appending = args.append or (args.keep_finished and os.path.isfile(path))
    if appending:  # extend it: its settings must equal these
        previous = read_results_json(path, "--append", missing_fix=" Fix: run without --append first.")
        check_comparable(previous, settings, f"--append: '{path}'")
        results = previous["results"]
    finished, saved = {}, False  # {row: {setting label: result}} of this run's rows; results.json has its command

    def row(label, base):
        """A row of this run as results.json ``base`` should now hold it: its finished settings and, with
        --keep_finished, those other processes sharing the grid finished (None: nothing finished)."""
        done = finished[label]
        if args.keep_finished:
            done = {**finished_settings(base["results"].get(label)), **done}
        return grid_row(grid, done) if args.grid else done.get("")

    def save():
        """This run's rows onto results.json as it is now, so comparisons writing to one folder at the
        same time keep each other's rows and settings (a new table's first write starts the file). The
        other rows keep their config files; this run's models get this run's."""
        nonlocal saved
        with file_lock(lock):
            base = {"results": {}, "commands": []}
            if appending or saved or (args.keep_finished and os.path.isfile(path)):  # (or a process sharing the grid started it)
                base = read_results_json(path, "--append" if appending else "--keep_finished")
                check_comparable(base, settings, f"'{path}'")
            recorded = {k: v for k, v in base.get("model_config", {}).items() if k not in models} | per_model
            repeated = saved or command in base["commands"]  # a continued run's command is recorded once
            rows = {label: r for label in finished if (r := row(label, base)) is not None}
            results.update(rows)
            payload = dict(settings, commands=base["commands"] + ([] if repeated else [command]), model_config=recorded,
                           results={**base["results"], **rows})
            saved = True
            return write_outputs(out, payload)

    def take(label, setting, folder):
        """Claim a setting's folder (None), or say why it is not this process's: another process sharing
        the grid (--keep_finished) finished it since this one started, or is training it."""
        with file_lock(lock):
            if args.keep_finished and os.path.isfile(path):
                theirs = finished_settings(read_results_json(path, "--keep_finished")["results"].get(label))
                if setting_label(setting) in theirs:
                    finished[label][setting_label(setting)] = theirs[setting_label(setting)]
                    return "finished by another process"
            owner = claim_setting(folder)
        return None if owner is None else f"is being trained by process {owner} (its claim: {os.path.join(folder, CLAIM)})"

    for label, model in models.items():
        print(f"[compare] {label} on {args.dataset} ...", flush=True)
        files = config_files + per_model.get(label, [])
        result_path = os.path.join(out, f".{label}-{os.getpid()}.json")
        finished[label] = done = finished_settings(results.get(label)) if args.keep_finished else {}
        for setting in grid:  # every kept setting is in the row before anything is written
            if setting_label(setting) in done:
                print(f"[compare] {label}: {setting_label(setting) or 'the row'} kept from {out}", flush=True)
        for setting in [s for s in grid if setting_label(s) not in done]:
            # each row and grid setting its own checkpoint folder: a stopped run can resume, and processes
            # sharing a grid claim settings there
            folder = setting_checkpoint_dir(out, label, setting, checkpoint_base(overrides, files))
            os.makedirs(folder, exist_ok=True)
            busy = take(label, setting, folder)
            if busy:
                print(f"[compare] {label}: {setting_label(setting) or 'the row'} {busy}: left to it", flush=True)
                continue
            try:
                if setting:
                    print(f"[compare] {label}: {setting_label(setting)}", flush=True)
                extra = run_overrides(folder, label, model, setting, overrides, files, args.keep_finished)
                extra += [f"--{key}={value}" for key, value in setting.items()]
                done[setting_label(setting)] = run_model(model, args.dataset, files or None, config_dict, overrides + extra, result_path)
                if os.path.exists(result_path):
                    os.remove(result_path)
                save()  # after every run, before its claim goes: an interrupted comparison keeps what it finished
            finally:
                release_setting(folder)
        table = save()  # also when nothing was left to run (all kept)
        outcome = results.get(label, {})
        print(f"[compare] {label}: {outcome.get('test_result', outcome.get('error', 'left to another process'))}", flush=True)
    if any(a.startswith("--save_predictions=") for a in overrides):  # + A+B fixed / adaptive rows
        with file_lock(lock):
            payload = read_results_json(path, "--save_predictions")
            table = add_ensemble_rows(out, payload)
        results.update({label: row for label, row in payload["results"].items() if "ensemble" in row})
    print(table)
    return results


def add_ensemble_rows(out, payload):
    """Fuse the saved predictions of every (all-item model, generative model) pair (spec memgen §4)."""
    from recbole_genrec.analysis.ensemble import compare_rows
    from recbole_genrec.analysis.predictions import output_path

    setting = next(a.partition("=")[2] for a in payload["overrides"] if a.startswith("--save_predictions="))
    singles = [m for m, r in payload["results"].items() if "test_result" in r and "ensemble" not in r]
    topk = sorted({int(name.split("@")[1]) for name in metric_names(payload["results"]) if "@" in name})
    paths = {m: output_path(setting, m) for m in singles}
    payload["results"].update(compare_rows(paths, topk or [10], payload["overrides"]))
    return write_outputs(out, payload)


def main():
    # `kill <pid>` of the comparison must stop its worker too (see run_model's finally)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if sys.argv[1:2] == ["--merge"]:
            parser = argparse.ArgumentParser(prog="python -m recbole_genrec.compare --merge")
            parser.add_argument("--merge", nargs="+", required=True, metavar="FOLDER")
            parser.add_argument("--out", required=True)
            args = parser.parse_args()
            print(merge(args.merge, args.out))
            return
        results = compare()
    except UserError as err:
        sys.exit(f"error: {err}")
    failed = [m for m, r in results.items() if "error" in r]
    if failed:
        sys.exit(f"error: {', '.join(failed)} failed: " + "; ".join(results[m]["error"] for m in failed))


if __name__ == "__main__":
    main()
