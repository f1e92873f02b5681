"""Our compact T5 (model/t5.py) against transformers' T5ForConditionalGeneration."""

import pytest
import torch
from transformers import T5Config, T5ForConditionalGeneration

from recbole_genrec.model.t5 import T5, T5Dims

DIMS = dict(
    vocab_size=40, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_decoder_layers=3, num_heads=2,
    relative_attention_num_buckets=8, relative_attention_max_distance=20, dropout_rate=0.1,
)


def pair(seed=5, **overrides):
    dims = {**DIMS, **overrides}
    torch.manual_seed(seed)
    hf = T5ForConditionalGeneration(T5Config(**dims, pad_token_id=0, decoder_start_token_id=0)).eval()
    after_hf = torch.rand(3)
    torch.manual_seed(seed)
    ours = T5(T5Dims(**dims)).eval()
    return hf, ours, after_hf, torch.rand(3)


def batch(S=30, T=5, B=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, DIMS["vocab_size"], (B, S), generator=g)
    mask = torch.ones(B, S, dtype=torch.bool)
    mask[0, 7:] = False  # padded history (S > max_distance: the log-spaced buckets are used)
    ids[~mask] = 0
    dec = torch.randint(1, DIMS["vocab_size"], (B, T), generator=g)
    dec[:, 0] = 0
    return ids, mask, dec


@pytest.mark.parametrize("ff", ["relu", "gated-gelu"])
def test_same_seed_same_weights_and_names_as_transformers(ff):
    hf, ours, after_hf, after_ours = pair(feed_forward_proj=ff)
    a, b = hf.state_dict(), ours.state_dict()
    assert list(a) == list(b)  # transformers' checkpoints load as they are
    assert all(torch.equal(a[k], b[k]) for k in a)  # same draws in the same order
    assert torch.equal(after_hf, after_ours)  # and the same RNG state afterwards
    assert sum(p.numel() for p in hf.parameters()) == sum(p.numel() for p in ours.parameters())
    assert ours.lm_head.weight is ours.shared.weight is ours.decoder.embed_tokens.weight


@pytest.mark.parametrize("ff", ["relu", "gated-gelu"])
def test_logits_equal_transformers_on_copied_weights(ff):
    hf, _, _, _ = pair(seed=11, feed_forward_proj=ff)
    torch.manual_seed(0)
    ours = T5(T5Dims(**{**DIMS, "feed_forward_proj": ff})).eval()
    ours.load_state_dict(hf.state_dict())  # copied, not just equally initialised
    ids, mask, dec = batch()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        enc_ref = hf.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(ours.encode(ids, mask), enc_ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours(ids, mask, dec), ref, atol=1e-5, rtol=1e-5)


def test_cached_decoding_in_pieces_equals_one_pass_and_rows_share_the_encoder():
    _, ours, _, _ = pair()
    ids, mask, dec = batch()
    with torch.no_grad():
        cross = ours.cross_states(ours.encode(ids, mask), mask)
        full, _ = ours.decode(dec[:, None], cross)
        head, past = ours.decode(dec[:, None, :2], cross)
        tail, _ = ours.decode(dec[:, None, 2:], cross, past)
        torch.testing.assert_close(torch.cat([head, tail], 2), full, atol=1e-5, rtol=1e-5)
        rows = torch.stack([dec, dec.flip(1)], 1)  # N = 2 rows per user
        both, _ = ours.decode(rows, cross, first_output=1)
        flipped, _ = ours.decode(dec.flip(1)[:, None], cross)
        torch.testing.assert_close(both[:, 0], full[:, 0, 1:], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(both[:, 1], flipped[:, 0, 1:], atol=1e-5, rtol=1e-5)


def test_bf16_autocast_keeps_float32_weights_and_close_logits():
    _, ours, _, _ = pair()
    ids, mask, dec = batch()
    with torch.no_grad():
        ref = ours(ids, mask, dec)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = ours(ids, mask, dec)
    assert all(p.dtype == torch.float32 for p in ours.parameters())
    assert low.dtype == torch.bfloat16
    assert (low.float() - ref).abs().max() < 0.05 * ref.abs().max()
    assert (low.float().argmax(-1) == ref.argmax(-1)).float().mean() > 0.9


def test_dropout_only_in_training_mode():
    _, ours, _, _ = pair()
    ids, mask, dec = batch()
    with torch.no_grad():
        assert torch.equal(ours(ids, mask, dec), ours(ids, mask, dec))
        ours.train()
        torch.manual_seed(1)
        a = ours(ids, mask, dec)
        torch.manual_seed(2)
        assert not torch.equal(a, ours(ids, mask, dec))
