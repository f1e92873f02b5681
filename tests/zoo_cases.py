"""RecBole 1.2.1's model zoo as test cases: the registered models, tiny data, one config per model.

Shared by ``tests/test_model_zoo.py`` and ``benchmarks/model_zoo.py``.

* ``recbole_models()`` enumerates the models RecBole registers, from RecBole itself: RecBole's
  ``get_model(name)`` imports ``recbole.model.<family package>.<name.lower()>`` and takes the
  class ``name`` from it, so every module of those packages with a class of its own name (any
  case) is a model. Modules are parsed, not imported, so that models whose optional
  dependency is missing are still listed.
* ``write_zoo_dataset`` writes one tiny dataset with every atomic file a family needs:
  ``.inter`` (rating, timestamp), ``.user`` and ``.item`` features, ``.kg`` + ``.link``
  (knowledge-aware), ``.ent`` + ``.rel`` pretrained embeddings (GRU4RecKG, KSR).
* ``zoo_config`` is the config of one model: the family's fields and RecBole's evaluation
  protocol for that family, 1 epoch, small batches.
* ``EXCUSED`` is the one list of models that may not run here, each with the reason and a
  check of that reason (``excuse_holds``); the test fails where a reason no longer holds.
"""

import ast
import importlib
import importlib.util
import os

import numpy as np

FAMILY_PACKAGES = {
    "general": "recbole.model.general_recommender",
    "context-aware": "recbole.model.context_aware_recommender",
    "sequential": "recbole.model.sequential_recommender",
    "knowledge-aware": "recbole.model.knowledge_aware_recommender",
    "exlib": "recbole.model.exlib_recommender",
}

DATASET = "zoo"
N_USERS, N_ITEMS, N_ATTRIBUTES, N_RELATIONS = 40, 130, 30, 3
EMBEDDING_DIM = 64  # the .ent/.rel vectors: GRU4RecKG's embedding_size, KSR's kg_embedding_size


def module_importable(name):
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


_SCATTER = (
    "needs torch_scatter, which PyPI has as source only: build it against the installed torch "
    "(pip install --no-build-isolation torch-scatter==2.1.2)"
)

# The one place for models that are allowed not to run: model -> (reason, modules whose import
# must all succeed for the model to run; the reason holds while one of them does not import).
# LightGBM and XGBoost need both packages: RecBole's ``exlib_recommender/__init__.py`` imports
# lightgbm and xgboost before either model's module. ``pip install -e ".[zoo]"`` installs what
# has a build for this stack (lightgbm, xgboost); dgl has none for torch 2.13 (PyPI's newest,
# 2.1.0, ships its native libraries for torch 2.0-2.2 and needs torchdata's removed datapipes);
# torch_scatter is a C++ extension that pip can only build from source against the torch
# already installed.
_EXLIB = ("lightgbm", "xgboost")
EXCUSED = {
    "LightGBM": ("optional dependencies lightgbm and xgboost not installed (pip install -e '.[zoo]')", _EXLIB),
    "XGBoost": ("optional dependencies lightgbm and xgboost not installed (pip install -e '.[zoo]')", _EXLIB),
    "KGAT": ("needs dgl, which has no build for torch 2.13 on PyPI", ("dgl",)),
    "KGIN": (_SCATTER, ("torch_scatter",)),
    "MCCLK": (_SCATTER, ("torch_scatter",)),
}


def missing_dependencies(model):
    """The dependencies of an excused ``model`` that do not import here (empty: it should run)."""
    return [name for name in EXCUSED.get(model, ("", ()))[1] if not module_importable(name)]


def excuse_holds(model):
    """True when ``model`` is excused and its reason is true here (a dependency does not import)."""
    return bool(missing_dependencies(model))


def recbole_models():
    """``[(model, family)]`` for every model RecBole 1.2.1 registers, sorted by family then name."""
    models = []
    for family, package in FAMILY_PACKAGES.items():
        folder = os.path.dirname(importlib.util.find_spec(package).origin)
        for filename in sorted(os.listdir(folder)):
            module, ext = os.path.splitext(filename)
            if ext != ".py" or module.startswith("_"):
                continue
            with open(os.path.join(folder, filename), encoding="utf-8") as f:
                tree = ast.parse(f.read())
            models += [
                (node.name, family)
                for node in tree.body
                if isinstance(node, ast.ClassDef) and node.name.lower() == module
            ]
    return models


def write_zoo_dataset(root, seed=0):
    """Write ``root/zoo/zoo.{inter,user,item,kg,link,ent,rel}``; returns ``root`` (the data_path).

    40 users with 10-16 interactions each on a noisy walk over 130 items (so that sequential
    models see order), ratings 1-5, token features as in ml-100k (users: age, gender,
    occupation; items: release year, class list, brand), a knowledge graph linking every item
    to 2-3 of 30 attribute entities over 3 relations, and 64-d embeddings for entities and
    relations. More than 100 items so that RecBole's uni100 protocol (DIN, DIEN) finds negatives.
    """
    rng = np.random.default_rng(seed)
    folder = os.path.join(str(root), DATASET)
    os.makedirs(folder, exist_ok=True)

    def write(ext, header, rows):
        with open(os.path.join(folder, f"{DATASET}.{ext}"), "w", encoding="utf-8") as f:
            f.write("\t".join(header) + "\n")
            f.writelines("\t".join(str(v) for v in row) + "\n" for row in rows)

    inter, t = [], 0
    for u in range(N_USERS):
        item = int(rng.integers(N_ITEMS))
        for _ in range(int(rng.integers(10, 17))):
            t += 1
            inter.append((f"u{u}", f"i{item}", int(rng.integers(1, 6)), t))
            item = (item + (1 if rng.random() < 0.7 else int(rng.integers(2, 9)))) % N_ITEMS
    write("inter", ["user_id:token", "item_id:token", "rating:float", "timestamp:float"], inter)
    write(
        "user",
        ["user_id:token", "age:token", "gender:token", "occupation:token"],
        [(f"u{u}", int(rng.integers(18, 70)), "MF"[u % 2], f"job{u % 5}") for u in range(N_USERS)],
    )
    write(
        "item",
        ["item_id:token", "release_year:token", "class:token_seq", "brand:token"],
        [(f"i{i}", 1990 + i % 8, f"c{i % 6} c{(i // 6) % 6}", f"b{i % 9}") for i in range(N_ITEMS)],
    )
    kg = []
    for i in range(N_ITEMS):
        for a in rng.choice(N_ATTRIBUTES, size=int(rng.integers(2, 4)), replace=False):
            kg.append((f"e{i}", f"r{int(a) % N_RELATIONS}", f"a{int(a)}"))
    write("kg", ["head_id:token", "relation_id:token", "tail_id:token"], kg)
    write("link", ["item_id:token", "entity_id:token"], [(f"i{i}", f"e{i}") for i in range(N_ITEMS)])
    entities = [f"e{i}" for i in range(N_ITEMS)] + [f"a{a}" for a in range(N_ATTRIBUTES)]

    def vectors(names):
        return [(n, " ".join(f"{v:.4f}" for v in rng.normal(0, 0.1, EMBEDDING_DIM))) for n in names]

    write("ent", ["ent_id:token", "ent_emb:float_seq"], vectors(entities))
    write("rel", ["rel_id:token", "rel_emb:float_seq"], vectors([f"r{r}" for r in range(N_RELATIONS)]))
    return str(root)


INTER = ["user_id", "item_id", "rating", "timestamp"]
RANKING = {"metrics": ["Recall", "NDCG"], "topk": [10], "valid_metric": "NDCG@10"}
KG_FILES = {"kg": ["head_id", "relation_id", "tail_id"], "link": ["item_id", "entity_id"]}


def zoo_config(model, family, data_path, workdir):
    """The config dict of ``model`` on the zoo dataset (RecBole's protocol for its family)."""
    config = {
        "data_path": data_path,
        "checkpoint_dir": os.path.join(str(workdir), "saved"),
        "log_wandb": False,
        "show_progress": False,
        "state": "WARNING",
        "epochs": 1,
        "train_batch_size": 128,
        "eval_batch_size": 256,
        "seed": 2024,
        "reproducibility": True,
        "MAX_ITEM_LIST_LENGTH": 10,
        "load_col": {"inter": INTER},
    }
    if family == "general":
        config.update(RANKING)
    elif family in ("context-aware", "exlib") or model in ("DIN", "DIEN"):
        # RecBole's own protocol: labeled AUC/LogLoss (context), uni100 AUC/LogLoss (DIN, DIEN)
        config["load_col"] = {
            "inter": INTER,
            "user": ["user_id", "age", "gender", "occupation"],
            "item": ["item_id", "release_year", "class", "brand"],
        }
        if family != "sequential":
            config["threshold"] = {"rating": 4}
    elif family == "sequential":
        config.update(RANKING)
        config["load_col"] = {"inter": INTER, "item": ["item_id", "release_year", "class", "brand"]}
        if model in ("GRU4RecKG", "KSR"):  # pretrained entity/relation vectors
            config["load_col"] = {
                "inter": INTER, **KG_FILES, "ent": ["ent_id", "ent_emb"], "rel": ["rel_id", "rel_emb"]
            }
            config.update(
                # RecBole gives these two its embedding-model preset, without sequential.yaml's split
                eval_args={"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"},
                additional_feat_suffix=["ent", "rel"],
                alias_of_entity_id=["ent_id"],
                alias_of_relation_id=["rel_id"],
                preload_weight={"ent_id": "ent_emb", "rel_id": "rel_emb"},
            )
    elif family == "knowledge-aware":
        config.update(RANKING)
        config["load_col"] = {"inter": INTER, **KG_FILES}
    if model == "NCL":  # its default of 1000 prototypes needs more users than the tiny data has
        config["num_clusters"] = 10
    if model in ("S3Rec", "RaCT"):  # their default train_stage pre-trains: one epoch too
        config.update(pretrain_epochs=1, save_step=1)
    return config


def headline_metric(result):
    """``(name, value)`` of the test metric the family's protocol reports: NDCG@10, else AUC."""
    test = result["test_result"]
    for name in ("ndcg@10", "auc"):
        if name in test:
            return name, float(test[name])
    return None, None


def checkpoint_files(workdir):
    """The torch checkpoints a run wrote under ``workdir`` (its ``checkpoint_dir``).

    Not RecBole's LightGBM/XGBoost booster files (``*-temp.pth``, ``*-temp-best.pth``): those
    are the boosters' own format, written and read by lightgbm/xgboost, not by torch.
    """
    folder = os.path.join(str(workdir), "saved")
    if not os.path.isdir(folder):
        return []
    return sorted(
        os.path.join(folder, f)
        for f in os.listdir(folder)
        if f.endswith(".pth") and not f.endswith(("-temp.pth", "-temp-best.pth"))
    )


def run_case(model, family, data_path, workdir):
    """Train ``model`` one epoch through our quick start, reload its best checkpoint, test it.

    Returns ``(result, seconds)``; raises whatever the run raises.
    """
    import time

    from recbole_genrec.quick_start import run_recbole_genrec

    config = zoo_config(model, family, data_path, workdir)
    start = time.perf_counter()
    result = run_recbole_genrec(model, DATASET, config_dict=config, saved=True)
    return result, time.perf_counter() - start
