"""Defects 6 and 7 (issue 15): bad input is a one-line UserError, never a silent wrong result."""

import json
import logging
import os

import pytest
from conftest import tiny_config, write_tiny_dataset
from recbole.data.dataset import SequentialDataset
from reliability_util import cli, one_line_error, write_config, write_sid_file

import recbole_genrec.compare as compare_module
from recbole_genrec.config import Config
from recbole_genrec.errors import ConfigError, DataFileError, UnknownModelError, UserError
from recbole_genrec.quick_start import run_recbole_genrec


# --- defect 6: silent wrong results ---------------------------------------------------------

@pytest.mark.parametrize("epochs", [0, -1])
def test_non_positive_epochs_is_an_error(epochs, tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="epochs"):
        Config(model="SASRec", dataset="tiny", config_dict=tiny_config(tiny_data, tmp_path, epochs=epochs))


def _rewrite_item_file(data_path, edit):
    path = os.path.join(data_path, "tiny", "tiny.item")
    lines = open(path).read().splitlines()
    open(path, "w").write("\n".join(edit(lines)) + "\n")
    return path


def test_duplicate_item_ids_are_an_error_naming_the_count(tmp_path):
    data = write_tiny_dataset(tmp_path / "data")
    # line 4 is item i2: a second, different row for it and one for i5
    _rewrite_item_file(data, lambda lines: lines + ["i2\tother title\tother brand", "i5\tx\ty"])
    with pytest.raises(DataFileError, match=r"2 duplicate item ids.*'i2' on lines 4, 32"):
        run_recbole_genrec("SASRec", "tiny", config_dict=tiny_config(data, tmp_path))


def test_duplicate_item_ids_are_an_error_for_semantic_ids_too(tmp_path):
    from recbole_genrec.data.dataset import item_catalog

    data = write_tiny_dataset(tmp_path / "data")
    _rewrite_item_file(data, lambda lines: lines + ["i2\tother title\tother brand"])
    config = Config(model="TIGER", dataset="tiny", config_dict=tiny_config(data, tmp_path))
    with pytest.raises(DataFileError, match="1 duplicate item id "):
        item_catalog(config, SequentialDataset(config))


def test_nan_titles_are_missing_text_with_a_warning(tmp_path, caplog):
    from recbole_genrec.data.dataset import item_catalog

    data = write_tiny_dataset(tmp_path / "data")

    def nan_titles(lines):
        out = [lines[0]]
        for line in lines[1:]:
            item, title, brand = line.split("\t")
            out.append("\t".join([item, "NaN" if item in ("i1", "i2") else title, "nan" if item == "i2" else brand]))
        return out

    _rewrite_item_file(data, nan_titles)
    config = Config(model="TIGER", dataset="tiny", config_dict=tiny_config(data, tmp_path))
    dataset = SequentialDataset(config)
    with caplog.at_level(logging.WARNING):
        catalog = item_catalog(config, dataset)
    texts = catalog.texts
    by_item = dict(zip(dataset.field2id_token["item_id"][1:], texts))
    assert "nan" not in by_item["i1"].lower() and by_item["i1"].startswith("brand: ")
    assert by_item["i2"] == "item i2"  # nothing left: the documented fallback text
    assert any("3 values" in r.getMessage() and "missing" in r.getMessage() for r in caplog.records)


def test_sid_file_code_beyond_the_limit_is_an_error_before_allocation(tiny_data, tmp_path):
    from recbole_genrec.data.dataset import SemanticIDDataset

    sid = write_sid_file(tmp_path / "codes.json", big_code=100000000)
    config = Config(model="TIGER", dataset="tiny", config_dict=tiny_config(tiny_data, tmp_path, sid_file=sid))
    with pytest.raises(ConfigError, match=r"100000000.*< 256"):
        SemanticIDDataset(config)


# --- defect 7: tracebacks and misleading messages --------------------------------------------

def test_topk_zero_is_a_user_error(tiny_data, tmp_path):
    with pytest.raises(UserError, match="topk"):
        Config(model="SASRec", dataset="tiny", config_dict=tiny_config(tiny_data, tmp_path, topk=[0]))


def test_beam_below_topk_is_one_line_on_the_cli(tiny_data, tmp_path):
    config = write_config(tmp_path, tiny_data, sid_file=write_sid_file(tmp_path / "codes.json"))
    line = one_line_error(cli(tmp_path, "--model=TIGER", "--dataset=tiny", f"--config_files={config}", "--beam_size=5"))
    assert "beam_size=5 is smaller than max(topk)=10" in line


def test_header_only_inter_file_names_the_file(tmp_path):
    data = write_tiny_dataset(tmp_path / "data")
    inter = os.path.join(data, "tiny", "tiny.inter")
    open(inter, "w").write(open(inter).readline())
    with pytest.raises(UserError, match=r"tiny\.inter.*no interactions"):
        run_recbole_genrec("SASRec", "tiny", config_dict=tiny_config(data, tmp_path))


def test_genpas_with_a_general_model_says_it_needs_a_sequential_model(tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="sequential model"):
        run_recbole_genrec("BPR", "tiny", config_dict=tiny_config(tiny_data, tmp_path, train_sampler="genpas"))


def test_compare_append_onto_a_truncated_results_json(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"dataset": "tiny", "results": {"SAS')
    with pytest.raises(ConfigError, match="results.json"):
        compare_module.compare(["--models", "SASRec", "--dataset", "tiny", "--out", str(out), "--append"])


def test_compare_checks_every_model_name_before_training(tmp_path, monkeypatch):
    trained = []
    monkeypatch.setattr(compare_module, "run_model", lambda model, *a, **k: trained.append(model) or {"error": "x"})
    with pytest.raises(UnknownModelError, match="FooRec"):
        compare_module.compare(["--models", "SASRec,FooRec", "--dataset", "tiny", "--out", str(tmp_path / "out")])
    assert trained == []


def test_compare_results_json_is_written_atomically(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    payload = {"dataset": "tiny", "commands": ["c"], "model_config": {}, "results": {}}
    compare_module.write_outputs(str(out), payload)
    assert json.loads((out / "results.json").read_text())["dataset"] == "tiny"
    monkeypatch.setattr(compare_module.json, "dumps", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        compare_module.write_outputs(str(out), dict(payload, dataset="other"))
    assert json.loads((out / "results.json").read_text())["dataset"] == "tiny"  # old file intact


def test_identical_texts_beyond_the_collision_level_name_their_cause(tmp_path):
    from recbole_genrec.data.dataset import SemanticIDDataset

    data = write_tiny_dataset(tmp_path / "data")
    _rewrite_item_file(data, lambda lines: [lines[0]] + [
        "\t".join([line.split("\t")[0], "same title", "same brand"]) if k < 6 else line
        for k, line in enumerate(lines[1:])
    ])
    config = Config(model="TIGER", dataset="tiny", config_dict=tiny_config(
        data, tmp_path, sid_method="rkmeans", rq_levels=1, rq_codebook_size=4, sid_pca_dim=-1))
    with pytest.raises(ConfigError, match=r"6 items have the identical text 'title: same title; brand: same brand'"):
        SemanticIDDataset(config)
