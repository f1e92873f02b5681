"""Unit tests of the tokenizer pieces (no RecBole dataset): collision level, quality,
cache, k-means / residual k-means, RQ-VAE mechanics, sid_file validation."""

import json
import logging

import numpy as np
import pytest
import torch

from recbole_genrec.tokenizer.cache import digest, load_entry, save_entry
from recbole_genrec.tokenizer.collision import add_collision_level, collision_rate
from recbole_genrec.tokenizer.quality import id_change_rate, plot_code_usage, tokenizer_quality
from recbole_genrec.tokenizer.rkmeans import kmeans, residual_kmeans
from recbole_genrec.tokenizer.rqvae import RQVAE, train_rqvae
from recbole_genrec.tokenizer.sid_file import load_sid_file

SMALL_RQ = dict(
    hidden_sizes=[32], code_dim=8, levels=3, codebook_size=8, vq_type="ema", beta=0.25, ema_decay=0.99,
    ema_eps=1e-5, detach_residual=True, dropout=0.0, dead_code_restart=False, kmeans_init=True,
    kmeans_iters=10, epochs=3, batch_size=32, optimizer="adagrad", lr=1e-3, weight_decay=0.0,
)  # fmt: skip


def test_collision_level_is_a_zero_based_counter_in_item_order():
    codes = np.array([[1, 2], [0, 0], [1, 2], [3, 3], [1, 2]])
    out = add_collision_level(codes, codebook_size=4)
    assert out[:, -1].tolist() == [0, 0, 1, 0, 2]
    assert collision_rate(codes) == pytest.approx(2 / 5)
    assert collision_rate(out) == 0.0
    assert len({tuple(r) for r in out}) == len(out)


def test_collision_group_larger_than_codebook_names_dataset_and_size():
    codes = np.zeros((5, 3), dtype=np.int64)
    with pytest.raises(ValueError, match=r"Dataset \[shop\]: 5 items share .* only 4 codes"):
        add_collision_level(codes, codebook_size=4, dataset_name="shop")


def test_quality_usage_perplexity_and_prefix_sharing():
    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 0]])
    q = tokenizer_quality(codes, [4, 4], add_collision_level(codes, 4))
    assert q["collision_rate_before"] == pytest.approx(0.25)
    assert q["collision_rate_after"] == 0.0
    assert q["max_group_size"] == 2
    assert q["levels"][0]["used"] == 2 and q["levels"][0]["usage"] == 0.5
    assert q["levels"][0]["perplexity"] == pytest.approx(2.0)
    assert q["prefix_sharing"][0]["shared_items"] == 1.0
    assert q["prefix_sharing"][1]["shared_items"] == 0.5
    assert q["prefix_sharing"][2]["shared_items"] == 0.0
    assert id_change_rate(codes, codes[[1, 0, 2, 3]]) == {"first": 0.0, "any": 0.5}


def test_code_usage_png(tmp_path):
    path = plot_code_usage(np.array([[0, 1], [1, 1], [2, 0]]), [4, 4], str(tmp_path / "usage.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_cache_roundtrip_and_truncated_file_is_reported(tmp_path, caplog):
    path = str(tmp_path / "c" / "entry.npz")
    arrays = {"codes": np.arange(12).reshape(3, 4)}
    save_entry(path, arrays, {"key": "k1", "note": "x"})
    got, meta = load_entry(path, "k1")
    assert np.array_equal(got["codes"], arrays["codes"]) and meta["note"] == "x"
    assert load_entry(path, "other-key") is None
    assert load_entry(str(tmp_path / "missing.npz")) is None
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING):
        assert load_entry(path, "k1") is None
    assert "corrupt or incomplete" in caplog.text


def test_cache_detects_changed_content(tmp_path, caplog):
    path = str(tmp_path / "entry.npz")
    save_entry(path, {"codes": np.zeros(4, dtype=np.int64)}, {"key": "k"})
    with np.load(path) as data:
        payload = {name: data[name] for name in data.files}
    payload["codes"] = np.ones(4, dtype=np.int64)
    np.savez(path, **payload)
    with caplog.at_level(logging.WARNING):
        assert load_entry(path, "k") is None
    assert "checksum" in caplog.text


def test_digest_depends_on_every_input():
    base = {"texts": ["a", "b"], "p": {"lr": 0.1}}
    assert digest(base) == digest({"p": {"lr": 0.1}, "texts": ["a", "b"]})
    assert digest(base) != digest({"texts": ["a", "c"], "p": {"lr": 0.1}})
    assert digest(base) != digest({"texts": ["a", "b"], "p": {"lr": 0.2}})


def _blobs(n=200, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(10, d)) * 5
    return (centers[rng.integers(0, 10, n)] + rng.normal(size=(n, d))).astype(np.float32)


def test_kmeans_is_seeded_and_handles_fewer_points_than_clusters():
    x = _blobs()
    assert np.array_equal(kmeans(x, 8, seed=3, niter=5), kmeans(x, 8, seed=3, niter=5))
    small = kmeans(x[:5], 8, seed=0)
    assert small.shape == (8, 16) and np.array_equal(small[:5], x[:5])


def test_residual_kmeans_codes_all_rows_deterministically():
    x = _blobs()
    codes, books = residual_kmeans(x, np.arange(150), levels=3, codebook_size=8, seed=1, niter=5)
    again, _ = residual_kmeans(x, np.arange(150), levels=3, codebook_size=8, seed=1, niter=5)
    assert codes.shape == (200, 3) and len(books) == 3
    assert np.array_equal(codes, again)
    assert codes.min() >= 0 and codes.max() < 8


def test_rqvae_ema_codebooks_get_no_gradient_and_eval_keeps_buffers():
    torch.manual_seed(0)
    model = RQVAE(16, hidden_sizes=[32], code_dim=8, levels=3, codebook_size=8)
    x = torch.as_tensor(_blobs())
    model.kmeans_init(x, seed=0, niter=5)
    assert all(not p.requires_grad for q in model.quantizers for p in q.buffers())
    assert not any("embed" in name for name, _ in model.named_parameters())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.encode(x)
    model.eval()
    model(x)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.train()
    x_hat, q_loss, codes = model(x)
    (torch.nn.functional.mse_loss(x_hat, x) + q_loss).backward()
    assert codes.shape == (200, 3)
    assert not torch.equal(before["quantizers.0.embed"], model.quantizers[0].embed)  # EMA moved it


def test_rqvae_kmeans_init_uses_every_level1_code():
    torch.manual_seed(0)
    model = RQVAE(16, hidden_sizes=[32], code_dim=8, levels=3, codebook_size=8)
    x = torch.as_tensor(_blobs())
    model.kmeans_init(x, seed=0, niter=10)
    assert len(np.unique(model.encode(x)[:, 0])) == 8


def test_rqvae_vq_variant_trains_codebooks_by_gradient():
    model = RQVAE(16, hidden_sizes=[32], code_dim=8, levels=2, codebook_size=8, vq_type="vq")
    x = torch.as_tensor(_blobs())
    x_hat, q_loss, _ = model(x)
    (torch.nn.functional.mse_loss(x_hat, x) + q_loss).backward()
    assert model.quantizers[0].embed.grad is not None


def test_train_rqvae_same_seed_same_codes_and_last_n_tokenizers():
    x = _blobs()
    train = np.arange(160)
    codes, history = train_rqvae(x, train, SMALL_RQ, seed=7, keep_last=2, show_progress=False)
    again, _ = train_rqvae(x, train, SMALL_RQ, seed=7, keep_last=2, show_progress=False)
    other, _ = train_rqvae(x, train, SMALL_RQ, seed=8, keep_last=2, show_progress=False)
    assert len(codes) == 2 and codes[0].shape == (200, 3)
    assert all(np.array_equal(a, b) for a, b in zip(codes, again))
    assert not np.array_equal(codes[-1], other[-1])
    assert len(history["loss"]) == SMALL_RQ["epochs"]
    assert history["init_level_usage"][0] == 8


def test_train_rqvae_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_rqvae(_blobs(), np.arange(100), SMALL_RQ, seed=1, show_progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_dead_code_restart_replaces_unused_codes():
    model = RQVAE(16, hidden_sizes=[32], code_dim=8, levels=1, codebook_size=8, dead_code_restart=True)
    x = torch.as_tensor(_blobs())
    model.quantizers[0].set_codebook(torch.zeros(8, 8) + 100.0)  # far away: one code wins, 7 dead
    model.quantizers[0].embed[0] = 0.0
    model(x)
    embed = model.quantizers[0].embed
    assert (embed.abs() < 50).all()  # the 7 dead codes now sit on batch residuals


def _write_sid(tmp_path, table, name="ids.json"):
    path = tmp_path / name
    path.write_text(json.dumps(table))
    return str(path)


def test_sid_file_loads_codes_in_the_given_item_order(tmp_path):
    path = _write_sid(tmp_path, {"x": ["<a_1>", "<b_2>"], "y": ["<a_3>", "<b_0>"], "extra": ["<a_0>", "<b_0>"]})
    assert load_sid_file(path, ["y", "x"]).tolist() == [[3, 0], [1, 2]]


@pytest.mark.parametrize(
    "table, message",
    [
        ({"x": ["<a_1>", "<b_2>"]}, r"no semantic ID for 1 of the 2 items .* item 'y'"),
        ({"x": ["<a_1>", "<b_2>"], "y": ["<a_1>"]}, r"item 'y' has 1 code tokens, but item 'x' has 2"),
        ({"x": ["<a_1>", "<b_2>"], "y": ["<a_1>", "<c_2>"]}, r"item 'y' has token '<c_2>' at level 1"),
        ({"x": ["<a_1>", "<b_2>"], "y": ["a_1", "<b_2>"]}, r"item 'y' has token 'a_1' at level 0"),
        ([1, 2], r"must be a non-empty JSON object"),
    ],
)
def test_sid_file_validation_names_file_and_item(tmp_path, table, message):
    path = _write_sid(tmp_path, table)
    with pytest.raises(ValueError, match=message) as err:
        load_sid_file(path, ["x", "y"], "tiny")
    assert path in str(err.value)


def test_more_tokenizers_than_epochs_is_a_clear_error():
    with pytest.raises(ValueError, match=r"sid_num_tokenizers=5 needs rq_epochs >= 5"):
        train_rqvae(_blobs(), np.arange(100), SMALL_RQ, keep_last=5, show_progress=False)
