"""benchmarks/tokenizer_recipe.py --tiger: TIGER on a recipe candidate's codes, through the comparison command.

The runs take about 40 minutes each on office; here the command is checked against the comparison
command's parser and the benchmark it shares its settings with, and the table row is rendered.
"""

import json
import os

import pytest
from conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("tokenizer_recipe")


def test_tiger_runs_the_tiger_plus_plus_row_with_the_candidates_settings(bench, tmp_path, monkeypatch):
    from recbole_genrec.compare import parse_args

    calls = []

    def fake_run(cmd, cwd, check):
        calls.append(cmd)
        args, models, per_model, overrides = parse_args(cmd[3:])
        os.makedirs(os.path.join(cwd, args.out))
        result = {"best_valid_result": {"ndcg@10": 0.0123}, "epochs_run": 40}
        with open(os.path.join(cwd, args.out, "results.json"), "w") as f:
            json.dump({"results": {"TIGER": result}}, f)

    monkeypatch.setattr(bench, "ROOT", str(tmp_path))
    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    out = bench.run_tiger("old: adagrad 1e-3")
    args, models, per_model, overrides = parse_args(calls[0][3:])
    assert calls[0][1:3] == ["-m", "recbole_genrec.compare"]
    assert models == {"TIGER": "TIGER"} and per_model["TIGER"] == bench.mtg.VARIANTS["TIGER++"][1]
    # the TIGER++ row's protocol, seed 2024 and the candidate's RQ-VAE settings
    assert overrides == [*bench.mtg.PROTOCOL[4:], "--seed=2024", "--rq_optimizer=adagrad", "--rq_lr=0.001",
                         "--dead_code_restart=False"]
    assert args.dataset == "office" and args.out.endswith(os.path.join("tokenizer_recipe_office", "old-adagrad-1e-3"))
    assert out["valid_ndcg@10"] == 0.0123 and out["command"].startswith("python -m recbole_genrec.compare --models")


def test_table_row_shows_tiger_validation_or_not_run(bench):
    quality = {"levels": [{"used": 256, "usage": 1.0}] * 3, "collision_rate_before": 0.05, "max_group_size": 4,
               "id_change_vs_previous": [{"any": 0.5, "first": 0.1}]}
    report = {"quality": quality, "timings_at_build": {"fit_rqvae": 10.0}, "final_recon_mse": 0.5}
    assert bench.row("x", report).endswith("| 10s | not run |")
    assert bench.row("x", dict(report, tiger={"valid_ndcg@10": 0.04567})).endswith("| 10s | 0.0457 |")
