"""Defect 3 (issue 15): a local --sid_encoder folder enters the cache key with all its files."""

import os

from recbole_genrec.tokenizer.text import resolve_encoder


def _fake_encoder(folder):
    os.makedirs(os.path.join(folder, "1_Pooling"), exist_ok=True)
    files = {
        "config.json": b'{"hidden_size": 8}',
        "modules.json": b"[]",
        "model.safetensors": bytes(range(256)) * 64,
        "1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
    }
    for name, data in files.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
    return folder


def test_changed_weights_change_the_encoder_identity(tmp_path):
    folder = _fake_encoder(str(tmp_path / "enc"))
    before = resolve_encoder(folder)[1]
    assert resolve_encoder(folder)[1] == before  # stable
    weights = os.path.join(folder, "model.safetensors")
    data = bytearray(open(weights, "rb").read())
    data[1000] ^= 0xFF  # same size, one byte different
    open(weights, "wb").write(bytes(data))
    after = resolve_encoder(folder)[1]
    assert after != before


def test_changed_file_in_a_subfolder_changes_the_encoder_identity(tmp_path):
    folder = _fake_encoder(str(tmp_path / "enc"))
    before = resolve_encoder(folder)[1]
    with open(os.path.join(folder, "1_Pooling", "config.json"), "wb") as f:
        f.write(b'{"pooling_mode_cls_token": true}')
    assert resolve_encoder(folder)[1] != before
