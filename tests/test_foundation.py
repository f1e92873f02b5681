"""The plugin's base: model lookup, Config checks, quick start, CLI, checkpoints, CPU DDP."""

import logging
import os
import subprocess
import sys

import pytest
import torch
from conftest import tiny_config, write_tiny_dataset

from recbole_genrec.config import Config, check_value_type, load_yaml_file
from recbole_genrec.errors import ConfigError, DatasetNotFoundError, UnknownModelError, UserError
from recbole_genrec.quick_start import run_recbole_genrec
from recbole_genrec.utils import create_dataset, get_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    """Config reads --key=value from sys.argv (as RecBole does): keep pytest's flags out."""
    monkeypatch.setattr(sys, "argv", ["pytest"])


# --- model lookup ----------------------------------------------------------------------


def test_recbole_models_resolve_unchanged():
    from recbole.model.general_recommender.bpr import BPR
    from recbole.model.sequential_recommender.sasrec import SASRec

    assert get_model("SASRec") is SASRec
    assert get_model("BPR") is BPR


def test_unknown_model_lists_plugin_models_and_points_to_recbole():
    with pytest.raises(UnknownModelError) as err:
        get_model("SASRek")
    message = str(err.value)
    assert "Unknown model 'SASRek'" in message
    assert "sasrec" in message.lower()  # close-match suggestion
    assert "Plugin models:" in message and "recbole.io" in message
    assert "lightgbm" not in message


def test_only_recommenders_are_plugin_models():
    from recbole_genrec.utils import plugin_model_names

    assert plugin_model_names() == ["MTGRec", "TIGER", "TIGER_APAO"]
    with pytest.raises(UnknownModelError, match="Plugin models: MTGRec, TIGER, TIGER_APAO\\."):
        get_model("T5")  # model/t5.py holds layers, not a model


def test_model_name_with_wrong_case_gets_a_hint():
    with pytest.raises(UnknownModelError, match="did you mean 'SASRec'"):
        get_model("sasrec")


def test_recbole_models_get_recbole_trainers_with_hook_points(tiny_data, tmp_path):
    from recbole.trainer import KGTrainer, Trainer

    from recbole_genrec.trainer import GenRecTrainer, trainer_class
    from recbole_genrec.trainer.trainer import HookPoints

    config = Config(model="SASRec", dataset="tiny", config_dict=tiny_config(tiny_data, tmp_path))
    assert trainer_class(config) is GenRecTrainer and GenRecTrainer.__bases__ == (HookPoints, Trainer)
    config = Config(model="TIGER", dataset="tiny", config_dict=tiny_config(tiny_data, tmp_path))
    assert trainer_class(config) is GenRecTrainer
    config = Config(model="CKE", dataset="tiny", config_dict=tiny_config(tiny_data, tmp_path))
    assert trainer_class(config).__bases__ == (HookPoints, KGTrainer)


# --- Config checks ----------------------------------------------------------------------


def test_missing_config_file_is_named(tmp_path):
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="nope.yaml' does not exist"):
        Config(model="SASRec", dataset="ml-100k", config_file_list=[path])


def test_invalid_yaml_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("epochs: [1, 2\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="bad.yaml' is not valid YAML"):
        load_yaml_file(str(path))


def test_yaml_that_is_not_a_mapping_is_rejected(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- epochs\n- 3\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        Config(model="SASRec", dataset="ml-100k", config_file_list=[str(path)])


def test_command_line_value_of_wrong_type(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["run_recbole_genrec.py", "--epochs=abc"])
    with pytest.raises(ConfigError) as err:
        Config(model="SASRec", dataset="ml-100k")
    assert "'epochs' expects int" in str(err.value) and "'abc'" in str(err.value)
    assert "command line" in str(err.value)


@pytest.mark.parametrize(
    "default, value, ok",
    [(1, 2, True), (1, 2.5, False), (1, True, False), (0.1, 1, True), (0.1, "x", False),
     (True, False, True), (True, 1, False), ([5], "5", False), ([5], [5, 10], True),
     ("CE", 3, True), (1, None, True)],
)
def test_value_type_rules(default, value, ok):
    if ok:
        check_value_type("k", default, value, "test")
    else:
        with pytest.raises(ConfigError, match="'k' expects"):
            check_value_type("k", default, value, "test")


def test_unknown_keys_are_warned(caplog):
    with caplog.at_level(logging.WARNING):
        config = Config(model="SASRec", dataset="ml-100k", config_dict={"learning_rat": 0.1})
    assert config.unknown_keys == ["learning_rat"]
    assert "learning_rat" in caplog.text


def test_ce_models_draw_no_training_negatives_by_default():
    config = Config(model="SASRec", dataset="ml-100k")
    assert config["train_neg_sample_args"]["distribution"] == "none"
    config = Config(model="BPR", dataset="ml-100k")
    assert config["train_neg_sample_args"]["distribution"] == "uniform"


def test_user_errors_share_a_base_class():
    for cls in (ConfigError, UnknownModelError, DatasetNotFoundError):
        assert issubclass(cls, UserError)


# --- datasets ---------------------------------------------------------------------------


def test_missing_dataset_folder_is_named(tmp_path):
    config = Config(model="SASRec", dataset="tiny", config_dict=tiny_config(str(tmp_path / "none"), tmp_path))
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        create_dataset(config)


def test_missing_inter_file_is_named(tmp_path):
    data = write_tiny_dataset(tmp_path / "data")
    os.remove(os.path.join(data, "tiny", "tiny.inter"))
    config = Config(model="SASRec", dataset="tiny", config_dict=tiny_config(data, tmp_path))
    with pytest.raises(DatasetNotFoundError, match="tiny.inter' is missing"):
        create_dataset(config)


# --- end to end -------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["SASRec", "GRU4Rec", "BERT4Rec", "BPR"])
def test_recbole_models_train_and_reload_best_checkpoint(model, tiny_data, tmp_path):
    result = run_recbole_genrec(model, "tiny", config_dict=tiny_config(tiny_data, tmp_path))
    assert set(result["test_result"]) == {"recall@5", "recall@10", "ndcg@5", "ndcg@10"}
    assert 0.0 <= result["test_result"]["recall@10"] <= 1.0
    saved = os.listdir(tmp_path / "saved")
    assert len(saved) == 1 and saved[0].startswith(model)
    # the checkpoint reloads under torch's safe (weights_only) loader
    checkpoint = torch.load(tmp_path / "saved" / saved[0], weights_only=True)
    assert checkpoint["config"]["model"] == model


def test_same_seed_same_metrics(tiny_data, tmp_path):
    first = run_recbole_genrec("SASRec", "tiny", config_dict=tiny_config(tiny_data, tmp_path / "a"))
    second = run_recbole_genrec("SASRec", "tiny", config_dict=tiny_config(tiny_data, tmp_path / "b"))
    assert first["test_result"] == second["test_result"]
    assert first["best_valid_result"] == second["best_valid_result"]


def test_runs_cap_onednn_primitive_cache_unless_the_user_set_it(tiny_data, tmp_path, monkeypatch):
    """The cap must be in the environment when a run's first oneDNN primitive is made (so: set by
    the run itself), and a user's own ONEDNN_PRIMITIVE_CACHE_CAPACITY is left alone."""
    from recbole_genrec.quick_start import ONEDNN_PRIMITIVE_CACHE

    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    run_recbole_genrec("SASRec", "tiny", config_dict=tiny_config(tiny_data, tmp_path / "a"))
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == str(ONEDNN_PRIMITIVE_CACHE)
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "7")
    run_recbole_genrec("SASRec", "tiny", config_dict=tiny_config(tiny_data, tmp_path / "b"))
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "7"


def _cli(tmp_path, *args, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "run_recbole_genrec.py"), *args],
        capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=timeout,
    )


def _cli_config(tmp_path, data):
    path = tmp_path / "tiny.yaml"
    import yaml

    path.write_text(yaml.safe_dump(tiny_config(data, tmp_path, state="INFO")))
    return str(path)


def test_cli_prints_recbole_metric_table(tiny_data, tmp_path):
    out = _cli(tmp_path, "--model=SASRec", "--dataset=tiny", f"--config_files={_cli_config(tmp_path, tiny_data)}")
    assert out.returncode == 0, out.stderr[-2000:]
    log = out.stdout + out.stderr
    assert "test result" in log and "ndcg@10" in log
    assert "Loading model structure and parameters from" in log


def test_cli_unknown_model_exits_cleanly(tmp_path):
    out = _cli(tmp_path, "--model=NoSuchModel", "--dataset=ml-100k")
    assert out.returncode != 0
    assert "error: Unknown model 'NoSuchModel'" in out.stderr
    assert "Traceback" not in out.stderr and "lightgbm" not in out.stderr


def test_cli_wrong_type_override_exits_cleanly(tiny_data, tmp_path):
    out = _cli(tmp_path, "--model=SASRec", "--dataset=tiny", f"--config_files={_cli_config(tmp_path, tiny_data)}", "--train_batch_size=big")
    assert out.returncode != 0
    assert "'train_batch_size' expects int" in out.stderr and "Traceback" not in out.stderr


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_cli_distributed_two_cpu_processes_gloo(tiny_data, tmp_path):
    out = _cli(
        tmp_path, "--model=SASRec", "--dataset=tiny", f"--config_files={_cli_config(tmp_path, tiny_data)}",
        "--nproc=2", f"--port={_free_port()}",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert "test result" in log and "Loading model structure and parameters from" in log


# --- comparison command -----------------------------------------------------------------


def _compare_config_file(tiny_data, tmp_path):
    """The tiny config as a yaml for ``--config_files`` (no ``epochs``: the comparison's budget sets it)."""
    import yaml

    config = tiny_config(tiny_data, tmp_path)
    config.pop("epochs")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return config, path


def test_compare_writes_table_json_png_and_matches_plain_run(tiny_data, tmp_path):
    import json

    from recbole_genrec.compare import compare

    config, path = _compare_config_file(tiny_data, tmp_path)
    out = tmp_path / "cmp"
    small = tmp_path / "small.yaml"
    small.write_text("embedding_size: 32\n")
    results = compare(["--models", "SASRec,GRU4Rec", "--dataset", "tiny", "--config_files", str(path),
                       "--epochs", "2", "--out", str(out), "--hidden_size=32", "--model_config", f"GRU4Rec={small}"])
    assert set(results) == {"SASRec", "GRU4Rec"}
    payload = json.loads((out / "results.json").read_text())
    assert payload["budget"] == {"epochs": 2} and payload["overrides"] == ["--hidden_size=32"]
    # --append adds a model to the same table; a different dataset is refused
    with pytest.raises(ConfigError, match="differs in budget"):
        compare(["--models", "BPR", "--dataset", "tiny", "--config_files", str(path), "--epochs", "1",
                 "--out", str(out), "--append", "--hidden_size=32"])
    compare(["--models", "BPR", "--dataset", "tiny", "--config_files", str(path), "--epochs", "2",
             "--out", str(out), "--append", "--hidden_size=32", "--model_config", f"BPR={small}"])
    payload = json.loads((out / "results.json").read_text())
    assert list(payload["results"]) == ["SASRec", "GRU4Rec", "BPR"] and len(payload["commands"]) == 2
    # every row keeps its own config files: the appended run's do not replace the earlier rows'
    assert payload["model_config"] == {"GRU4Rec": [str(small)], "BPR": [str(small)]}
    with pytest.raises(ConfigError, match="differs in dataset"):
        compare(["--models", "BPR", "--dataset", "other", "--config_files", str(path), "--epochs", "2",
                 "--out", str(out), "--append", "--hidden_size=32"])
    # --merge joins separately run comparisons with identical settings, and refuses others
    from recbole_genrec.compare import merge

    other = tmp_path / "cmp2"
    compare(["--models", "BPR", "--dataset", "tiny", "--config_files", str(path), "--epochs", "2",
             "--out", str(other), "--hidden_size=32"])
    merge([str(out), str(other)], str(tmp_path / "merged"))
    merged = json.loads((tmp_path / "merged" / "results.json").read_text())
    assert list(merged["results"]) == ["SASRec", "GRU4Rec", "BPR"] and len(merged["commands"]) == 3
    merge([str(out), str(other), str(out)], str(tmp_path / "again"))  # folders that share history: each command once
    assert json.loads((tmp_path / "again" / "results.json").read_text())["commands"] == merged["commands"]
    (tmp_path / "merged" / "results.png").stat()
    third = tmp_path / "cmp3"
    compare(["--models", "BPR", "--dataset", "tiny", "--config_files", str(path), "--epochs", "1",
             "--out", str(third), "--hidden_size=32"])
    with pytest.raises(ConfigError, match="differs in budget"):
        merge([str(out), str(third)], str(tmp_path / "bad"))
    table = (out / "results.md").read_text()
    assert "| SASRec |" in table and "| GRU4Rec |" in table and "**" in table
    assert "python -m recbole_genrec.compare --models SASRec,GRU4Rec" in table
    assert (out / "results.png").stat().st_size > 1000
    # the comparison's SASRec equals a plain run with the same seed and settings
    plain = run_recbole_genrec("SASRec", "tiny", config_dict=dict(config, epochs=2, hidden_size=32))
    assert results["SASRec"]["test_result"] == dict(plain["test_result"])


def test_grid_settings_are_the_product_and_bad_specs_are_named():
    from recbole_genrec.compare import grid_settings

    assert grid_settings([]) == [{}]
    assert grid_settings(["learning_rate=0.001, 0.01", "dropout_prob=0.2,0.5"]) == [
        {"learning_rate": "0.001", "dropout_prob": "0.2"}, {"learning_rate": "0.001", "dropout_prob": "0.5"},
        {"learning_rate": "0.01", "dropout_prob": "0.2"}, {"learning_rate": "0.01", "dropout_prob": "0.5"},
    ]
    for bad in (["learning_rate"], ["=0.1"], ["learning_rate="]):
        with pytest.raises(ConfigError, match="KEY=V1,V2"):
            grid_settings(bad)
    with pytest.raises(ConfigError, match="twice"):
        grid_settings(["learning_rate=0.1", "learning_rate=0.2"])


def test_grid_choice_uses_validation_only():
    from recbole_genrec.compare import NOT_RUN, choose_on_validation, grid_row

    def run(valid, test, bigger=True):
        return {"best_valid_score": valid, "valid_score_bigger": bigger, "test_result": {"ndcg@10": test},
                "train_seconds": 1.0, "epochs_run": 2}

    runs = [({"lr": "a"}, run(0.1, 0.9)), ({"lr": "b"}, run(0.3, 0.1)), ({"lr": "c"}, {"error": "boom"})]
    row = choose_on_validation(runs)
    assert row["chosen"] == {"lr": "b"} and row["test_result"] == {"ndcg@10": 0.1}  # not the best test
    assert [g["setting"] for g in row["grid"]] == [{"lr": "a"}, {"lr": "b"}, {"lr": "c"}]
    assert row["grid"][2] == {"setting": {"lr": "c"}, "error": "boom"}
    # a metric where smaller is better (e.g. a loss) picks the smallest
    assert choose_on_validation([({"lr": "a"}, run(0.1, 0, False)), ({"lr": "b"}, run(0.3, 0, False))])["chosen"] == {"lr": "a"}
    assert "error" in choose_on_validation([({"lr": "c"}, {"error": "boom"})])
    # an interrupted grid: the finished settings are chosen from, the rest listed as not run
    partial = grid_row([{"lr": "a"}, {"lr": "b"}, {"lr": "c"}], {"lr=b": run(0.1, 0.9)})
    assert partial["chosen"] == {"lr": "b"}
    assert partial["grid"][0] == {"setting": {"lr": "a"}, "error": NOT_RUN}  # listed in grid order
    assert partial["grid"][2] == {"setting": {"lr": "c"}, "error": NOT_RUN}


def test_compare_grid_tunes_every_model_on_validation(tiny_data, tmp_path):
    import json

    from recbole_genrec.compare import compare

    config, path = _compare_config_file(tiny_data, tmp_path)
    out = tmp_path / "grid"
    args = ["--models", "BPR", "--dataset", "tiny", "--config_files", str(path), "--epochs", "2", "--out", str(out)]
    compare(args + ["--grid", "learning_rate=0.0001,0.05"])
    payload = json.loads((out / "results.json").read_text())
    row = payload["results"]["BPR"]
    grid = {g["setting"]["learning_rate"]: g for g in row["grid"]}
    assert set(grid) == {"0.0001", "0.05"} and payload["grid"] == ["learning_rate=0.0001,0.05"]
    best = max(grid, key=lambda v: grid[v]["best_valid_score"])
    assert row["chosen"] == {"learning_rate": best} and row["test_result"] == grid[best]["test_result"]
    # each setting is the plain run with that override; curves have one point per validation
    plain = run_recbole_genrec("BPR", "tiny", config_dict=dict(config, epochs=2, learning_rate=0.05))
    assert grid["0.05"]["test_result"] == dict(plain["test_result"])
    assert [p["epoch"] for p in grid["0.05"]["valid_curve"]] == [p["epoch"] for p in plain["valid_curve"]] == [1, 2]
    assert all(p["train_seconds"] <= p["wall_seconds"] for p in plain["valid_curve"])
    table = (out / "results.md").read_text()
    assert f"| BPR (learning_rate={best}) |" in table and "| BPR | learning_rate=0.0001 |" in table
    assert (out / "curves.png").stat().st_size > 1000
    # --append onto a grid comparison needs the same grid
    with pytest.raises(ConfigError, match="differs in grid"):
        compare(args + ["--append"])


def _grid_result(score):
    return {"best_valid_score": score, "valid_score_bigger": True, "test_result": {"ndcg@10": score / 10},
            "train_seconds": 1.0, "epochs_run": 2, "peak_rss_mb": 1.0, "num_params": 3}


def _stub_grid(monkeypatch, tmp_path, stop_at, trained):
    """compare with ``run_model`` stubbed (a setting's validation score is its learning rate; the
    settings in ``stop_at`` are stopped while they train): ``(module, out folder, arguments)``."""
    import recbole_genrec.compare as cmp

    def fake_run(model, dataset, config_files, config_dict, overrides, result_path):
        lr = float(overrides[-1].split("=")[1])
        trained.append(lr)
        if lr in stop_at:
            raise KeyboardInterrupt  # the grid is stopped while this setting trains
        return _grid_result(lr)

    monkeypatch.setattr(cmp, "run_model", fake_run)
    monkeypatch.setattr(cmp, "check_model_names", lambda models: None)
    out = tmp_path / "grid"
    return cmp, out, ["--models", "BPR", "--dataset", "tiny", "--out", str(out), "--grid", "learning_rate=0.2,0.3,0.1"]


def test_compare_keep_finished_continues_an_interrupted_grid(tmp_path, monkeypatch):
    import json

    trained, stop_at = [], [0.3]
    cmp, out, args = _stub_grid(monkeypatch, tmp_path, stop_at, trained)
    with pytest.raises(KeyboardInterrupt):
        cmp.compare(args)
    row = json.loads((out / "results.json").read_text())["results"]["BPR"]
    assert row["chosen"] == {"learning_rate": "0.2"}  # written after the first setting
    assert [g.get("error") for g in row["grid"]] == [None, cmp.NOT_RUN, cmp.NOT_RUN]
    with pytest.raises(ConfigError, match="differs in grid"):  # the same command: a grid stays a grid
        cmp.compare([a for a in args if "learning_rate=" not in a and a != "--grid"] + ["--keep_finished"])
    trained.clear()
    stop_at.clear()
    cmp.compare(args + ["--keep_finished"])
    assert trained == [0.3, 0.1]  # 0.2 kept, not retrained
    payload = json.loads((out / "results.json").read_text())
    row = payload["results"]["BPR"]
    assert row["chosen"] == {"learning_rate": "0.3"} and [g["best_valid_score"] for g in row["grid"]] == [0.2, 0.3, 0.1]
    assert len(payload["commands"]) == 2
    trained.clear()
    cmp.compare(args + ["--keep_finished"])  # nothing left to run: the table is rewritten as it was
    again = json.loads((out / "results.json").read_text())
    assert trained == [] and again["results"] == payload["results"]
    assert again["commands"] == payload["commands"]  # a repeated command is recorded once


def test_compare_keep_finished_loses_nothing_when_stopped_again(tmp_path, monkeypatch):
    """A continued grid, stopped again before its first new setting finishes, still lists every setting
    it kept, also from a results.json whose unchosen grid entries are summaries (older files)."""
    import json

    cmp, out, args = _stub_grid(monkeypatch, tmp_path, stop_at=[0.1], trained=[])
    with pytest.raises(KeyboardInterrupt):
        cmp.compare(args)
    payload = json.loads((out / "results.json").read_text())
    grid = payload["results"]["BPR"]["grid"]
    grid[0] = {k: grid[0][k] for k in ("setting", "best_valid_score", "test_result", "train_seconds", "epochs_run")}
    (out / "results.json").write_text(json.dumps(payload))
    for _ in range(2):
        with pytest.raises(KeyboardInterrupt):
            cmp.compare(args + ["--append", "--keep_finished"])
        row = json.loads((out / "results.json").read_text())["results"]["BPR"]
        assert row["chosen"] == {"learning_rate": "0.3"} and row["peak_rss_mb"] == 1.0
        assert [g.get("best_valid_score") for g in row["grid"]] == [0.2, 0.3, None]


def _stop_while_training(folder, model):
    """A run stopped while it trains: its resume state is in its checkpoint folder."""
    os.makedirs(folder, exist_ok=True)
    open(os.path.join(folder, f"{model}-Dec-06-2026_10-00-00-1-abcdef.resume.pth"), "w").close()
    raise KeyboardInterrupt


@pytest.mark.parametrize("grid", ["learning_rate=0.2,0.1,0.3", "learning_rate=0.1,0.2,0.3"])
def test_compare_keep_finished_resumes_the_setting_it_was_stopped_in(tiny_data, tmp_path, monkeypatch, grid):
    """Each grid setting trains in its own checkpoint folder; a continued grid passes --resume=latest
    to the setting whose folder holds a resume state (the run the stop interrupted), and only to it,
    also when the stop came in the first setting (no results.json written yet)."""
    import recbole_genrec.compare as cmp

    calls = {}

    def fake_run(model, dataset, config_files, config_dict, overrides, result_path):
        lr = overrides[-1]
        folder = [o.split("=", 1)[1] for o in overrides if o.startswith("--checkpoint_dir=")][-1]
        assert f"--sid_cache_dir={tmp_path / 'ckpt' / 'semantic_ids'}" in overrides  # one cache for every setting
        calls[lr] = (folder, "--resume=latest" in overrides)
        if lr.endswith("0.1") and not calls[lr][1]:
            _stop_while_training(folder, "BPR")
        return _grid_result(0.1)

    monkeypatch.setattr(cmp, "run_model", fake_run)
    monkeypatch.setattr(cmp, "check_model_names", lambda models: None)
    args = ["--models", "BPR", "--dataset", "tiny", "--out", str(tmp_path / "grid"), "--grid",
            grid, f"--checkpoint_dir={tmp_path / 'ckpt'}"]
    with pytest.raises(KeyboardInterrupt):
        cmp.compare(args)
    stopped_first = grid.startswith("learning_rate=0.1")
    assert os.path.isfile(tmp_path / "grid" / "results.json") != stopped_first
    folders = {lr: folder for lr, (folder, _) in calls.items()}
    assert len(set(folders.values())) == 2 - stopped_first and all(f.startswith(str(tmp_path / "ckpt")) for f in folders.values())
    first = dict(calls)
    calls.clear()
    cmp.compare(args + ["--keep_finished"])
    assert calls == {"--learning_rate=0.1": (first["--learning_rate=0.1"][0], True),
                     "--learning_rate=0.3": (calls["--learning_rate=0.3"][0], False),
                     **({"--learning_rate=0.2": (calls["--learning_rate=0.2"][0], False)} if stopped_first else {})}
    assert calls["--learning_rate=0.3"][0] not in folders.values()
    from recbole_genrec.config import Config

    for folder in folders.values():  # the run's Config takes the folder as given
        argv = [f"--checkpoint_dir={folder}"]
        assert Config(model="SASRec", dataset="tiny", config_dict=tiny_config(tiny_data, tmp_path), argv=argv)["checkpoint_dir"] == folder

def test_compare_keep_finished_without_a_grid_keeps_finished_rows_and_resumes_the_stopped_one(tmp_path, monkeypatch):
    """Without --grid each row trains in its own checkpoint folder (``.../<row>/default``): a continued
    comparison keeps the rows it finished and passes --resume=latest to the row it was stopped in."""
    import json

    import recbole_genrec.compare as cmp

    calls, sid_caches = [], set()

    def fake_run(model, dataset, config_files, config_dict, overrides, result_path):
        folder = [o.split("=", 1)[1] for o in overrides if o.startswith("--checkpoint_dir=")][-1]
        calls.append((model, folder, "--resume=latest" in overrides))
        sid_caches.update(o.split("=", 1)[1] for o in overrides if o.startswith("--sid_cache_dir="))
        if model == "GRU4Rec" and "--resume=latest" not in overrides:
            _stop_while_training(folder, model)
        return _grid_result(0.5)

    monkeypatch.setattr(cmp, "run_model", fake_run)
    monkeypatch.setattr(cmp, "check_model_names", lambda models: None)
    config = tmp_path / "c.yaml"  # the checkpoint folder a config file names holds the rows' folders
    config.write_text(f"checkpoint_dir: {tmp_path / 'ckpt'}\n")
    args = ["--models", "BPR,GRU4Rec,SASRec", "--dataset", "tiny", "--out", str(tmp_path / "cmp"), "--config_files", str(config)]
    with pytest.raises(KeyboardInterrupt):
        cmp.compare(args)
    (_, bpr_folder, _), (_, gru_folder, _) = calls
    assert bpr_folder != gru_folder and gru_folder.endswith(os.path.join("GRU4Rec", "default"))
    assert gru_folder.startswith(str(tmp_path / "ckpt" / "compare")) and sid_caches == {str(tmp_path / "ckpt" / "semantic_ids")}
    calls.clear()
    cmp.compare(args + ["--keep_finished"])
    assert calls == [("GRU4Rec", gru_folder, True), ("SASRec", calls[1][1], False)]  # BPR kept
    results = json.loads((tmp_path / "cmp" / "results.json").read_text())["results"]
    assert set(results) == {"BPR", "GRU4Rec", "SASRec"} and all("test_result" in r for r in results.values())


def test_compare_appends_in_parallel_keep_each_others_rows(tmp_path, monkeypatch):
    """Two comparisons appending to one folder at the same time (a seed's variants run on two cores):
    the one that finishes last writes onto the file as it is then, not as it was when it started."""
    import json

    import recbole_genrec.compare as cmp

    out = str(tmp_path / "cmp")
    args = ["--dataset", "tiny", "--out", out, "--epochs", "1"]

    def fake_run(model, dataset, config_files, config_dict, overrides, result_path):
        if model == "BPR":  # while BPR trains, a second comparison appends GRU4Rec and finishes first
            cmp.compare(["--models", "GRU4Rec", *args, "--append"])
        return dict(_grid_result(0.1), test_result={"ndcg@10": {"BPR": 0.2, "GRU4Rec": 0.3, "Pop": 0.05}[model]})

    monkeypatch.setattr(cmp, "run_model", fake_run)
    monkeypatch.setattr(cmp, "check_model_names", lambda models: None)
    cmp.compare(["--models", "Pop", *args])
    cmp.compare(["--models", "BPR", *args, "--append"])
    payload = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert {m: r["test_result"]["ndcg@10"] for m, r in payload["results"].items()} == {"Pop": 0.05, "GRU4Rec": 0.3, "BPR": 0.2}
    assert len(payload["commands"]) == 3 and "| GRU4Rec |" in (tmp_path / "cmp" / "results.md").read_text()


def test_compare_rejects_bad_arguments():
    from recbole_genrec.compare import parse_args

    with pytest.raises(ConfigError, match="MODEL=FILE"):
        parse_args(["--models", "SASRec", "--dataset", "x", "--model_config", "GRU4Rec=a.yaml"])
    with pytest.raises(ConfigError, match="--key=value"):
        parse_args(["--models", "SASRec", "--dataset", "x", "epochs"])


def test_time_budget_stops_starting_epochs(tiny_data, tmp_path):
    result = run_recbole_genrec(
        "SASRec", "tiny", config_dict=tiny_config(tiny_data, tmp_path, epochs=50, train_time_budget=1e-6)
    )
    assert result["epochs_run"] == 1
    assert "ndcg@10" in result["test_result"]


def test_model_yaml_defaults_follow_the_class_lineage(monkeypatch, tmp_path):
    import recbole_genrec.config as config_module
    from recbole.model.sequential_recommender.sasrec import SASRec

    class MySASRec(SASRec):
        pass

    props = tmp_path / "props"
    (props / "model").mkdir(parents=True)
    (props / "model" / "SASRec.yaml").write_text("hidden_size: 48\nn_heads: 4\nloss_type: CE\n")
    (props / "model" / "MySASRec.yaml").write_text("n_heads: 3\n")
    (props / "model" / "ml-100k").mkdir()
    (props / "model" / "ml-100k" / "SASRec.yaml").write_text("hidden_size: 16\ninner_size: 32\n")
    (props / "model" / "ml-100k" / "MySASRec.yaml").write_text("inner_size: 24\n")
    monkeypatch.setattr(config_module, "PROPERTIES_DIR", str(props))
    config = Config(model=MySASRec, dataset="ml-100k")
    assert config["n_heads"] == 3 and config["loss_type"] == "CE"
    assert config["hidden_size"] == 16 and config["inner_size"] == 24  # dataset-specific layers
    config = Config(model=MySASRec, dataset="office")
    assert config["hidden_size"] == 48 and config["inner_size"] is None  # no office-specific file


def _fork_compare(cmp, args):
    """Run ``cmp.compare(args)`` in a forked process (the stubs monkeypatched here apply in it)."""
    import multiprocessing

    proc = multiprocessing.get_context("fork").Process(target=cmp.compare, args=(args,))
    proc.start()
    return proc


def test_compare_processes_share_one_grid(tmp_path, monkeypatch):
    """Two processes started with the same --keep_finished command share its grid: every setting is
    trained once, by one of them, and results.json ends with all of them."""
    import json
    import time

    import recbole_genrec.compare as cmp

    log = tmp_path / "trained.log"

    def fake_run(model, dataset, config_files, config_dict, overrides, result_path):
        lr = float(overrides[-1].split("=")[1])
        time.sleep(0.3)
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {lr}\n")
        return _grid_result(lr)

    monkeypatch.setattr(cmp, "run_model", fake_run)
    monkeypatch.setattr(cmp, "check_model_names", lambda models: None)
    lrs = ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6"]
    args = ["--models", "BPR", "--dataset", "tiny", "--out", str(tmp_path / "grid"), "--grid", "learning_rate=" + ",".join(lrs),
            f"--checkpoint_dir={tmp_path / 'ckpt'}", "--keep_finished"]
    procs = [_fork_compare(cmp, args) for _ in range(2)]
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    trained = [line.split() for line in log.read_text().splitlines()]
    assert sorted(lr for _, lr in trained) == [str(float(lr)) for lr in lrs]  # each once
    assert len({pid for pid, _ in trained}) == 2  # both took part
    row = json.loads((tmp_path / "grid" / "results.json").read_text())["results"]["BPR"]
    assert [g["best_valid_score"] for g in row["grid"]] == [float(lr) for lr in lrs]
    assert row["chosen"] == {"learning_rate": "0.6"}
    assert not list((tmp_path / "ckpt").rglob(cmp.CLAIM))  # every claim released


def test_compare_leaves_a_setting_another_live_process_trains_and_takes_it_over_once_that_process_is_gone(tmp_path, monkeypatch):
    import json
    import socket
    import subprocess

    trained = []
    cmp, out, args = _stub_grid(monkeypatch, tmp_path, stop_at=[], trained=trained)
    args += [f"--checkpoint_dir={tmp_path / 'ckpt'}", "--keep_finished"]
    folder = cmp.setting_checkpoint_dir(str(out), "BPR", {"learning_rate": "0.3"}, str(tmp_path / "ckpt"))
    os.makedirs(folder)
    other = subprocess.Popen(["sleep", "60"])
    try:
        claim = os.path.join(folder, cmp.CLAIM)
        open(claim, "w").write(f"{socket.gethostname()} {other.pid} 1")  # its pid, another process's start
        assert cmp.claim_setting(folder) is None  # a reused pid does not hold the claim
        open(claim, "w").write(cmp.process_id(other.pid))
        cmp.compare(args)
        assert trained == [0.2, 0.1]
        row = json.loads((out / "results.json").read_text())["results"]["BPR"]
        assert [g.get("error") for g in row["grid"]] == [None, cmp.NOT_RUN, None]
        assert os.path.isfile(os.path.join(folder, cmp.CLAIM))  # not this process's to release
    finally:
        other.kill()
        other.wait()
    trained.clear()
    cmp.compare(args)  # its owner is gone (killed while it trained): the setting is taken over
    assert trained == [0.3]
    row = json.loads((out / "results.json").read_text())["results"]["BPR"]
    assert row["chosen"] == {"learning_rate": "0.3"} and not os.path.exists(os.path.join(folder, cmp.CLAIM))


@pytest.mark.parametrize("during", ["0.2", "0.3"])
def test_compare_takes_in_settings_another_process_saved_while_it_trained(tmp_path, monkeypatch, during):
    """A setting another process sharing the grid finished meanwhile is neither retrained nor lost from
    the row this process writes, also when that process started results.json (during the first setting)."""
    import json

    import recbole_genrec.compare as cmp

    trained = []
    _, out, args = _stub_grid(monkeypatch, tmp_path, stop_at=[], trained=trained)
    run = cmp.run_model

    def run_and_finish_another(model, dataset, config_files, config_dict, overrides, result_path):
        if overrides[-1].endswith(during):  # meanwhile another process finishes 0.1 and saves it
            grid = ["learning_rate=0.2,0.3,0.1"]
            payload = json.loads((out / "results.json").read_text()) if during == "0.3" else {
                "dataset": "tiny", "config_files": [], "budget": {}, "overrides": [], "grid": grid,
                "commands": ["the other process's"], "model_config": {}, "results": {}}
            payload["results"]["BPR"] = cmp.grid_row(cmp.grid_settings(grid), {"learning_rate=0.1": _grid_result(0.1)})
            (out / "results.json").write_text(json.dumps(payload))
        return run(model, dataset, config_files, config_dict, overrides, result_path)

    monkeypatch.setattr(cmp, "run_model", run_and_finish_another)
    cmp.compare(args + ["--keep_finished"])
    assert trained == [0.2, 0.3]
    payload = json.loads((out / "results.json").read_text())
    row = payload["results"]["BPR"]
    assert [g["best_valid_score"] for g in row["grid"]] == [0.2, 0.3, 0.1] and row["chosen"] == {"learning_rate": "0.3"}
    assert len(payload["commands"]) == 2 - (during == "0.3")  # the other's command kept when it started the file
