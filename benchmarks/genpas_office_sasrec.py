"""SASRec on office trained with LT, MT, SW and the GenPAS search's top choice, same budget each.

    OMP_NUM_THREADS=1 python benchmarks/genpas_office_sasrec.py --epochs 5 [--seed 2024]

1. runs the training-free search on office (validation targets/queries only) and takes its top-1;
2. trains SASRec (RecBole defaults, properties/dataset/office.yaml) once per scheme with the same
   seed, the same number of epochs and the same number of pairs per epoch (the MT count), and
   evaluates on the test split at the best validation epoch (valid NDCG@10).
Writes benchmarks/results/genpas_office_sasrec.{json,md} and the search's
genpas_search_office.json / genpas_search_office_kl.png. Needs ../shared/data/office.
"""

import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
OUT = os.path.join(ROOT, "benchmarks", "results")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--reuse_search", action="store_true",
                        help="take the top-1 from benchmarks/results/genpas_search_office.json (same seed) "
                             "instead of re-running the search")
    args = parser.parse_args()
    command = "OMP_NUM_THREADS=1 python benchmarks/genpas_office_sasrec.py " + " ".join(sys.argv[1:])
    os.chdir(ROOT)
    sys.argv = [sys.argv[0]]
    from recbole_genrec import genpas_search as cli
    from recbole_genrec.quick_start import run_recbole_genrec

    files = ["properties/dataset/office.yaml"]
    argv = ["--dataset=office", f"--config_files={files[0]}", f"--genpas_search_out={OUT}",
            f"--seed={args.seed}", "--state=WARNING"]
    search_path = os.path.join(OUT, "genpas_search_office.json")
    if args.reuse_search:
        with open(search_path) as f:
            search = json.load(f)
        if search.get("seed") != args.seed:
            raise SystemExit(f"{search_path} was made with seed {search.get('seed')}, not {args.seed}.")
        search_s = search["timings"]["with_loading_s"]
    else:
        sys.argv = ["genpas_search"] + argv
        t0 = time.perf_counter()
        search = cli.main(argv)
        search_s = time.perf_counter() - t0
        sys.argv = [sys.argv[0]]
    top = search["top_k"][0]
    a, b, g = top["theta"]

    schemes = {
        "LT": {"train_sampler": "LT"},
        "MT": {"train_sampler": "MT"},
        "SW": {"train_sampler": "SW"},
        f"GenPAS top-1 ({a}, {b}, {g})": {"train_sampler": "genpas", "genpas_alpha": a,
                                          "genpas_beta": b, "genpas_gamma": g},
    }
    results = {}
    with tempfile.TemporaryDirectory() as ckpt:
        for name, sampler in schemes.items():
            config = {
                "epochs": args.epochs, "seed": args.seed, "reproducibility": True,
                "stopping_step": args.epochs + 1, "eval_step": 1, "train_batch_size": 256,
                "genpas_pairs_per_epoch": "mt", "checkpoint_dir": ckpt, "show_progress": False,
                "state": "WARNING", "log_wandb": False, **sampler,
            }
            t0 = time.perf_counter()
            r = run_recbole_genrec(model="SASRec", dataset="office", config_file_list=files,
                                   config_dict=config, saved=True)
            r["wall_seconds"] = time.perf_counter() - t0
            r["config"] = sampler
            results[name] = {k: (dict(v) if hasattr(v, "items") else v) for k, v in r.items()}
            print(name, r["best_valid_result"], r["test_result"], flush=True)
            write(args, command, search, search_s, top, results)  # after each model: nothing is lost


def write(args, command, search, search_s, top, results):
    out = {"dataset": "office", "model": "SASRec", "epochs": args.epochs, "seed": args.seed,
           "budget": f"{args.epochs} epochs x MT-count pairs per epoch, batch 256, best valid epoch tested",
           "search": {"top_k": search["top_k"], "seconds": search_s, "n_candidates": len(search["candidates"])},
           "results": results, "complete": len(results) == 4, "command": command}
    with open(os.path.join(OUT, "genpas_office_sasrec.json"), "w") as f:
        json.dump(out, f, indent=1, default=float)
    md = ["# SASRec on office: LT vs MT vs SW vs the GenPAS search's top choice", "",
          f"Command: `{command}` (needs `../shared/data/office`).", "",
          f"Budget per model: **{out['budget']}**; RecBole SASRec defaults, "
          "`properties/dataset/office.yaml` (leave-one-out, full ranking, L = 20), seed "
          f"{args.seed}, one run per scheme (no std: single seed).", "",
          f"Search (valid targets/queries only, {search_s:.0f} s): top-1 = `{top['config']}`; "
          "top-k: " + "; ".join(f"`{r['config']}`" for r in search["top_k"]), "",
          "| sampler | valid NDCG@10 | valid Recall@10 | test NDCG@10 | test Recall@10 | train s |",
          "|---|---|---|---|---|---|"]
    for name, r in results.items():
        v, t = r["best_valid_result"], r["test_result"]
        md.append(f"| {name} | {v['ndcg@10']:.4f} | {v['recall@10']:.4f} | {t['ndcg@10']:.4f} | "
                  f"{t['recall@10']:.4f} | {r['train_seconds']:.0f} |")
    md.append("")
    with open(os.path.join(OUT, "genpas_office_sasrec.md"), "w") as f:
        f.write("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
