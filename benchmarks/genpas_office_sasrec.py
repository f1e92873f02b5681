"""SASRec on office trained with LT, MT, SW and the GenPAS search's top choice, same budget each.

    OMP_NUM_THREADS=1 python benchmarks/genpas_office_sasrec.py --epochs 5 [--seed 2024] [--reuse_search]

1. runs the training-free search on office (validation targets/queries only;
   ``python -m recbole_genrec.analysis.genpas_search``) and takes its top-1;
2. trains SASRec (RecBole defaults, properties/dataset/office.yaml) once per scheme through the
   comparison command (one row per sampler: ``--models LT=SASRec,...`` with a sampler yaml per row),
   same seed, epochs and pairs per epoch (the MT count), tested at the best validation epoch.
Writes benchmarks/results/genpas_office_sasrec.{json,md} (the comparison's table and the search's
choice) and the search's genpas_search_office.json / genpas_search_office_kl.png. Needs
../shared/data/office.
"""

import argparse
import json
import os
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
OUT = os.path.join(ROOT, "benchmarks", "results")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--reuse_search", action="store_true",
                        help="take the top-1 from benchmarks/results/genpas_search_office.json (same seed)")
    args = parser.parse_args()
    command = "OMP_NUM_THREADS=1 python benchmarks/genpas_office_sasrec.py " + " ".join(sys.argv[1:])
    os.chdir(ROOT)
    from recbole_genrec.analysis import genpas_search
    from recbole_genrec.compare import compare

    dataset_yaml = "properties/dataset/office.yaml"
    search_path = os.path.join(OUT, "genpas_search_office.json")
    if args.reuse_search:
        with open(search_path) as f:
            search = json.load(f)
        if search.get("seed") != args.seed:
            raise SystemExit(f"{search_path} was made with seed {search.get('seed')}, not {args.seed}.")
    else:
        search = genpas_search.main(["--dataset=office", f"--config_files={dataset_yaml}",
                                     f"--genpas_search_out={OUT}", f"--seed={args.seed}", "--state=WARNING"])
    top = search["top_k"][0]
    a, b, g = top["theta"]
    samplers = {name: {"train_sampler": name} for name in ("LT", "MT", "SW")}
    samplers["GenPAS-top1"] = {"train_sampler": "genpas", "genpas_alpha": a, "genpas_beta": b, "genpas_gamma": g}
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["--models", ",".join(f"{label}=SASRec" for label in samplers), "--dataset", "office",
                "--config_files", dataset_yaml, "--epochs", str(args.epochs), "--out", os.path.join(tmp, "compare"),
                f"--seed={args.seed}", f"--stopping_step={args.epochs + 1}", "--train_batch_size=256",
                "--genpas_pairs_per_epoch=mt", f"--checkpoint_dir={tmp}", "--show_progress=False", "--state=WARNING"]
        for label, sampler in samplers.items():
            path = os.path.join(tmp, f"{label}.yaml")
            with open(path, "w") as f:
                yaml.safe_dump(sampler, f)
            argv += ["--model_config", f"{label}={path}"]
        results = compare(argv)
        with open(os.path.join(tmp, "compare", "results.md")) as f:
            table = f.read().split("\n", 2)[2]
    write(args, command, search, top, samplers, results, table)


def write(args, command, search, top, samplers, results, table):
    out = {"dataset": "office", "model": "SASRec", "epochs": args.epochs, "seed": args.seed,
           "budget": f"{args.epochs} epochs x MT-count pairs per epoch, batch 256, best valid epoch tested",
           "search": {"top_k": search["top_k"], "seconds": search["timings"]["with_loading_s"],
                      "n_candidates": len(search["candidates"])},
           "samplers": samplers, "results": results, "command": command}
    with open(os.path.join(OUT, "genpas_office_sasrec.json"), "w") as f:
        json.dump(out, f, indent=1, default=float)
    md = ["# SASRec on office: LT vs MT vs SW vs the GenPAS search's top choice", "",
          f"Command: `{command}` (needs `../shared/data/office`).", "",
          f"Budget per model: **{out['budget']}**; RecBole SASRec defaults, "
          "`properties/dataset/office.yaml` (leave-one-out, full ranking, L = 20), seed "
          f"{args.seed}, one run per scheme (no std: single seed).", "",
          f"Search (valid targets/queries only, {out['search']['seconds']:.0f} s): top-1 = `{top['config']}`; "
          "top-k: " + "; ".join(f"`{r['config']}`" for r in search["top_k"]), "",
          "| sampler | valid NDCG@10 | valid Recall@10 |", "|---|---|---|"]
    for name, r in results.items():
        v = r.get("best_valid_result") or {}
        md.append(f"| {name} | {v.get('ndcg@10', float('nan')):.4f} | {v.get('recall@10', float('nan')):.4f} |")
    md += ["", "The comparison command's table (test split):", "", table]
    with open(os.path.join(OUT, "genpas_office_sasrec.md"), "w") as f:
        f.write("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
