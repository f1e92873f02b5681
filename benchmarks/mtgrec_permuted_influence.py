"""Does MTGRec's influence rank a tokenizer with permuted IDs below real checkpoints? (spec mtgrec.md, check 4)

The spec asks that, "on a small trained model, a tokenizer with randomly permuted IDs gets lower
influence than real checkpoints". This measures it on the test suite's tiny setting (40 users, 30
items, a 1-layer T5; 4 tokenizers: three neighbouring checkpoints of one code table, one
permutation of it), one pre-training stage of 15 epochs, then one influence update (§4.3, the code's
version, dropout off) with the three real checkpoints as the validation tokenizers. Each case runs in a
fresh process; the seed and the number of torch threads vary (the threads change only the
order of floating-point sums). Code tables (``--codes``): ``random`` (the test suite's collision-free
random codes, seeded) or ``ordinal`` (item ``i<k>`` gets ``(k // 8, k // 2 % 4, k % 2)``: on the tiny
data's cyclic walk ``i<k> -> i<k+1>`` the next item mostly shares the first codes, so these codes carry
the data's structure and only the permutation destroys it; the seed then varies the swaps, the
permutation and the model's initialisation) or ``office``: the check at the size MTGRec is run here,
office with the CPU preset (``MTGRec-cpu.yaml``), 4 tokenizers = the last 4 epochs of one RQ-VAE run
with the second replaced by a permutation of the primary one, 9 epochs of uniform pre-training, then
one influence update (the config's own settings: dropout on, a quarter of the batches); the seed
varies the permutation, the RQ-VAE run and the model.

    python benchmarks/mtgrec_permuted_influence.py [--codes random|ordinal] [--seeds 0,1,2,3,4,5] [--threads 1,2]

Writes ``benchmarks/results/mtgrec_permuted_influence.{md,json}`` (one section per ``--codes``). It was a strict-xfail test until
this showed that its outcome flips with the thread count: on this tiny model the property is not
stable either way, so it is a measurement, not a test.
"""

import argparse
import json
import multiprocessing
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "benchmarks", "results", "mtgrec_permuted_influence")
PERMUTED = 1  # index of the permuted tokenizer among the 4
KEYS = dict(sid_num_tokenizers=4, epochs=16, mt_stage_epochs=[15], eval_step=100, dropout_prob=0.0,
            mt_influence_dropout=False, train_batch_size=32, learning_rate=0.02)  # fmt: skip


def ordinal_codes(item_tokens):
    """``[n_items, 3]`` codes of the tiny data's items ``i<k>`` (row 0 = padding): ``(k // 8, k // 2 % 4, k % 2)``."""
    import torch

    k = torch.tensor([int(token[1:]) for token in item_tokens[1:]])
    return torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.stack([k // 8, k // 2 % 4, k % 2], 1)])


OFFICE_FILES = ["properties/dataset/office.yaml", "recbole_genrec/properties/model/MTGRec-cpu.yaml"]
OFFICE_KEYS = dict(mt_stage="pretrain", sid_num_tokenizers=4, epochs=10, mt_stage_ratios=None, mt_stage_epochs=[9], eval_step=100,
                   show_progress=False, length_bucket_batches=50, enable_amp=True)  # fmt: skip


def office_case(seed, threads):
    """The influence (ckpt A, permuted, ckpt B, latest) after 9 uniform pre-training epochs on office."""
    os.chdir(ROOT)
    sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
    import torch

    torch.set_num_threads(threads)
    from recbole.data import data_preparation
    from recbole.utils import init_seed
    from test_mtgrec import permuted

    from recbole_genrec.config import Config
    from recbole_genrec.model.mtgrec import MTGRec
    from recbole_genrec.trainer import GenRecTrainer
    from recbole_genrec.trainer.curriculum import MTGRecCurriculum
    from recbole_genrec.utils import create_dataset

    config = Config(model="MTGRec", dataset="office", config_file_list=OFFICE_FILES, config_dict=dict(OFFICE_KEYS, seed=seed))
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    dataset.item_sids[PERMUTED] = permuted(dataset.item_sids[-1], 6 + seed)
    train, valid, _ = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    trainer = GenRecTrainer(config, MTGRec(config, train._dataset))
    trainer.hook(MTGRecCurriculum).valid_tokenizers = [i for i in range(4) if i != PERMUTED]
    trainer.fit(train, valid, saved=False, show_progress=False)
    (update,) = trainer.mtgrec_history
    return [float(x) for x in update["influence"]]


def one_case(code_seed, threads, codes="random"):
    sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
    import torch

    torch.set_num_threads(threads)
    from conftest import tiny_config, write_tiny_dataset
    from recbole.data.dataset import SequentialDataset
    from test_mtgrec import build, neighbour, permuted, random_codes

    from recbole_genrec.config import Config
    from recbole_genrec.trainer import GenRecTrainer
    from recbole_genrec.trainer.curriculum import MTGRecCurriculum

    with tempfile.TemporaryDirectory() as tmp:
        data = write_tiny_dataset(os.path.join(tmp, "data"))
        probe = SequentialDataset(Config(model="MTGRec", dataset="tiny", config_dict=tiny_config(data, tmp)))
        if codes == "random":  # the seed picks the code table; the swaps, permutation and model stay fixed
            base, s, keys = random_codes(probe.item_num, code_seed), 0, KEYS
        else:
            base, s, keys = ordinal_codes(probe.field2id_token["item_id"]), code_seed, dict(KEYS, seed=code_seed)
        tables = torch.stack([neighbour(base, 1, 1 + s), permuted(base, 6 + s), neighbour(base, 1, 2 + s), base])
        config, model, (train, valid, _) = build(data, tmp, tables, **keys)
        trainer = GenRecTrainer(config, model)
        trainer.hook(MTGRecCurriculum).valid_tokenizers = [0, 2, 3]
        trainer.fit(train, valid, saved=False, show_progress=False)
        (update,) = trainer.mtgrec_history
        return [float(x) for x in update["influence"]]


def run_case(code_seed, threads, codes):
    """One case in a fresh process (no state from earlier cases); its errors are raised here."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        if codes == "office":
            return pool.apply(office_case, (code_seed, threads))
        return pool.apply(one_case, (code_seed, threads, codes))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codes", choices=("random", "ordinal", "office"), default="random")
    parser.add_argument("--seeds", default="0,1,2,3,4,5")
    parser.add_argument("--threads", default="1,2")
    args = parser.parse_args(argv)
    rows = []
    for seed in map(int, args.seeds.split(",")):
        for threads in map(int, args.threads.split(",")):
            influence = run_case(seed, threads, args.codes)
            real = [v for i, v in enumerate(influence) if i != PERMUTED]
            rows.append({"code_seed": seed, "threads": threads, "influence": influence,
                         "permuted_lowest": influence[PERMUTED] < min(real),
                         "permuted_rank": sorted(influence).index(influence[PERMUTED]) + 1})
            print(rows[-1], flush=True)
    sections = {}
    if os.path.isfile(OUT + ".json"):
        with open(OUT + ".json") as f:
            sections = json.load(f)
    sections[args.codes] = {"command_args": vars(args), "rows": rows}
    text = report_markdown(sections)
    with open(OUT + ".md", "w") as f:
        f.write(text)
    with open(OUT + ".json", "w") as f:
        json.dump(sections, f, indent=2)
    print(text)


def report_markdown(sections):
    """One table per code-table kind (``{codes: {"command_args", "rows"}}``) and its count of cases."""
    lines = ["# MTGRec influence of a permuted-ID tokenizer vs real checkpoints", "",
             "Setting in the script's docstring."]
    for codes, section in sections.items():
        args, rows = section["command_args"], section["rows"]
        lines += ["", f"## {codes} code tables", "",
                  f"Command: `python benchmarks/mtgrec_permuted_influence.py --codes {codes} --seeds {args['seeds']} "
                  f"--threads {args['threads']}`.", "",
                  "| seed | torch threads | influence (ckpt A, **permuted**, ckpt B, latest) | permuted rank (1 = lowest of 4) |",
                  "|---|---|---|---|"]
        ranks = {}
        for r in rows:
            inf = [f"{v:.3f}" for v in r["influence"]]
            inf[PERMUTED] = f"**{inf[PERMUTED]}**"
            lines.append(f"| {r['code_seed']} | {r['threads']} | {', '.join(inf)} | {r['permuted_rank']} |")
            ranks.setdefault(r["code_seed"], set()).add(r["permuted_rank"])
        lowest = sum(r["permuted_lowest"] for r in rows)
        unstable = sum(len(v) > 1 for v in ranks.values())
        lines += ["", f"The permuted tokenizer has the lowest influence in **{lowest} of {len(rows)}** cases"
                  + (f"; for **{unstable} of {len(ranks)}** seeds its rank changes with the number of threads alone "
                     "(the order of floating-point sums)." if len(set(args["threads"].split(","))) > 1 else ".")]
    return "\n".join(lines + [""])


if __name__ == "__main__":
    main()
