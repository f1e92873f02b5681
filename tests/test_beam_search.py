"""Prefix trie, KV-cached T5 step decoder and batched beam search against brute force (and transformers' T5)."""

import itertools

import pytest
import torch
from transformers import T5Config, T5ForConditionalGeneration

from recbole_genrec.model.beam_search import PrefixTrie, beam_search, level_offsets
from recbole_genrec.model.t5 import T5, T5Dims, T5StepDecoder

SIZES = [4, 4, 4]  # tiny codebooks: 64 possible paths, vocab 1 + 12 + user + EOS = 15
VOCAB = 1 + sum(SIZES) + 2


def random_codes(n_items, sizes=SIZES, seed=0):
    """``n_items`` distinct random code paths ``[n_items, L]``."""
    g = torch.Generator().manual_seed(seed)
    paths = torch.tensor(list(itertools.product(*[range(s) for s in sizes])))
    return paths[torch.randperm(len(paths), generator=g)[:n_items]]


TINY = dict(
    d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=2, feed_forward_proj="relu",
    dropout_rate=0.1, relative_attention_num_buckets=32, relative_attention_max_distance=128,
)


def tiny_t5(seed=0, vocab=VOCAB):
    torch.manual_seed(seed)
    model = T5(T5Dims(vocab_size=vocab, **TINY)).eval()
    # sharpen the untrained output distribution so the beam's choices matter
    with torch.no_grad():
        model.shared.weight.mul_(8.0)
    return model


def hf_twin(model):
    """transformers' T5 with ``model``'s weights (the reference the step decoder must match)."""
    cfg = T5Config(vocab_size=model.dims.vocab_size, pad_token_id=0, decoder_start_token_id=0, **TINY)
    hf = T5ForConditionalGeneration(cfg).eval()
    hf.load_state_dict(model.state_dict())
    return hf


def encoder_batch(model, B=3, S=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (B, S), generator=g)
    mask = torch.ones(B, S, dtype=torch.bool)
    mask[0, 4:] = False  # a shorter, padded history
    ids[~mask] = 0
    with torch.no_grad():
        hidden = model.encode(ids, mask)
    return hidden, mask


def teacher_forced_scores(model, hidden, mask, tokens):
    """Joint full-vocab log-prob of every token path ``tokens [P, L]`` for every user: ``[B, P]``."""
    B, P = hidden.shape[0], tokens.shape[0]
    model = hf_twin(model)
    dec_in = torch.cat([torch.zeros(P, 1, dtype=torch.long), tokens[:, :-1]], 1)
    out = []
    with torch.no_grad():
        for b in range(B):
            logits = model(
                encoder_outputs=(hidden[b : b + 1].expand(P, -1, -1),),
                attention_mask=mask[b : b + 1].expand(P, -1),
                decoder_input_ids=dec_in,
            ).logits
            out.append(torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1).sum(-1))
    return torch.stack(out)


def run_beam(model, hidden, mask, trie, beam, constrained=True):
    decoder = T5StepDecoder(model, hidden, mask)
    return beam_search(decoder, trie, level_offsets(trie.codebook_sizes), beam, constrained=constrained)


# ---------------------------------------------------------------- trie


def test_trie_tables_and_lookup():
    codes = torch.tensor([[0, 1, 2], [0, 1, 3], [0, 2, 0], [3, 3, 3]])
    trie = PrefixTrie(codes, SIZES, item_ids=torch.tensor([5, 6, 7, 8]))
    # depth 0: root with children codes {0, 3}; depth 1: nodes (0,), (3,); depth 2: (0,1), (0,2), (3,3)
    assert trie.child_codes[0].tolist() == [[0, 3]]
    assert trie.children[0].tolist() == [[0, 1]]
    assert trie.child_codes[1].tolist() == [[1, 2], [3, -1]]
    assert trie.children[2].tolist() == [[5, 6], [7, -1], [8, -1]]  # leaves are item ids
    assert trie.lookup(codes).tolist() == [5, 6, 7, 8]
    bad = torch.tensor([[0, 1, 0], [1, 1, 2], [0, 3, 3], [-1, 0, 0], [0, 1, 99], [3, 3, -1]])
    assert trie.lookup(bad).tolist() == [-1] * len(bad)


def test_trie_from_item_sid_skips_padding_row():
    sid = torch.cat([torch.zeros(1, 3, dtype=torch.long), random_codes(10)])
    trie = PrefixTrie.from_item_sid(sid, SIZES)
    assert trie.lookup(sid[1:]).tolist() == list(range(1, 11))


def test_trie_rejects_collisions_and_bad_codes():
    with pytest.raises(ValueError, match="collide"):
        PrefixTrie(torch.tensor([[0, 1, 2], [0, 1, 2]]), SIZES)
    with pytest.raises(ValueError, match="out of range"):
        PrefixTrie(torch.tensor([[0, 1, 4]]), SIZES)
    with pytest.raises(ValueError, match="levels"):
        PrefixTrie(torch.tensor([[0, 1, 2]]), [4, 4])


# ---------------------------------------------------------------- decoder


def test_step_decoder_matches_hf_teacher_forcing():
    model = tiny_t5()
    hidden, mask = encoder_batch(model)
    labels = torch.randint(1, VOCAB, (hidden.shape[0], 3))
    with torch.no_grad():
        dec_in = torch.cat([torch.zeros(hidden.shape[0], 1, dtype=torch.long), labels[:, :-1]], 1)
        ref = hf_twin(model)(encoder_outputs=(hidden,), attention_mask=mask, decoder_input_ids=dec_in).logits
        dec = T5StepDecoder(model, hidden, mask)
        steps = [dec.step(None, None)]
        parent = torch.zeros(hidden.shape[0], 1, dtype=torch.long)
        for t in range(2):
            steps.append(dec.step(labels[:, t : t + 1], parent))
    torch.testing.assert_close(torch.cat(steps, 1), ref, atol=1e-5, rtol=1e-5)


def test_step_decoder_reorders_cache_per_beam():
    """Beams that swap/duplicate parents must see their own parent's prefix."""
    model = tiny_t5()
    hf = hf_twin(model)
    hidden, mask = encoder_batch(model, B=2)
    with torch.no_grad():
        dec = T5StepDecoder(model, hidden, mask)
        dec.step(None, None)
        dec.step(torch.tensor([[1, 2, 3], [4, 5, 6]]), torch.zeros(2, 3, dtype=torch.long))
        parent = torch.tensor([[2, 0, 2], [1, 1, 0]])
        out = dec.step(torch.tensor([[7, 8, 9], [10, 11, 12]]), parent)
        first = torch.tensor([[1, 2, 3], [4, 5, 6]]).gather(1, parent)
        seq = torch.stack([torch.zeros_like(first), first, torch.tensor([[7, 8, 9], [10, 11, 12]])], -1)
        for b in range(2):
            ref = hf(
                encoder_outputs=(hidden[b : b + 1].expand(3, -1, -1),),
                attention_mask=mask[b : b + 1].expand(3, -1),
                decoder_input_ids=seq[b],
            ).logits[:, -1]
            torch.testing.assert_close(out[b], ref, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- beam search


def test_wide_constrained_beam_is_exhaustive_top_k():
    """Beam >= #items keeps every prefix: the result is exactly the top-W of brute force."""
    model, codes = tiny_t5(), random_codes(29)
    trie = PrefixTrie(codes, SIZES, item_ids=torch.arange(1, 30))
    hidden, mask = encoder_batch(model)
    res = run_beam(model, hidden, mask, trie, beam=29)
    exhaustive = teacher_forced_scores(model, hidden, mask, codes + level_offsets(SIZES))  # [B, 29]
    top_scores, top_idx = exhaustive.topk(29, dim=1)
    assert torch.equal(res.items, top_idx + 1)
    torch.testing.assert_close(res.scores, top_scores, atol=1e-4, rtol=1e-5)


def test_wide_unconstrained_beam_is_exhaustive_over_all_paths():
    """Unconstrained with beam >= V^(L-1) keeps every prefix of the full vocabulary."""
    model, codes = tiny_t5(seed=3), random_codes(20)
    trie = PrefixTrie(codes, SIZES, item_ids=torch.arange(1, 21))
    hidden, mask = encoder_batch(model, B=2)
    W = VOCAB**2
    res = run_beam(model, hidden, mask, trie, beam=W, constrained=False)
    paths = torch.tensor(list(itertools.product(range(VOCAB), repeat=3)))
    exhaustive = teacher_forced_scores(model, hidden, mask, paths)  # [B, V^3]
    top_scores, top_idx = exhaustive.topk(W, dim=1)
    torch.testing.assert_close(res.scores, top_scores, atol=1e-4, rtol=1e-5)
    found = paths[top_idx] - level_offsets(SIZES)  # level-local codes of the exhaustive top-W
    expected_items = trie.lookup(found)
    assert torch.equal(res.items, expected_items)
    assert res.invalid_rate() == pytest.approx(float((expected_items == -1).float().mean()))
    assert res.invalid_rate() > 0  # an untrained model emits invalid paths


def test_narrow_beam_is_valid_distinct_and_a_lower_bound():
    """The documented approximation: a narrow beam returns valid distinct items whose scores are
    their true log-likelihoods, and its r-th score is <= the exhaustive r-th best score."""
    model, codes = tiny_t5(seed=5), random_codes(40)
    trie = PrefixTrie(codes, SIZES, item_ids=torch.arange(1, 41))
    hidden, mask = encoder_batch(model, B=4)
    W = 5
    res = run_beam(model, hidden, mask, trie, beam=W)
    exhaustive = teacher_forced_scores(model, hidden, mask, codes + level_offsets(SIZES))
    assert (res.items >= 1).all() and (res.items <= 40).all()
    for row in res.items:
        assert len(set(row.tolist())) == W
    torch.testing.assert_close(res.scores, exhaustive.gather(1, res.items - 1), atol=1e-4, rtol=1e-5)
    assert (res.scores[:, 1:] <= res.scores[:, :-1]).all()
    assert (res.scores <= exhaustive.topk(W, dim=1).values + 1e-4).all()


def test_constrained_never_invalid_even_when_the_model_prefers_invalid_tokens():
    model, codes = tiny_t5(seed=7), random_codes(12)
    with torch.no_grad():  # make EOS/user tokens and wrong-level codes by far the likeliest
        model.lm_head.weight[0].fill_(0.0)
        model.lm_head.weight[-2:] *= 50
    trie = PrefixTrie(codes, SIZES, item_ids=torch.arange(1, 13))
    hidden, mask = encoder_batch(model)
    res = run_beam(model, hidden, mask, trie, beam=10)
    assert res.invalid_rate() == 0.0 and (res.items >= 1).all()
    for row in res.items:
        assert len(set(row.tolist())) == 10
    unc = run_beam(model, hidden, mask, trie, beam=10, constrained=False)
    assert unc.invalid_rate() > 0.5


def test_at_least_k_items_with_a_skewed_trie_and_fewer_items_than_beam():
    # every item shares the first code: level 0 has one node, so the beam must grow later
    codes = torch.tensor([[2, a, b] for a in range(4) for b in range(3)])  # 12 items
    trie = PrefixTrie(codes, SIZES, item_ids=torch.arange(1, 13))
    model = tiny_t5(seed=2)
    hidden, mask = encoder_batch(model)
    res = run_beam(model, hidden, mask, trie, beam=10)
    assert res.items.shape[1] == 10 and (res.items >= 1).all()
    # beam wider than the catalogue: every item once, nothing else
    res = run_beam(model, hidden, mask, trie, beam=20)
    assert res.items.shape[1] == 12
    assert sorted(res.items[0].tolist()) == list(range(1, 13))


def test_on_step_sees_each_level_prefixes_of_the_final_beams():
    """The hook APAO's prefix-survival rate uses: level-t beams, and final beams extend them."""
    model, codes = tiny_t5(seed=4), random_codes(30)
    trie = PrefixTrie(codes, SIZES, item_ids=torch.arange(1, 31))
    hidden, mask = encoder_batch(model)
    seen = []
    decoder = T5StepDecoder(model, hidden, mask)
    res = beam_search(decoder, trie, level_offsets(SIZES), 6, on_step=lambda t, c, s: seen.append(c.clone()))
    assert [c.shape[-1] for c in seen] == [1, 2, 3] and torch.equal(seen[-1], res.codes)
    for t in range(2):
        for b in range(res.codes.shape[0]):
            kept = {tuple(p) for p in seen[t][b].tolist()}
            assert {tuple(p[: t + 1]) for p in res.codes[b].tolist()} <= kept
