"""Every model RecBole 1.2.1 registers runs through our quick start, best-checkpoint reload included.

* Safe representation of ``other_parameter()`` (``compat.encode_other_parameter``): each kind of
  value RecBole models keep round-trips through ``torch.save`` / ``torch.load(weights_only=True)``
  with torch's default allow-list only.
* ``dok_matrix._update`` (RecBole's graph models) on today's scipy.
* One model per kind of checkpoint content, in the default suite; the whole zoo (``slow``, run by
  ``.ci/run``): one epoch each on the tiny zoo dataset, ``saved=True`` so that the best
  checkpoint is reloaded under safe loading, ``get_unsafe_globals_in_checkpoint`` empty.
  Models in ``zoo_cases.EXCUSED`` are checked to fail for their stated reason only.
"""

import collections
import importlib
import importlib.util
import os
import re
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import zoo_cases
from recbole.utils import ModelType

from recbole_genrec import compat

ZOO = zoo_cases.recbole_models()
FAMILY = dict(ZOO)


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    """Config reads --key=value from sys.argv (as RecBole does): keep pytest's flags out."""
    monkeypatch.setattr(sys, "argv", ["pytest"])


@pytest.fixture(scope="module")
def zoo_data(tmp_path_factory):
    return zoo_cases.write_zoo_dataset(tmp_path_factory.mktemp("zoo_data"))


@pytest.fixture
def torch_default_allow_list_only():
    """Safe loading with nothing but torch's own allow-list (ours removed for the test)."""
    ours = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        yield
    finally:
        torch.serialization.add_safe_globals(ours)


def _save_and_safe_load(value, path):
    torch.save({"other_parameter": compat.encode_other_parameters(value)}, path)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) == []
    return torch.load(path, weights_only=True)["other_parameter"]


# --- enumeration ---------------------------------------------------------------------------


def test_zoo_lists_every_model_recbole_registers():
    names = [name for name, _ in ZOO]
    assert len(names) == len(set(names)) >= 90
    assert set(FAMILY.values()) == set(zoo_cases.FAMILY_PACKAGES)
    # RecBole's packages export their models (classes with a ModelType): the same set as the zoo
    for family, package in zoo_cases.FAMILY_PACKAGES.items():
        if family == "exlib" and any(zoo_cases.excuse_holds(m) for m in ("LightGBM", "XGBoost")):
            continue  # its __init__ imports lightgbm and xgboost
        module = importlib.import_module(package)
        exported = {
            name for name, obj in vars(module).items()
            if isinstance(obj, type) and isinstance(getattr(obj, "type", None), ModelType)
            and obj.__module__.startswith(package + ".")
            and obj.__module__.rsplit(".", 1)[1] == name.lower()
        }
        assert exported == {n for n, f in ZOO if f == family}, family


def test_excused_models_are_zoo_models_with_a_checkable_reason():
    for model, (reason, dependencies) in zoo_cases.EXCUSED.items():
        assert model in FAMILY and reason and dependencies
        # each dependency is imported by the model's module or by a module its package's __init__
        # imports, i.e. importing the model needs it (read as text: importing would need it)
        package = zoo_cases.FAMILY_PACKAGES[FAMILY[model]]
        folder = os.path.dirname(importlib.util.find_spec(package).origin)
        with open(os.path.join(folder, "__init__.py"), encoding="utf-8") as f:
            loaded_by_init = re.findall(rf"^from {re.escape(package)}\.(\w+) import", f.read(), re.MULTILINE)
        sources = ""
        for module in {model.lower(), *loaded_by_init}:
            with open(os.path.join(folder, f"{module}.py"), encoding="utf-8") as f:
                sources += f.read()
        for dependency in dependencies:
            imports = re.compile(rf"^\s*(import|from)\s+{dependency}\b", re.MULTILINE)
            assert imports.search(sources), (model, dependency)


# --- safe representation of other_parameter() ------------------------------------------------


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "lil", "dok", "bsr", "dia"])
@pytest.mark.parametrize("kind", [sp.csr_matrix, sp.csr_array])
def test_sparse_matrices_reload_safely(fmt, kind, tmp_path, torch_default_allow_list_only):
    rng = np.random.default_rng(0)
    dense = (rng.random((7, 5)) * (rng.random((7, 5)) < 0.4)).astype(np.float32)
    matrix = kind(dense).asformat(fmt)
    assert matrix.nnz > 0
    torch.save({"w": matrix}, tmp_path / "raw.pth")  # as RecBole saves it: refused
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(tmp_path / "raw.pth"))
    loaded = _save_and_safe_load({"w": matrix}, tmp_path / "c.pth")
    restored = compat.decode_other_parameter(loaded["w"])
    assert restored.format == fmt and type(restored) is type(matrix)
    assert restored.dtype == matrix.dtype and restored.shape == matrix.shape
    assert np.array_equal(restored.toarray(), matrix.toarray())


def test_arrays_scalars_containers_reload_safely(tmp_path, torch_default_allow_list_only):
    ripple = collections.defaultdict(list)
    ripple[np.int64(3)].append((torch.tensor([1, 2]), torch.tensor([0, 1]), torch.tensor([5, 6])))
    value = {
        "B": np.arange(6, dtype=np.float64).reshape(2, 3),
        "M": np.asmatrix(np.eye(2, dtype=np.float32)),  # EASE's item_similarity
        "count": np.float32(2.5),
        "ripple_set": ripple,
        "nested": [np.ones(2, dtype=np.int32), ({"k": sp.eye(3, format="csr")},)],
        "tensor": torch.arange(3),
        "none": None,
    }
    loaded = _save_and_safe_load(value, tmp_path / "c.pth")
    restored = {k: compat.decode_other_parameter(v) for k, v in loaded.items()}
    assert restored["B"].dtype == np.float64 and np.array_equal(restored["B"], value["B"])
    assert type(restored["M"]) is np.matrix and np.array_equal(restored["M"], value["M"])
    assert isinstance(restored["count"], np.float32) and restored["count"] == np.float32(2.5)
    assert isinstance(restored["ripple_set"], collections.defaultdict)
    assert restored["ripple_set"].default_factory is list
    assert torch.equal(restored["ripple_set"][3][0][2], torch.tensor([5, 6]))
    assert restored["ripple_set"][99] == []  # still a defaultdict(list)
    assert restored["nested"][0].dtype == np.int32
    assert (restored["nested"][1][0]["k"] != sp.eye(3)).nnz == 0
    assert torch.equal(restored["tensor"], value["tensor"]) and restored["none"] is None


def test_module_values_are_loaded_into_the_live_module(tmp_path, torch_default_allow_list_only):
    class Model(torch.nn.Module):
        other_parameter_name = ["layer"]

        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(3, 2)

    trained, fresh = Model(), Model()
    loaded = _save_and_safe_load({"layer": trained.layer}, tmp_path / "c.pth")
    live_layer = fresh.layer
    compat.load_other_parameter(fresh, loaded)
    assert fresh.layer is live_layer  # the model's own module, not a replacement
    assert torch.equal(fresh.layer.weight, trained.layer.weight)


def test_unencodable_values_are_still_refused_by_safe_loading(tmp_path):
    torch.save({"other_parameter": compat.encode_other_parameters({"f": len})}, tmp_path / "c.pth")
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(tmp_path / "c.pth"))
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(tmp_path / "c.pth", weights_only=True)


def test_dok_update_of_recbole_graph_models():
    compat.restore_dok_update()  # what compat.apply installs; this test must not rely on an earlier test's run
    matrix = sp.dok_matrix((3, 4), dtype=np.float32)
    matrix._update({(0, 1): 1, (2, 3): 1})
    assert matrix.nnz == 2 and matrix[2, 3] == 1
    with pytest.raises(IndexError):  # scipy's public update checks bounds
        matrix._update({(3, 0): 1})


# --- models ------------------------------------------------------------------------------------


def _assert_runs_and_reloads_safely(model, zoo_data, workdir, monkeypatch):
    monkeypatch.chdir(workdir)  # RecBole writes ./log/
    result, _ = zoo_cases.run_case(model, FAMILY[model], zoo_data, workdir)
    name, value = zoo_cases.headline_metric(result)
    assert name is not None and np.isfinite(value), result["test_result"]
    checkpoints = zoo_cases.checkpoint_files(workdir)
    assert checkpoints, "no best checkpoint written"
    for path in checkpoints:
        assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
        torch.load(path, weights_only=True)


# One model per kind of value RecBole checkpoints beside the state_dict: csc + lil (ItemKNN),
# csr + ndarray (EASE), lil + csr (SLIMElastic), nn.Module (SASRecF), defaultdict (RippleNet),
# tensors of a graph model built with dok_matrix._update (LightGCN).
@pytest.mark.parametrize("model", ["ItemKNN", "EASE", "SLIMElastic", "SASRecF", "RippleNet", "LightGCN"])
def test_checkpoint_kinds_reload_with_weights_only(model, zoo_data, tmp_path, monkeypatch):
    _assert_runs_and_reloads_safely(model, zoo_data, tmp_path, monkeypatch)


def _assert_fails_for_its_reason(model, zoo_data, workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    missing = zoo_cases.missing_dependencies(model)
    with pytest.raises(ImportError) as failure:
        zoo_cases.run_case(model, FAMILY[model], zoo_data, workdir)
    # it fails for the stated reason (a dependency that does not import here) and no other
    assert any(name in str(failure.value) for name in missing), (missing, str(failure.value))


@pytest.mark.parametrize(
    "model,dependency",
    [(model, dep) for model in sorted(zoo_cases.EXCUSED) for dep in zoo_cases.EXCUSED[model][1]],
)
def test_an_excused_model_fails_only_for_its_missing_dependency(model, dependency, zoo_data, tmp_path, monkeypatch):
    """Hide each dependency in turn (installed or not): the excuse must then hold and be the failure."""
    monkeypatch.setitem(sys.modules, dependency, None)  # `import dependency` raises ImportError
    for name in [n for n in sys.modules if n.startswith("recbole.model.exlib_recommender")]:
        monkeypatch.delitem(sys.modules, name)
    assert zoo_cases.excuse_holds(model)
    _assert_fails_for_its_reason(model, zoo_data, tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("model", [name for name, _ in ZOO])
def test_model_zoo(model, zoo_data, tmp_path, monkeypatch):
    if zoo_cases.excuse_holds(model):
        _assert_fails_for_its_reason(model, zoo_data, tmp_path, monkeypatch)
    else:
        _assert_runs_and_reloads_safely(model, zoo_data, tmp_path, monkeypatch)


@pytest.mark.parametrize("model", ["ItemKNN", "EASE", "SASRecF"])
def test_resumed_checkpoint_rebuilds_other_parameters(model, zoo_data, tmp_path, monkeypatch):
    """``Trainer.resume_checkpoint`` (the other reload path) rebuilds them: same kinds, same metrics."""
    from recbole_genrec.config import Config
    from recbole_genrec.quick_start import prepare_training
    from recbole_genrec.utils import create_dataset

    monkeypatch.chdir(tmp_path)
    result, _ = zoo_cases.run_case(model, FAMILY[model], zoo_data, tmp_path)
    config = Config(model, zoo_cases.DATASET, config_dict=zoo_cases.zoo_config(model, FAMILY[model], zoo_data, tmp_path))
    _, _, test_data, fresh, trainer = prepare_training(config, create_dataset(config))

    def kinds():
        return {k: (type(v), getattr(v, "format", None)) for k, v in fresh.other_parameter().items()}

    expected = kinds()
    for key, value in fresh.other_parameter().items():
        if isinstance(value, torch.nn.Module):
            torch.nn.init.zeros_(next(value.parameters()))
        else:
            setattr(fresh, key, None)  # only the checkpoint can bring it back
    trainer.resume_checkpoint(zoo_cases.checkpoint_files(tmp_path)[0])
    assert kinds() == expected
    assert dict(trainer.evaluate(test_data, load_best_model=False)) == dict(result["test_result"])
