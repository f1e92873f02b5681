"""Tokenizer quality measures (spec §11) and a code-usage plot.

All functions take integer code tables ``[n_items, L]`` whose rows are real items only
(no padding row).
"""

import numpy as np

from recbole_genrec.tokenizer.collision import collision_groups, collision_rate


def _entropy(counts):
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def _prefix_counts(codes, length):
    if length == 0:
        return np.array([len(codes)])
    return collision_groups(codes[:, :length])[1]


def tokenizer_quality(codes, codebook_sizes, final_codes=None):
    """Quality of one tokenizer.

    ``codes``: ``[n, L]`` codes before the collision level (or a file's codes as given);
    ``codebook_sizes``: the size of each of those L levels; ``final_codes``: the table after
    the collision level (``None`` if no level was added, then ``codes`` is the final table).

    Returns a JSON-able dict: ``n_items``, ``collision_rate_before`` / ``collision_rate_after``,
    ``max_group_size``, ``group_size_hist`` ({size: #groups}), ``levels`` (per level:
    ``used``, ``size``, ``usage`` = used/size, ``perplexity`` = exp(entropy of the code
    shares), ``cond_perplexity`` = exp(H(c_<=l) - H(c_<l)), the perplexity given the prefix),
    ``prefix_sharing`` (per prefix length p: ``unique`` prefixes and ``shared_items`` = share
    of items whose length-p prefix some other item also has).
    """
    codes = np.asarray(codes, dtype=np.int64)
    final = codes if final_codes is None else np.asarray(final_codes, dtype=np.int64)
    n, n_levels = codes.shape
    _, group_counts = collision_groups(codes)
    sizes, n_groups = np.unique(group_counts, return_counts=True)
    levels = []
    for level in range(n_levels):
        counts = np.bincount(codes[:, level], minlength=codebook_sizes[level])
        h_prefix = _entropy(_prefix_counts(codes, level + 1))
        h_before = _entropy(_prefix_counts(codes, level))
        levels.append({
            "used": int((counts > 0).sum()),
            "size": int(codebook_sizes[level]),
            "usage": float((counts > 0).sum() / codebook_sizes[level]),
            "perplexity": float(np.exp(_entropy(counts))),
            "cond_perplexity": float(np.exp(h_prefix - h_before)),
        })
    prefix_sharing = []
    for length in range(1, final.shape[1] + 1):
        inverse, counts = collision_groups(final[:, :length])
        shared = float((counts[inverse] > 1).sum() / max(n, 1))
        prefix_sharing.append({"length": length, "unique": int(len(counts)), "shared_items": shared})
    return {
        "n_items": int(n),
        "n_levels_before": int(n_levels),
        "n_levels_after": int(final.shape[1]),
        "collision_rate_before": collision_rate(codes),
        "collision_rate_after": collision_rate(final),
        "max_group_size": int(group_counts.max()) if n else 0,
        "group_size_hist": {str(int(s)): int(c) for s, c in zip(sizes, n_groups)},
        "levels": levels,
        "prefix_sharing": prefix_sharing,
    }


def id_change_rate(codes_a, codes_b):
    """Share of items whose first token changed and whose ID changed anywhere (MTGRec Table 5)."""
    a, b = np.asarray(codes_a), np.asarray(codes_b)
    return {"first": float((a[:, 0] != b[:, 0]).mean()), "any": float((a != b).any(axis=1).mean())}


def format_quality(quality, title="semantic IDs"):
    """A short human-readable report of :func:`tokenizer_quality`'s dict."""
    q = quality
    lines = [
        f"{title}: {q['n_items']} items, {q['n_levels_before']} levels"
        + (" + 1 collision level" if q["n_levels_after"] > q["n_levels_before"] else ""),
        f"  collision rate before: {q['collision_rate_before']:.4%}  after: {q['collision_rate_after']:.4%}"
        f"  max group size: {q['max_group_size']}",
        "  level  used/size  usage    perplexity  cond.perplexity",
        *(
            f"  {i + 1:>5}  {lv['used']:>4}/{lv['size']:<4}  {lv['usage']:7.2%}  {lv['perplexity']:10.1f}"
            f"  {lv['cond_perplexity']:15.2f}"
            for i, lv in enumerate(q["levels"])
        ),
        "  prefix length  unique prefixes  items sharing the prefix",
        *(f"  {ps['length']:>13}  {ps['unique']:>15}  {ps['shared_items']:24.2%}" for ps in q["prefix_sharing"]),
    ]
    return "\n".join(lines)


def plot_code_usage(codes, codebook_sizes, path, title="code usage"):
    """Write a PNG: one panel per level with the item count of every code, sorted descending."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    codes = np.asarray(codes, dtype=np.int64)
    n_levels = codes.shape[1]
    fig, axes = plt.subplots(1, n_levels, figsize=(3.2 * n_levels, 2.8), squeeze=False)
    for level, ax in enumerate(axes[0]):
        counts = np.sort(np.bincount(codes[:, level], minlength=codebook_sizes[level]))[::-1]
        ax.bar(np.arange(len(counts)), counts, width=1.0)
        used = int((counts > 0).sum())
        ax.set_title(f"level {level + 1}: {used}/{codebook_sizes[level]} used", fontsize=9)
        ax.set_xlabel("code (sorted by count)", fontsize=8)
        if level == 0:
            ax.set_ylabel("items", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
