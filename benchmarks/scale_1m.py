"""Scale: a synthetic 1M-item catalogue through the tokenizer, the prefix trie and beam search.

    OMP_NUM_THREADS=1 python benchmarks/scale_1m.py                  # ~10-15 min, one thread
    OMP_NUM_THREADS=1 python benchmarks/scale_1m.py --items 10000 100000 --users 128   # quicker

For each catalogue size N (default 10,000 and 1,000,000), with random Gaussian item
embeddings ``[N, dim]`` float32 (``--dim``, default 64; the tokenizer does not care where
embeddings come from, and 1M x 64 keeps the run inside a shared 23 GB / 2-core machine):

1. **Tokenization**: the package's residual k-means (``tokenizer.rkmeans.residual_kmeans``,
   faiss, fitted on all N items) at the package's defaults (``rq_levels``,
   ``rq_codebook_size``, ``rq_kmeans_iters`` read from ``recbole_genrec/properties/sid.yaml``),
   then the collision level (``tokenizer.collision.add_collision_level``): wall time and peak
   resident memory above the start of the stage.
2. **Trie**: ``model.beam_search.PrefixTrie`` over the N codes: build time, the bytes of its
   tables, peak memory of the build, nodes and the largest fan-out ``K_t`` per depth, and how much
   of the dense ``[n_nodes_t, K_t]`` tables is padding.
3. **Beam search**: the package's ``beam_search`` driven by its ``T5StepDecoder`` over the
   package's ``T5`` built exactly as ``TIGER`` builds it (sizes
   from ``properties/model/TIGER.yaml``, i.e. the spec size, or ``--cpu-preset`` for
   ``properties/model/TIGER-cpu.yaml``), random weights (speed does not depend on training), histories of
   1-20 random catalogue items (the same lengths for every N). Users/second of encoder +
   beam search, constrained (trie) and unconstrained (full vocabulary + ``trie.lookup``),
   then of RecBole's final scatter into the ``[B, n_items]`` score matrix
   (``TIGER.beam_to_scores``), each with its peak memory above the start of the call.

Memory: a thread samples glibc's ``mallinfo2`` (bytes handed out by malloc, heap + mmapped:
torch's CPU tensors and numpy arrays) every 0.5 ms while the measured call runs, outside the
timed passes; the tables report the peak above the value at the call's start. The script
re-executes itself with ``MALLOC_MMAP_THRESHOLD_`` fixed at 128 KiB so that every large block is
its own mapping (counted exactly, returned on free).
Writes ``benchmarks/results/scale_1m.{json,md}`` (``--out`` to change).
"""

import argparse
import ctypes
import ctypes.util
import json
import os
import platform
import subprocess
import sys
import threading
import time

MMAP_ENV = "MALLOC_MMAP_THRESHOLD_"
if os.environ.get(MMAP_ENV) is None and __name__ == "__main__":
    os.environ[MMAP_ENV] = str(1 << 17)  # 128 KiB: large tensors are mmapped and unmapped on free
    os.execv(sys.executable, [sys.executable] + sys.argv)

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from recbole_genrec.config import PROPERTIES_DIR, load_yaml_file  # noqa: E402
from recbole_genrec.model.beam_search import PrefixTrie, beam_search, level_offsets  # noqa: E402
from recbole_genrec.model.t5 import T5, T5Dims, T5StepDecoder  # noqa: E402
from recbole_genrec.model.tiger import TIGER  # noqa: E402
from recbole_genrec.tokenizer.collision import add_collision_level, collision_rate  # noqa: E402
from recbole_genrec.tokenizer.rkmeans import residual_kmeans  # noqa: E402

MB = float(1 << 20)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
_LIBC.mallinfo2.restype = _MallInfo2


def malloc_in_use():
    """Bytes malloc has handed out and not got back: heap chunks in use + mmapped chunks (glibc)."""
    info = _LIBC.mallinfo2()
    return info.uordblks + info.hblkhd


class PeakMem:
    """Peak of ``malloc_in_use()`` (MiB) above its value at entry, sampled every ``interval`` s in a
    thread. Counts what is allocated (torch's CPU tensors, numpy arrays), not what stays resident."""

    def __init__(self, interval=0.0005):
        self.interval = interval

    def __enter__(self):
        self.start = self.peak = malloc_in_use()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, malloc_in_use())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, malloc_in_use())
        self.delta_mb = (self.peak - self.start) / MB


def tokenize(n, dim, sid, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    out = {"items": n, "dim": dim, "embeddings_mb": x.nbytes / MB}
    with PeakMem() as mem:
        t0, c0 = time.perf_counter(), time.process_time()
        codes, _ = residual_kmeans(
            x, np.arange(n), levels=sid["rq_levels"], codebook_size=sid["rq_codebook_size"],
            seed=seed, niter=sid["rq_kmeans_iters"],
        )
        out["rkmeans_s"] = time.perf_counter() - t0
        out["rkmeans_cpu_s"] = time.process_time() - c0
    out["rkmeans_peak_mb"] = mem.delta_mb
    out["collision_rate_3_levels"] = collision_rate(codes)
    with PeakMem() as mem:
        t0, c0 = time.perf_counter(), time.process_time()
        full = add_collision_level(codes, sid["rq_codebook_size"], dataset_name=f"synthetic-{n}")
        out["collision_level_s"] = time.perf_counter() - t0
        out["collision_level_cpu_s"] = time.process_time() - c0
    out["collision_level_peak_mb"] = mem.delta_mb
    out["collision_rate_4_levels"] = collision_rate(full)
    _, counts = np.unique(codes, axis=0, return_counts=True)
    out["max_group_size"] = int(counts.max())
    out["levels"] = int(full.shape[1])
    del x
    return full, out


def build_trie(codes, sizes):
    codes_t = torch.as_tensor(codes, dtype=torch.long)
    with PeakMem() as mem:
        t0, c0 = time.perf_counter(), time.process_time()
        trie = PrefixTrie(codes_t, sizes, item_ids=torch.arange(1, len(codes) + 1))
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    table_bytes = sum(t.numel() * t.element_size() for t in trie.children + trie.child_codes)
    nodes = [int(t.shape[0]) for t in trie.children]
    fan_out = [int(t.shape[1]) for t in trie.children]
    used = [int((t >= 0).sum()) for t in trie.children]
    slots = [n * k for n, k in zip(nodes, fan_out)]
    return trie, {
        "build_s": seconds,
        "build_cpu_s": cpu,
        "build_peak_mb": mem.delta_mb,
        "tables_mb": table_bytes / MB,
        "nodes_per_depth": nodes,
        "max_fan_out_per_depth": fan_out,
        "children_per_depth": used,
        "dense_slots_per_depth": slots,
        "padding_share": 1.0 - sum(used) / sum(slots),
        "csr_equivalent_mb": 2 * sum(used) * 8 / MB,  # codes + child ids, int64, no padding
    }


def make_t5(sizes, tiger_yaml, cpu_preset):
    """The T5 that ``TIGER.__init__`` builds (same sizes), random weights, eval mode."""
    preset = load_yaml_file(os.path.join(PROPERTIES_DIR, "model", "TIGER-cpu.yaml")) if cpu_preset else {}
    keys = dict(tiger_yaml, **preset)
    n_user = int(keys["n_user_tokens"])
    eos = 1 + sum(sizes) + n_user
    n_dec = keys["n_decoder_layers"]
    dims = T5Dims(
        vocab_size=eos + 1, d_model=keys["d_model"], d_kv=keys["d_kv"], d_ff=keys["d_ff"],
        num_layers=keys["n_layers"], num_decoder_layers=n_dec if n_dec is not None else keys["n_layers"],
        num_heads=keys["n_heads"], relative_attention_num_buckets=keys["relative_attention_num_buckets"],
        relative_attention_max_distance=keys["relative_attention_max_distance"],
        dropout_rate=keys["dropout_prob"], feed_forward_proj=keys["feed_forward_proj"],
    )
    torch.manual_seed(0)
    model = T5(dims).eval()
    size = {k: keys[k] for k in ("n_layers", "d_model", "d_ff", "n_heads", "d_kv")}
    size["params"] = sum(p.numel() for p in model.parameters())
    return model, size, 1 + sum(sizes), eos


def histories(codes, offsets, n_users, user_token, eos, seed):
    """Encoder inputs ``[user] + codes of 1-20 random items + [EOS]`` (right-padded), as TIGER's."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 21, size=n_users)  # same for every catalogue (same seed)
    picks = rng.random((n_users, 20))
    items = (picks * len(codes)).astype(np.int64)
    tokens = torch.as_tensor(codes, dtype=torch.long)[torch.as_tensor(items)] + offsets  # [U, 20, L]
    L = codes.shape[1]
    ids = torch.zeros(n_users, 20 * L + 2, dtype=torch.long)
    ids[:, 0] = user_token
    for u, m in enumerate(lengths):
        ids[u, 1 : 1 + m * L] = tokens[u, :m].flatten()
        ids[u, 1 + m * L] = eos
    return ids, ids != 0


def run_batch(model, trie, offsets, x, m, beam, constrained, n_items):
    """Encoder + beam search, then the scatter; returns (result, scores, t_search, t_scatter)."""
    t0, c0 = time.perf_counter(), time.process_time()
    hidden = model.encode(x, m)
    decoder = T5StepDecoder(model, hidden, m)
    result = beam_search(decoder, trie, offsets, beam, constrained=constrained)
    t1, c1 = time.perf_counter(), time.process_time()
    del decoder, hidden
    scores = TIGER.beam_to_scores(result.items, n_items + 1)  # + RecBole's padding item 0
    t2, c2 = time.perf_counter(), time.process_time()
    return result, scores, (t1 - t0, c1 - c0), (t2 - t1, c2 - c1)


def time_beam(model, trie, offsets, ids, mask, batch, beam, constrained, n_items, mem_batches=2):
    """users/s of encoder + beam search and of the score scatter (first batch untimed), then a
    separate pass over ``mem_batches`` batches that samples the peak memory of each part (the
    sampling thread is off while timing)."""
    batches = []
    for start in range(0, ids.shape[0], batch):
        m = mask[start : start + batch]
        s = int(m.sum(1).max())
        batches.append((ids[start : start + batch, :s], m[:, :s]))
    search_s = scatter_s = search_cpu = scatter_cpu = 0.0
    users = invalid = 0
    with torch.no_grad():
        for i, (x, m) in enumerate(batches):
            result, scores, ts, tc = run_batch(model, trie, offsets, x, m, beam, constrained, n_items)
            assert scores.shape == (x.shape[0], n_items + 1)
            del scores
            invalid += int((result.items < 0).sum())
            if i > 0:  # the first batch is a warm-up
                search_s, scatter_s, users = search_s + ts[0], scatter_s + tc[0], users + x.shape[0]
                search_cpu, scatter_cpu = search_cpu + ts[1], scatter_cpu + tc[1]
        search_mb, scatter_mb = [], []
        for x, m in batches[1 : 1 + mem_batches]:
            with PeakMem() as mem:
                hidden = model.encode(x, m)
                decoder = T5StepDecoder(model, hidden, m)
                result = beam_search(decoder, trie, offsets, beam, constrained=constrained)
                del decoder, hidden
            search_mb.append(mem.delta_mb)
            with PeakMem() as mem:
                scores = TIGER.beam_to_scores(result.items, n_items + 1)
            scatter_mb.append(mem.delta_mb)
            del scores, result
    return {
        "beam": beam, "batch": batch, "constrained": constrained, "users_timed": users,
        "search_users_per_s": users / search_s, "scatter_users_per_s": users / scatter_s,
        "search_plus_scatter_users_per_s": users / (search_s + scatter_s),
        "search_users_per_cpu_s": users / search_cpu, "scatter_users_per_cpu_s": users / max(scatter_cpu, 1e-9),
        "search_peak_mb": max(search_mb), "scatter_peak_mb": max(scatter_mb),
        "search_peak_mb_per_batch": search_mb, "scatter_peak_mb_per_batch": scatter_mb,
        "score_matrix_mb": batch * (n_items + 1) * 4 / MB,
        "invalid_beams": invalid,
    }


def machine():
    load = os.getloadavg()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "?"
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores visible, torch threads {torch.get_num_threads()}, "
        f"torch {torch.__version__}, numpy {np.__version__}",
        "load_average_end": [round(v, 2) for v in load], "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }


def reading(rows):
    """Largest catalogue vs smallest: search memory and speed, and what the scatter costs."""
    if len(rows) < 2:
        return []
    small, big = rows[0], rows[-1]
    n0, n1 = small["tokenizer"]["items"], big["tokenizer"]["items"]
    out = [f"Catalogue {n1:,} vs {n0:,} items ({n1 / n0:.0f}x), same users, batch and beam:", ""]
    for a, b in zip(small["beam"], big["beam"]):
        mode = "constrained" if a["constrained"] else "unconstrained"
        out.append(
            f"- beam {a['beam']}, {mode}: search peak memory {b['search_peak_mb']:.1f} vs {a['search_peak_mb']:.1f} MiB "
            f"(x{b['search_peak_mb'] / a['search_peak_mb']:.2f}), search users per CPU second "
            f"{b['search_users_per_cpu_s']:.1f} vs {a['search_users_per_cpu_s']:.1f} "
            f"(x{b['search_users_per_cpu_s'] / a['search_users_per_cpu_s']:.2f}); the scatter into [B, n_items] "
            f"peaks at {b['scatter_peak_mb']:.0f} MiB (the matrix itself: {b['score_matrix_mb']:.0f} MiB) and takes "
            f"{100 * b['search_users_per_s'] / b['scatter_users_per_s'] / (1 + b['search_users_per_s'] / b['scatter_users_per_s']):.0f}% "
            "of search + scatter wall time."
        )
    t0, t1 = small["trie"], big["trie"]
    out += [
        "", f"- trie: {t1['tables_mb']:.1f} MiB of tables for {n1:,} items ({t1['tables_mb'] * MB / n1:.0f} B/item; "
        f"{t0['tables_mb'] * MB / n0:.0f} B/item at {n0:,}), built in {t1['build_cpu_s']:.2f} CPU s.",
    ]
    return out


def write_md(path, res, command):
    rows = res["catalogues"]
    lines = [
        "# Scale: a synthetic catalogue of 1M items (tokenizer, trie, beam search)", "",
        f"Command: `{command}` (commit {res['env']['commit']}, {res['env']['date']})  ",
        f"Machine: {res['env']['machine']}; load average at end {tuple(res['env']['load_average_end'])} "
        "(shared 2-core CPU: other jobs ran at the same time).  ",
        f"Embeddings: random Gaussian, float32, dim {res['dim']} (not 768: 1M x 64 keeps the run inside "
        "the shared machine's memory; k-means cost is linear in the dimension).  ",
        f"Model: {res['model']} (random weights), {res['users']} users per setting, the first batch untimed.", "",
        "## Tokenization and trie", "",
        "| items | residual k-means, wall / CPU (s) | its peak memory (MiB) | 3-level collision rate | max group "
        "| collision level, wall / CPU (s) | trie build, wall / CPU (s) | trie peak memory (MiB) | trie tables (MiB) | nodes per depth | max fan-out K_t | padding share | CSR equivalent (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t, p = r["tokenizer"], r["trie"]
        lines.append(
            f"| {t['items']:,} | {t['rkmeans_s']:.1f} / {t['rkmeans_cpu_s']:.1f} | {t['rkmeans_peak_mb']:.0f} "
            f"| {t['collision_rate_3_levels']:.4f} | {t['max_group_size']} "
            f"| {t['collision_level_s']:.2f} / {t['collision_level_cpu_s']:.2f} | {p['build_s']:.2f} / {p['build_cpu_s']:.2f} "
            f"| {p['build_peak_mb']:.0f} "
            f"| {p['tables_mb']:.1f} | {p['nodes_per_depth']} | {p['max_fan_out_per_depth']} | {p['padding_share']:.3f} "
            f"| {p['csr_equivalent_mb']:.1f} |"
        )
    lines += [
        "", "## Beam search (users/s; peak memory above the call's start, max over batches)", "",
        "| items | beam | decoding | search users/s (per wall / per CPU s) | search peak memory (MiB) "
        "| scatter users/s (wall / CPU) | scatter peak memory (MiB) "
        "| [B, n_items] float32 (MiB) | search + scatter users/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for b in r["beam"]:
            lines.append(
                f"| {r['tokenizer']['items']:,} | {b['beam']} | {'constrained' if b['constrained'] else 'unconstrained'} "
                f"| {b['search_users_per_s']:.1f} / {b['search_users_per_cpu_s']:.1f} | {b['search_peak_mb']:.1f} "
                f"| {b['scatter_users_per_s']:.0f} / {b['scatter_users_per_cpu_s']:.0f} "
                f"| {b['scatter_peak_mb']:.1f} | {b['score_matrix_mb']:.1f} | {b['search_plus_scatter_users_per_s']:.1f} |"
            )
    lines += ["", "## Reading (computed from the tables above)", "", *reading(rows), ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--items", type=int, nargs="+", default=[10_000, 1_000_000])
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--users", type=int, default=320, help="users per beam setting (first batch untimed)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--beams", type=int, nargs="+", default=[20, 50])
    p.add_argument("--cpu-preset", action="store_true", help="the CPU preset (TIGER-cpu.yaml) instead of the spec size")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "scale_1m"))
    p.add_argument("--md-only", action="store_true", help="re-render <out>.md from <out>.json (no run)")
    args = p.parse_args()
    if args.md_only:
        with open(args.out + ".json") as f:
            res = json.load(f)
        write_md(args.out + ".md", res, res["command"])
        return
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    sid = load_yaml_file(os.path.join(PROPERTIES_DIR, "sid.yaml"))
    tiger_yaml = load_yaml_file(os.path.join(PROPERTIES_DIR, "model", "TIGER.yaml"))
    res = {"dim": args.dim, "users": args.users, "catalogues": [], "args": vars(args)}
    for n in args.items:
        print(f"[{time.strftime('%H:%M:%S')}] N={n:,}: tokenizing", flush=True)
        codes, tok = tokenize(n, args.dim, sid, args.seed)
        print(f"  {tok}", flush=True)
        sizes = [sid["rq_codebook_size"]] * codes.shape[1]
        trie, trie_info = build_trie(codes, sizes)
        print(f"  trie {trie_info}", flush=True)
        model, size, user_token, eos = make_t5(sizes, tiger_yaml, args.cpu_preset)
        res["model"] = ("CPU preset (TIGER-cpu.yaml) " if args.cpu_preset else "spec size (TIGER.yaml) ") + json.dumps(size)
        offsets = level_offsets(sizes)
        ids, mask = histories(codes, offsets, args.users, user_token, eos, args.seed)
        beams = []
        for beam in args.beams:
            for constrained in (True, False):
                b = time_beam(model, trie, offsets, ids, mask, args.batch, beam, constrained, n)
                print(f"  {b}", flush=True)
                beams.append(b)
        res["catalogues"].append({"tokenizer": tok, "trie": trie_info, "beam": beams})
        del trie, codes
    res["env"] = machine()
    res["command"] = ("OMP_NUM_THREADS=1 python benchmarks/scale_1m.py " + " ".join(sys.argv[1:])).strip()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(res, f, indent=1)
    write_md(args.out + ".md", res, res["command"])
    print(f"wrote {args.out}.json/.md", flush=True)


if __name__ == "__main__":
    main()
