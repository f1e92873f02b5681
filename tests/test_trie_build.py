"""PrefixTrie construction: the packed-key path (one int64 per prefix) equals the row-wise one."""

import torch

from recbole_genrec.model.beam_search import PrefixTrie, _distinct_prefixes


def distinct_codes(n, sizes, seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = torch.stack([torch.randint(0, s, (4 * n,), generator=g) for s in sizes], 1)
    rows = torch.unique(rows, dim=0)
    return rows[torch.randperm(rows.shape[0], generator=g)[:n]]  # distinct, in random item order


def test_packed_prefixes_equal_rowwise_unique():
    codes = distinct_codes(300, [5, 7, 3, 6])
    for t, (last, inverse) in enumerate(_distinct_prefixes(codes, [5, 7, 3, 6])):
        uniq, ref_inverse = torch.unique(codes[:, : t + 1], dim=0, return_inverse=True)
        assert torch.equal(inverse, ref_inverse)
        assert torch.equal(last, uniq[:, t])


def test_trie_tables_same_with_and_without_packing():
    codes = distinct_codes(400, [6, 6, 4, 5], seed=1)
    item_ids = torch.arange(1, 401)
    packed = PrefixTrie(codes, [6, 6, 4, 5], item_ids=item_ids)
    rowwise = PrefixTrie(codes, [2**40] * 4, item_ids=item_ids)  # radix product > 2**63: row-wise path
    for a, b in zip(packed.children + packed.child_codes, rowwise.children + rowwise.child_codes):
        assert torch.equal(a, b)
    assert torch.equal(packed.lookup(codes), item_ids)
    for node_row, codes_row in zip(packed.children[0][0], packed.child_codes[0][0]):  # root: sorted codes
        assert (node_row >= 0) == (codes_row >= 0)
    present = packed.child_codes[0][0][packed.child_codes[0][0] >= 0]
    assert torch.equal(present, torch.unique(codes[:, 0]))
