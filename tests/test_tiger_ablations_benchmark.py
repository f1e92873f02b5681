"""benchmarks/tiger_ablations_office.py: the comparisons it runs and the report it writes.

The runs take an hour or more each on office; here each ablation's command line is checked against
the comparison command's parser, the config files it names and the convergence protocol, and the
report is computed from folders shaped like the comparison's results.json.
"""

import json
import os

import pytest
from conftest import load_benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("tiger_ablations_office")


def test_each_ablation_is_the_tiger_cpu_group_with_one_change(bench):
    from recbole_genrec.compare import grid_settings, parse_args

    _, _, base_files, base_overrides = parse_args(bench.conv.GROUPS["TIGER-cpu"] + bench.conv.PROTOCOL)
    for name, (change, _) in bench.ABLATIONS.items():
        args, models, per_model, overrides = parse_args(bench.compare_args(name, "0.003"))
        assert models == {name: "TIGER"} and args.out.endswith(name)
        assert grid_settings(args.grid) == [{"learning_rate": "0.003"}]  # one setting: a stopped run resumes
        assert overrides == base_overrides + change  # the same protocol, plus the one change
        assert per_model[name] == base_files["TIGER-cpu"]
    sid_file = bench.ABLATIONS["published-codes"][0][0].split("=", 1)[1]
    assert os.path.isfile(os.path.join(ROOT, "..", "shared", "data", "office", sid_file))  # data_path/office/


def fake_folder(root, name, lr, valid, ndcg, grid=None):
    row = {"best_valid_score": valid, "test_result": {"recall@10": 2 * ndcg, "ndcg@10": ndcg}, "train_seconds": 3600.0,
           "epochs_run": 40, "chosen": {"learning_rate": lr}}
    row["grid"] = grid or [{"setting": {"learning_rate": lr}, **{k: v for k, v in row.items() if k != "chosen"}}]
    os.makedirs(os.path.join(root, name))
    with open(os.path.join(root, name, "results.json"), "w") as f:
        json.dump({"results": {name: row}}, f)


def test_report_puts_each_ablation_beside_the_baseline_at_its_learning_rate(bench, tmp_path, monkeypatch):
    conv_out, out = tmp_path / "conv", tmp_path / "abl"
    from recbole_genrec.compare import NOT_RUN

    fake_folder(conv_out, "TIGER-cpu", "0.003", 0.05, 0.04, grid=[
        {"setting": {"learning_rate": "0.01"}, "best_valid_score": 0.03, "test_result": {"recall@10": 0.05, "ndcg@10": 0.025},
         "train_seconds": 10.0, "epochs_run": 9},
        {"setting": {"learning_rate": "0.003"}, "best_valid_score": 0.05, "test_result": {"recall@10": 0.08, "ndcg@10": 0.04},
         "train_seconds": 10.0, "epochs_run": 9},
        {"setting": {"learning_rate": "0.001"}, "error": NOT_RUN}])
    fake_folder(conv_out, "SASRec", "0.001", 0.06, 0.05)
    fake_folder(conv_out, "TIGER-spec", "0.001", 0.055, 0.045)  # capacity: the tuned spec-size group
    fake_folder(out, "user-tokens", "0.003", 0.052, 0.043)
    monkeypatch.setattr(bench.conv, "OUT", str(conv_out))
    monkeypatch.setattr(bench, "OUT", str(out))
    with pytest.raises(SystemExit, match="not finished"):
        bench.chosen_learning_rate()  # the baseline grid still runs: no ablation at a provisional choice
    rows = bench.summary_rows()
    assert [r[0] for r in rows] == ["TIGER-cpu", "user-tokens", "TIGER-spec", "SASRec"]
    assert rows[0][3]["test_result"]["ndcg@10"] == 0.04  # the grid's run at the ablation's learning rate
    text = bench.report_markdown(rows)
    assert "| user-tokens | 2,000 user tokens | 0.003 | 0.0520 | 0.0860 | 0.0430 | +0.0030 | 40 | 1.00 |" in text
    assert "| TIGER-spec | spec-size model, 2.1M parameters (convergence grid, tuned) | 0.001 | 0.0550 | 0.0900 | 0.0450 | — |" in text
    assert "Not run yet: published-codes, rqvae-codes." in text


def test_memgen_chains_the_package_commands_and_reports_the_gap_by_category(bench, tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(bench.subprocess, "run", lambda cmd, check, cwd: ran.append(cmd[1:]))
    monkeypatch.setattr(bench, "MEMGEN", str(tmp_path / "memgen"))
    os.makedirs(tmp_path / "memgen")
    bench.memgen([("SASRec", "a.pth"), ("TIGER", "b.pth")])
    preds = [os.path.join("saved", "tiger_ablations_office", f"{m}.npz") for m in ("SASRec", "TIGER")]
    assert ran[:2] == [["-m", "recbole_genrec.analysis.predictions", p, "--out", o] for p, o in zip(("a.pth", "b.pth"), preds)]
    assert ran[2][:2] == ["-m", "recbole_genrec.analysis.memgen"] and ran[2][-3:-1] == preds
    assert (tmp_path / "memgen" / "commands.txt").read_text().count("python -m recbole_genrec.analysis.") == 3

    def cat(name, share, a, b):
        return {"category": name, "share": share, "SASRec NDCG@10": a, "TIGER NDCG@10": b}

    summary = {"models": ["SASRec", "TIGER"], "n_instances": 100, "max_hop": 4,
               "categories": [cat("memorization", 0.1, 0.3, 0.1), cat("generalization", 0.8, 0.02, 0.03),
                              cat("symmetry_1", 0.05, 0.1, 0.2), cat("uncategorized", 0.1, 0.0, 0.0)],
               "ensemble": {"test": {"SASRec": {"ndcg@10": 0.05}, "SASRec+TIGER adaptive": {"ndcg@10": 0.06}}}}
    (tmp_path / "memgen" / "summary.json").write_text(json.dumps(summary))
    text = "\n".join(bench.memgen_markdown())
    assert "| memorization | 10.0% | 0.3000 | 0.1000 | -0.2000 | -0.0200 |" in text
    assert "| generalization | 80.0% | 0.0200 | 0.0300 | +0.0100 | +0.0080 |" in text
    assert "symmetry_1" not in text and "SASRec+TIGER adaptive 0.0600" in text
