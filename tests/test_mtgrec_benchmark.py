"""benchmarks/mtgrec_office.py: the comparison it runs per seed and the report it computes over seeds.

The runs themselves take hours on office; here the command line is checked against the comparison
command's parser and the config files it names, and the report is computed from seed folders shaped
like the comparison's results.json.
"""

import json
import math
import os

import pytest
from conftest import load_benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("mtgrec_office")


def test_each_seed_is_one_comparison_of_every_variant(bench):
    from recbole_genrec.compare import parse_args

    args, models, per_model, overrides = parse_args(bench.compare_args(2024, list(bench.VARIANTS)))
    assert models == {v: model for v, (model, _) in bench.VARIANTS.items()}
    assert "--seed=2024" in overrides and args.out.endswith("seed2024")
    for variant, files in per_model.items():
        assert files == bench.VARIANTS[variant][1]
        assert all(os.path.isfile(os.path.join(ROOT, f)) for f in files), files
    # the budget: the two TIGERs train as many epochs as the tested MTGRec model saw
    from recbole_genrec.config import load_yaml_file

    mtg = load_yaml_file(os.path.join(ROOT, bench.MTG_CPU))
    assert load_yaml_file(os.path.join(ROOT, bench.BUDGET))["epochs"] == mtg["epochs"] + mtg["mt_finetune_epochs"]


def write_seed(root, seed, scores, overrides=("--eval_step=5",), model_config=None):
    """A seed folder: results.json with test recall/ndcg per variant (and an MTGRec curriculum)."""
    results = {}
    for variant, (recall, ndcg) in scores.items():
        results[variant] = {"test_result": {"recall@10": recall, "ndcg@10": ndcg, "recall@20": 2 * recall,
                                            "ndcg@20": 2 * ndcg}, "train_seconds": 100.0}
        if variant == "MTGRec":
            results[variant]["mtgrec"] = {"pretrain": {"curriculum": [{"seconds": 3.0, "epoch_seconds": 10.0},
                                                                      {"seconds": 5.0, "epoch_seconds": 10.0}]}}
    os.makedirs(os.path.join(root, f"seed{seed}"))
    payload = {"overrides": [*overrides, f"--seed={seed}"], "model_config": model_config or {}, "config_files": [],
               "results": results, "commands": [f"python -m recbole_genrec.compare --seed={seed}"]}
    with open(os.path.join(root, f"seed{seed}", "results.json"), "w") as f:
        json.dump(payload, f)


def test_a_seed_runs_a_few_variants_at_a_time_and_continues_when_stopped(bench, tmp_path):
    from recbole_genrec.compare import finished_settings, parse_args

    args, *_ = parse_args(bench.compare_args(7, ["TIGER", "MTGRec"]))
    assert args.keep_finished  # finished variants kept, a stopped one resumed (the comparison's --keep_finished)
    write_seed(tmp_path, 7, {"TIGER": (0.1, 0.05)})
    with open(tmp_path / "seed7" / "results.json") as f:
        results = json.load(f)["results"]
    results["MTGRec"] = {"error": "process exited with code 1"}  # failed: run again
    assert finished_settings(results["TIGER"]) == {"": results["TIGER"]} and finished_settings(results["MTGRec"]) == {}


def test_report_over_seeds(bench, tmp_path):
    write_seed(tmp_path, 1, {"TIGER": (0.10, 0.05), "TIGER++": (0.12, 0.06), "MTGRec": (0.15, 0.08)})
    write_seed(tmp_path, 2, {"TIGER": (0.20, 0.07), "TIGER++": (0.18, 0.06), "MTGRec": (0.21, 0.10)})
    os.makedirs(tmp_path / "seed3")  # a seed still running: no results.json yet, left out
    seeds = bench.load_seeds(str(tmp_path))
    assert sorted(seeds) == [1, 2]
    summary = bench.summarise(seeds)
    assert summary["rows"]["MTGRec"]["ndcg@10"] == [0.08, 0.10]
    assert set(summary["rows"]) == {"TIGER", "TIGER++", "MTGRec"}  # variants never run are not rows
    diffs = summary["paired_differences"]
    assert diffs["MTGRec - TIGER"]["1"]["ndcg@10"] == pytest.approx(0.03)
    assert diffs["TIGER++ - TIGER"]["2"]["recall@10"] == pytest.approx(-0.02)
    assert "MTGRec - MTGRec-uniform" not in diffs
    assert summary["influence_cost_per_epoch"]["MTGRec"] == [pytest.approx(0.4)] * 2  # mean 4 s / mean 10 s
    text = bench.report_markdown(summary, seeds)
    std = math.sqrt(((0.08 - 0.09) ** 2 + (0.10 - 0.09) ** 2) / 1)
    assert f"0.0900 ± {std:.4f}" in text and "| MTGRec - TIGER | 1 | +0.0500 | +0.0300 |" in text


def test_report_refuses_seeds_run_differently(bench, tmp_path):
    write_seed(tmp_path, 1, {"TIGER": (0.1, 0.05)})
    write_seed(tmp_path, 2, {"TIGER": (0.1, 0.05)}, overrides=("--eval_step=2",))
    with pytest.raises(SystemExit, match="different settings"):
        bench.summarise(bench.load_seeds(str(tmp_path)))


def test_opt_in_variants_join_the_report_and_each_variant_keeps_its_config_across_seeds(bench, tmp_path):
    from recbole_genrec.compare import parse_args

    assert "MTGRec-rq500" in bench.VARIANTS and "MTGRec-rq500" not in bench.MAIN  # `run <seed>` leaves it out
    args, *_ = parse_args(bench.compare_args(7, bench.MAIN))
    assert args.models == ",".join(f"{v}={bench.VARIANTS[v][0]}" for v in bench.MAIN)
    files = {v: bench.VARIANTS[v][1] for v in bench.VARIANTS}
    write_seed(tmp_path, 1, {"TIGER": (0.1, 0.05), "TIGER++-rq500": (0.1, 0.04), "MTGRec-rq500": (0.1, 0.06)},
               model_config={v: files[v] for v in ("TIGER", "TIGER++-rq500", "MTGRec-rq500")})
    write_seed(tmp_path, 2, {"TIGER": (0.1, 0.05)}, model_config={"TIGER": files["TIGER"]})
    summary = bench.summarise(bench.load_seeds(str(tmp_path)))  # seed 2 ran only the main variants: accepted
    assert summary["paired_differences"]["MTGRec-rq500 - TIGER++-rq500"]["1"]["ndcg@10"] == pytest.approx(0.02)
    write_seed(tmp_path, 3, {"TIGER": (0.1, 0.05)}, model_config={"TIGER": files["TIGER++"]})
    with pytest.raises(SystemExit, match="different settings"):  # one variant, two configurations
        bench.summarise(bench.load_seeds(str(tmp_path)))
