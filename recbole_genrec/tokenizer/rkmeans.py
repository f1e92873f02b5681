"""faiss k-means and residual k-means (the training-free tokenizer, ``sid_method: rkmeans``)."""

import logging

import numpy as np


def kmeans(x, k, seed=0, niter=25):
    """Centroids ``[k, d]`` (float32) of ``x`` by faiss k-means, seeded.

    With fewer points than ``k`` (tiny datasets), the points themselves are the first
    centroids and the rest are copies of random points with a small seeded jitter (logged),
    so the codebook still has ``k`` entries.
    """
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # one INFO line per CPU-feature probe
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    if n < k:
        logging.getLogger().info(f"k-means: {n} points for {k} centroids; padding with jittered copies.")
        rng = np.random.default_rng(seed)
        extra = x[rng.integers(0, n, size=k - n)]
        scale = float(x.std()) * 1e-2 + 1e-6
        extra = extra + rng.normal(0.0, scale, size=extra.shape).astype(np.float32)
        return np.ascontiguousarray(np.concatenate([x, extra]), dtype=np.float32)
    km = faiss.Kmeans(d, k, niter=int(niter), seed=int(seed), verbose=False, min_points_per_centroid=1,
                      max_points_per_centroid=1 << 30)
    km.train(x)
    return np.ascontiguousarray(km.centroids, dtype=np.float32)


def assign(x, centroids):
    """Index of the nearest centroid (squared L2) for every row of ``x``."""
    x = np.asarray(x, dtype=np.float32)
    c = np.asarray(centroids, dtype=np.float32)
    dist = (x * x).sum(1, keepdims=True) - 2.0 * x @ c.T + (c * c).sum(1)[None, :]
    return dist.argmin(1).astype(np.int64)


def residual_kmeans(x, train_idx, levels=3, codebook_size=256, seed=0, niter=25):
    """Codes ``[n, levels]`` of all rows of ``x``; each level's k-means is fitted on the
    residuals of the ``train_idx`` rows, then every row is assigned and its residual updated.
    Also returns the list of per-level codebooks.
    """
    residual = np.array(x, dtype=np.float32, copy=True)
    codes = np.zeros((len(x), levels), dtype=np.int64)
    codebooks = []
    for level in range(levels):
        centroids = kmeans(residual[train_idx], codebook_size, seed=seed + level, niter=niter)
        codes[:, level] = assign(residual, centroids)
        residual -= centroids[codes[:, level]]
        codebooks.append(centroids)
    return codes, codebooks
