"""benchmarks/onednn_cache.py: the comparisons it runs (checked against the comparison command's
parser and the convergence benchmark's TIGER configs) and the report's equal-metrics verdict."""

import os

from conftest import load_benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bench():
    return load_benchmark("onednn_cache")


def test_cases_are_the_convergence_tiger_groups_at_two_capacities():
    from recbole_genrec.compare import parse_args
    from recbole_genrec.quick_start import ONEDNN_PRIMITIVE_CACHE

    bench = _bench()
    assert bench.CAPACITIES == (1024, ONEDNN_PRIMITIVE_CACHE)
    for label in bench.MODELS:
        files = parse_args(bench.conv.GROUPS[label] + bench.conv.PROTOCOL)[2][label]
        for path in files:
            assert os.path.isfile(os.path.join(ROOT, path)), path
        outs = set()
        for cap in bench.CAPACITIES:
            args, models, per_model, _ = parse_args(bench.compare_command(label, cap, 3)[3:])
            assert models == {label: "TIGER"} and per_model[label] == files and args.epochs == 3
            outs.add(args.out)
        assert len(outs) == 2  # each capacity its own comparison folder


def test_report_says_whether_the_metrics_are_equal():
    bench = _bench()
    row = {"peak_rss_mb": 3000.0, "train_seconds": 90.0, "test_result": {"ndcg@10": 0.01, "recall@10": 0.02}}
    capped = dict(row, peak_rss_mb=1900.0)
    text = bench.report({"TIGER-cpu": {1024: row, 128: capped}}, epochs=3)
    assert "| TIGER-cpu | 1024 (default) | 3000 | 90 | 30.0 | 0.0100 | 0.0200 | True |" in text
    other = dict(capped, test_result={"ndcg@10": 0.011, "recall@10": 0.02})
    assert "| False |" in bench.report({"TIGER-cpu": {1024: row, 128: other}}, epochs=3)
