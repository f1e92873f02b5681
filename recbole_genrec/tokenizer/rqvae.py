"""RQ-VAE tokenizer (spec §4-§9): MLP encoder, residual quantisation with EMA (or VQ)
codebooks, straight-through estimator, MLP decoder; k-means (faiss) codebook init.

    x [B, D] --enc--> z [B, d] --RQ (levels x K codes)--> z_q = sum_h e_h --dec--> x_hat [B, D]
"""

import logging
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from recbole_genrec.errors import ConfigError
from recbole_genrec.tokenizer.rkmeans import kmeans


def mlp(sizes, dropout=0.0):
    """Linear layers with ReLU (and dropout) between them, nothing after the last."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class Quantizer(nn.Module):
    """One residual level: ``K`` code vectors of size ``d``.

    ``vq_type="ema"``: the codebook is a buffer updated by EMA in training mode (§7), never
    by gradients. ``vq_type="vq"``: the codebook is a parameter trained by the VQ loss.
    """

    def __init__(self, codebook_size, dim, vq_type="ema", beta=0.25, decay=0.99, eps=1e-5, dead_code_restart=False):
        super().__init__()
        self.codebook_size = codebook_size
        self.vq_type, self.beta, self.decay, self.eps = vq_type, beta, decay, eps
        self.dead_code_restart = dead_code_restart
        embed = torch.randn(codebook_size, dim) * 0.01
        if vq_type == "ema":
            self.register_buffer("embed", embed)
            self.register_buffer("cluster_size", torch.ones(codebook_size))
            self.register_buffer("embed_avg", embed.clone())
        elif vq_type == "vq":
            self.embed = nn.Parameter(embed)
        else:
            raise ConfigError(f"rq_vq_type must be 'ema' or 'vq', got {vq_type!r}.")
        self.last_unused = 0

    @torch.no_grad()
    def set_codebook(self, centers):
        centers = torch.as_tensor(centers, dtype=self.embed.dtype, device=self.embed.device)
        self.embed.data.copy_(centers)
        if self.vq_type == "ema":
            self.embed_avg.copy_(centers)
            self.cluster_size.fill_(1.0)

    def assign(self, r):
        """Nearest code per row of ``r`` [B, d] -> [B]."""
        e = self.embed
        dist = r.pow(2).sum(1, keepdim=True) - 2.0 * r @ e.t() + e.pow(2).sum(1)[None, :]  # [B, K]
        return dist.argmin(1)

    def forward(self, r):
        """``(e [B, d] code vectors, loss, idx [B])``; EMA/dead-code updates in training mode."""
        idx = self.assign(r.detach())
        e = F.embedding(idx, self.embed)  # pre-update code vectors (as the MTGRec code)
        if self.vq_type == "ema":
            loss = self.beta * F.mse_loss(r, e.detach())
        else:
            loss = F.mse_loss(e, r.detach()) + self.beta * F.mse_loss(r, e.detach())
        if self.training:
            counts = torch.bincount(idx, minlength=self.codebook_size).to(r.dtype)  # [K]
            self.last_unused = int((counts == 0).sum())
            if self.vq_type == "ema":
                self._ema_update(r.detach(), idx, counts)
            if self.dead_code_restart and self.last_unused:
                self._restart(r.detach(), counts == 0)
        return e, loss, idx

    @torch.no_grad()
    def _ema_update(self, r, idx, counts):
        sums = torch.zeros_like(self.embed_avg).index_add_(0, idx, r)  # [K, d]
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.codebook_size * self.eps) * n
        self.embed.copy_(self.embed_avg / smoothed[:, None])

    @torch.no_grad()
    def _restart(self, r, dead):
        """Codes unused in this batch get random batch residuals (``dead_code_restart``)."""
        picks = r[torch.randint(0, len(r), (int(dead.sum()),), device=r.device)]
        self.embed.data[dead] = picks
        if self.vq_type == "ema":
            self.embed_avg[dead] = picks
            self.cluster_size[dead] = 1.0


# RQVAE's arguments that the tokenizer settings give under the same name
_ARCHITECTURE_KEYS = (
    "hidden_sizes", "code_dim", "levels", "codebook_size", "vq_type", "beta", "detach_residual", "dropout",
    "dead_code_restart",
)


class RQVAE(nn.Module):
    def __init__(self, in_dim, hidden_sizes=(2048, 1024, 512, 256), code_dim=128, levels=3, codebook_size=256,
                 vq_type="ema", beta=0.25, decay=0.99, eps=1e-5, detach_residual=True, dropout=0.0,
                 dead_code_restart=False):
        super().__init__()
        sizes = [in_dim, *hidden_sizes, code_dim]
        self.encoder = mlp(sizes, dropout)
        self.decoder = mlp(sizes[::-1], dropout)
        self.quantizers = nn.ModuleList(
            Quantizer(codebook_size, code_dim, vq_type, beta, decay, eps, dead_code_restart) for _ in range(levels)
        )
        self.detach_residual = detach_residual

    def quantize(self, z):
        """``(z_q [B, d] straight-through, mean quantisation loss, codes [B, levels])``."""
        residual, z_q, losses, codes = z, torch.zeros_like(z), [], []
        for quantizer in self.quantizers:
            e, loss, idx = quantizer(residual)
            z_q = z_q + residual + (e - residual).detach()  # value e, gradient identity
            residual = (residual - e).detach() if self.detach_residual else residual - e.detach()
            losses.append(loss)
            codes.append(idx)
        return z_q, torch.stack(losses).mean(), torch.stack(codes, dim=1)

    def forward(self, x):
        z_q, q_loss, codes = self.quantize(self.encoder(x))
        return self.decoder(z_q), q_loss, codes

    @torch.no_grad()
    def encode(self, x, batch_size=4096):
        """Codes ``[n, levels]`` (int64 numpy) in eval mode; restores the previous mode."""
        was_training = self.training
        self.eval()
        out = [self.quantize(self.encoder(x[i : i + batch_size]))[2] for i in range(0, len(x), batch_size)]
        self.train(was_training)
        return torch.cat(out).cpu().numpy().astype(np.int64)

    @torch.no_grad()
    def kmeans_init(self, x, seed=0, niter=25):
        """Spec §6: encode ``x`` with the (untrained) encoder, then per level k-means on the
        residuals, assign to the nearest centroid, and pass the residuals on."""
        residual = self.encoder(x).cpu().numpy().astype(np.float32)
        for level, quantizer in enumerate(self.quantizers):
            centers = kmeans(residual, quantizer.codebook_size, seed=seed + level, niter=niter)
            quantizer.set_codebook(centers)
            idx = quantizer.assign(torch.as_tensor(residual, device=quantizer.embed.device)).cpu().numpy()
            residual = residual - centers[idx]


def make_optimizer(name, params, lr, weight_decay):
    optimizers = {"adagrad": torch.optim.Adagrad, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if name not in optimizers:
        raise ConfigError(f"rq_optimizer must be one of {sorted(optimizers)}, got {name!r}.")
    return optimizers[name](params, lr=lr, weight_decay=weight_decay)


def train_rqvae(x, train_idx, params, seed=0, device="cpu", keep_last=1, show_progress=True, on_epoch_end=None):
    """Train an RQ-VAE on ``x[train_idx]`` and encode **all** rows of ``x``.

    ``params``: the ``rq_*`` settings without the prefix (:func:`~recbole_genrec.tokenizer.build.rq_params`:
    ``build.RQVAE_KEYS``, ``dead_code_restart`` and optionally ``dead_code_restart_until``, the share
    of the epochs with restarts, default 1).
    Returns ``(codes, history)``: ``codes`` is a list of ``keep_last`` tables ``[n, levels]``,
    the eval-mode codes after each of the last ``keep_last`` epochs (oldest first);
    ``history`` holds per-epoch losses, the reconstruction MSE and unused-code counts.

    ``on_epoch_end(epoch, model, x_all)``, if given, is called after every epoch (for
    diagnostics such as code usage over training; ``model.encode`` leaves the state as is).

    The global torch RNG is forked and seeded here, so the result depends only on the
    inputs and ``seed`` (and the caller's RNG state is left untouched).
    """
    p = params
    epochs = int(p["epochs"])
    if keep_last > epochs:
        raise ConfigError(f"sid_num_tokenizers={keep_last} needs rq_epochs >= {keep_last}, got rq_epochs={epochs}.")
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        arch = {key: p[key] for key in _ARCHITECTURE_KEYS}  # the settings are RQVAE's arguments
        model = RQVAE(x.shape[1], decay=float(p["ema_decay"]), eps=float(p["ema_eps"]), **arch).to(device)
        x_all = torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)
        x_train = x_all[torch.as_tensor(train_idx, device=device)]
        t0 = time.time()
        if p["kmeans_init"]:
            model.kmeans_init(x_train, seed=seed, niter=int(p["kmeans_iters"]))
        init_codes = model.encode(x_train)
        history = {"init_seconds": time.time() - t0,
                   "init_level_usage": [int(len(np.unique(init_codes[:, h]))) for h in range(init_codes.shape[1])],
                   "loss": [], "recon_mse": [], "unused_codes_last_batch": []}
        optimizer = make_optimizer(p["optimizer"], [q for q in model.parameters() if q.requires_grad], float(p["lr"]), float(p["weight_decay"]))
        generator = torch.Generator().manual_seed(seed)
        batch_size = int(p["batch_size"])
        codes = []
        model.train()
        bar = tqdm(range(epochs), desc="RQ-VAE", disable=not show_progress, leave=False)
        restart_epochs = round(float(p.get("dead_code_restart_until", 1.0)) * epochs)
        for epoch in bar:
            for q in model.quantizers:  # restarts only in the first dead_code_restart_until of the epochs
                q.dead_code_restart = bool(p["dead_code_restart"]) and epoch < restart_epochs
            perm = torch.randperm(len(x_train), generator=generator).to(device)
            total, total_recon, steps = 0.0, 0.0, 0
            for start in range(0, len(perm), batch_size):
                batch = x_train[perm[start : start + batch_size]]
                x_hat, q_loss, _ = model(batch)
                recon = F.mse_loss(x_hat, batch)
                loss = recon + q_loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total, total_recon, steps = total + loss.item(), total_recon + recon.item(), steps + 1
            history["loss"].append(total / steps)
            history["recon_mse"].append(total_recon / steps)
            history["unused_codes_last_batch"].append([q.last_unused for q in model.quantizers])
            bar.set_postfix(loss=f"{total / steps:.4f}", recon=f"{total_recon / steps:.4f}")
            if epoch >= epochs - keep_last:
                codes.append(model.encode(x_all))
            if on_epoch_end is not None:
                on_epoch_end(epoch, model, x_all)
        logging.getLogger().info(
            f"RQ-VAE: {epochs} epochs, final loss {history['loss'][-1]:.4f}, recon MSE "
            f"{history['recon_mse'][-1]:.4f}, unused codes in the last batch {history['unused_codes_last_batch'][-1]}"
        )
    return codes, history
