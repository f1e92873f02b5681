"""MTGRec's influence-guided data curriculum (spec mtgrec.md §4) as trainer hooks.

The model (:class:`recbole_genrec.model.mtgrec.MTGRec`) draws the tokenizer of every training
sequence from ``model.tok_prob`` (p). :class:`MTGRecCurriculum` is the only writer of p:

- p is exactly uniform from the start of training to the end of the first stage (the
  "gradient-feature warm-up"), and constant between stage ends;
- at the end of each stage (``mt_stage_epochs``, cumulative), with the parameters frozen
  (no optimizer step), it estimates each tokenizer's influence on the validation loss,
  cumulates it and sets ``p = softmax(Ĩ / τ)`` for the next stage.

Influence (``mt_influence_mode``):

``code`` (§4.3, the official code, default). ``m, v`` = AdamW's ``exp_avg``/``exp_avg_sq`` of
every trainable parameter (``named_parameters`` order, flattened); ``g_i`` = the mean gradient
over the training split written with tokenizer ``i`` (each batch loss divided by the number of
batches); ``Γ_i = (β1 m + (1-β1) g_i) / sqrt(β2 v + (1-β2) g_i² + ε)`` (no bias correction);
``h_j`` = the mean plain gradient over the validation split written with tokenizer ``j``;
``S[i, j] = Γ_i · h_j``; ``I(i) = mean_j S[i, j]``; cumulation = the LR-weighted average
``Ĩ_k = Σ_s η_s I_s / Σ_s η_s`` (η_s = the optimizer's LR at boundary s).

``paper`` (§4.2). ``Γ_i = m' / sqrt(v' + ε)`` with the bias-corrected ``m' = (β1 m + (1-β1)
g_i) / (1 - β1^t)``, ``v' = (β2 v + (1-β2) g_i²) / (1 - β2^t)`` (t = the optimizer's step
count); ``I(i) = η_t Γ_i · mean_j h_j`` (the validation pairs of all tokenizers mixed, equal
sizes); cumulation = the plain sum ``Ĩ_k = Ĩ_{k-1} + I_k``.

``β1, β2`` and ``ε`` are the optimizer's (``betas``/``eps`` of its first parameter group: AdamW's
0.9, 0.999, 1e-8 as in the code). ``τ = inf`` gives uniform p ("w/o curriculum"); the softmax
subtracts the max, so a tiny τ gives the argmax (ties share the mass).

Choices where the spec is silent (documented here, the one place):

- ``mt_influence_sample_ratio`` < 1 uses the first ``ceil(ratio * #batches)`` batches of one
  pass of each (shuffled) training loader and of the validation loader, the same count for every
  tokenizer; 1.0 = every batch (faithful).
- ``mt_influence_dropout: false`` runs the gradient passes in eval mode (true = the code's train
  mode); the model's mode is restored afterwards. Gradients are zeroed before and after.
- Parameters the optimizer holds no state for yet contribute ``m = v = 0``.
- A stage end at or after the last epoch triggers no update (no epoch would use it).
- The cumulative influence and p are persistent buffers of the model, so a checkpoint carries
  them; the draws' generator is seeded from ``seed`` at model construction.

Each update is logged through RecBole's logger (I, Ĩ, p, the seconds of the train and validation
passes) and appended to ``trainer.mtgrec_history`` (published by :meth:`fit_start`).
"""

import itertools
import math
import time

import torch
from recbole.utils import set_color

from recbole_genrec.trainer.hooks import TrainerHook


def stable_softmax(scores: torch.Tensor, tau: float) -> torch.Tensor:
    """``softmax(scores / tau)`` in float64, max subtracted; ``tau = inf`` gives exactly uniform."""
    scores = torch.as_tensor(scores, dtype=torch.float64)
    if math.isinf(tau):
        return torch.full_like(scores, 1.0 / scores.numel())
    z = scores / tau
    e = torch.exp(z - z.max())
    return e / e.sum()


def trainable_parameters(model):
    """``[(name, parameter)]`` of the trainable parameters, in ``named_parameters`` order."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def adam_moments(optimizer, params):
    """``(m, v, step)``: the flattened AdamW ``exp_avg`` / ``exp_avg_sq`` and the step count."""
    ms, vs, step = [], [], 0
    for _, p in params:
        state = optimizer.state.get(p, {})
        ms.append(state["exp_avg"].reshape(-1) if "exp_avg" in state else torch.zeros(p.numel(), device=p.device))
        vs.append(state["exp_avg_sq"].reshape(-1) if "exp_avg_sq" in state else torch.zeros(p.numel(), device=p.device))
        if "step" in state:
            step = max(step, int(state["step"]))
    return torch.cat(ms).double(), torch.cat(vs).double(), step


def mean_gradient(model, params, batches, loss_fn) -> torch.Tensor:
    """Mean over ``batches`` of ``grad loss_fn(batch)`` (each batch loss / #batches, accumulated),
    flattened in ``params`` order (zeros where a parameter gets no gradient)."""
    model.zero_grad(set_to_none=True)
    batches = list(batches)
    for batch in batches:
        (loss_fn(batch) / len(batches)).backward()
    grad = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for _, p in params]).double()
    model.zero_grad(set_to_none=True)
    return grad


def adam_direction(g, m, v, beta1, beta2, eps, step=None):
    """AdamW's update direction for gradient ``g``: the code's (``step=None``) or the bias-corrected paper's."""
    m1 = beta1 * m + (1 - beta1) * g
    v1 = beta2 * v + (1 - beta2) * g * g
    if step is not None:
        t = max(int(step), 1)
        m1, v1 = m1 / (1 - beta1**t), v1 / (1 - beta2**t)
    return m1 / torch.sqrt(v1 + eps)


def influence(train_grads, val_grads, m, v, beta1, beta2, eps, mode="code", lr=1.0, step=None):
    """``(I [n], S [n, n])`` from ``train_grads`` (g_i, iterable of [P]) and ``val_grads`` (h_j, a [n, P] tensor).

    ``code``: ``S[i, j] = Γ_i · h_j``, ``I = S.mean(1)``. ``paper``: bias-corrected Γ_i and
    ``I(i) = lr * Γ_i · mean_j h_j`` (S is returned without the lr factor).
    """
    step = step if mode == "paper" else None
    S = torch.stack([val_grads @ adam_direction(g, m, v, beta1, beta2, eps, step) for g in train_grads])
    I = S.mean(1) if mode == "code" else lr * S.mean(1)
    return I, S


def cumulate(mode, num, den, I, lr):
    """The cumulative influence after one more update: ``(num, den, Ĩ)`` (see the module docstring)."""
    if mode == "code":
        num, den = num + lr * I, den + lr
        return num, den, num / den
    num = num + I
    return num, den + lr, num


def _take(loader, k):
    """The first ``k`` batches of ``loader`` (the interaction of tuple batches), building no batch more."""
    return (batch[0] if isinstance(batch, tuple) else batch for batch in itertools.islice(loader, k))


class MTGRecCurriculum(TrainerHook):
    """The curriculum of MTGRec pre-training: p uniform in the warm-up, updated at each stage end.

    Args: ``stage_epochs`` (the resolved stage lengths), ``tau``, ``mode`` (code | paper),
    ``sample_ratio``, ``dropout`` (see the module docstring); ``valid_tokenizers``: the tokenizers
    whose validation pairs make D_val (default all, the spec's; a probe tokenizer added only to
    the training groups, as in the spec's permuted-ID check, is left out of it). Publishes ``trainer.mtgrec_history``:
    one dict per update with ``epoch``, ``lr``, ``influence`` (I), ``cumulative`` (Ĩ), ``p``,
    ``S``, ``train_seconds``, ``valid_seconds``, ``seconds``, ``batches`` (train, valid).
    """

    def __init__(self, stage_epochs, tau, mode="code", sample_ratio=1.0, dropout=True, valid_tokenizers=None):
        # cumulative stage ends (epochs after which p is updated), e.g. [60, 20, 20] -> [60, 80, 100]
        self.boundaries = list(itertools.accumulate(int(n) for n in stage_epochs))
        self.valid_tokenizers = valid_tokenizers
        self.tau, self.mode = float(tau), str(mode)
        self.sample_ratio, self.dropout = float(sample_ratio), bool(dropout)
        self.resumed_history = []  # the updates before an interruption (load_resume_state)

    def fit_start(self, trainer, train_data, valid_data):
        self.train_data, self.valid_data = train_data, valid_data
        model = trainer.model
        if trainer.start_epoch == 0:
            model.reset_curriculum()  # p, Ĩ live in the model (a resumed run's come with its state)
            self.resumed_history = []
        trainer.mtgrec_history = list(self.resumed_history)
        trainer.logger.info(
            set_color("mtgrec", "blue")
            + f" curriculum: {model.n_tokenizers} tokenizers, p updated after epochs {self.boundaries} "
            f"(influence: {self.mode}, tau {self.tau}, sample ratio {self.sample_ratio}, dropout {self.dropout})"
        )

    def epoch_end(self, trainer, epoch_idx, train_loss, seconds):
        done = epoch_idx + 1
        if done in self.boundaries and done < trainer.epochs and self.valid_data is not None:
            record = self.update(trainer, done)
            record["epoch_seconds"] = seconds
            trainer.mtgrec_history.append(record)

    def resume_state(self, trainer):
        return {"history": trainer.mtgrec_history}

    def load_resume_state(self, trainer, state):
        self.resumed_history = list(state["history"])

    def update(self, trainer, epoch):
        """One curriculum update at the end of ``epoch`` (1-based): influence, Ĩ, p. Returns the record."""
        model, optimizer = trainer.model, trainer.optimizer
        start = time.perf_counter()
        was_training = model.training
        model.train(self.dropout)
        params = trainable_parameters(model)
        group = optimizer.param_groups[0]
        beta1, beta2 = group.get("betas", (0.9, 0.999))
        eps, lr = float(group.get("eps", 1e-8)), float(group["lr"])
        m, v, step = adam_moments(optimizer, params)
        n_tok = model.n_tokenizers
        k_train = max(1, math.ceil(self.sample_ratio * len(self.train_data)))
        k_valid = max(1, math.ceil(self.sample_ratio * len(self.valid_data)))

        def tokenizer_gradient(loader, k, tok):  # over the first k batches of loader, written with tokenizer tok
            return mean_gradient(model, params, _take(loader, k), lambda batch: model.tokenizer_loss(batch, tok))

        try:
            t0 = time.perf_counter()
            valid_tokenizers = self.valid_tokenizers if self.valid_tokenizers is not None else range(n_tok)
            H = torch.stack([tokenizer_gradient(self.valid_data, k_valid, j) for j in valid_tokenizers])
            valid_seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            train_grads = (tokenizer_gradient(self.train_data, k_train, i) for i in range(n_tok))
            I, S = influence(train_grads, H, m, v, beta1, beta2, eps, self.mode, lr, step)
            train_seconds = time.perf_counter() - t0
        finally:
            model.zero_grad(set_to_none=True)
            model.train(was_training)
        num, den, cum = cumulate(self.mode, model.mt_influence_num.double(), float(model.mt_lr_sum), I.cpu(), lr)
        p = stable_softmax(cum, self.tau)
        model.set_curriculum(num, den, p)
        record = {
            "epoch": epoch,
            "lr": lr,
            "influence": I.tolist(),
            "cumulative": cum.tolist(),
            "p": p.tolist(),
            "S": S.tolist(),
            "train_seconds": train_seconds,
            "valid_seconds": valid_seconds,
            "seconds": time.perf_counter() - start,
            "batches": [k_train, k_valid],
        }
        trainer.logger.info(
            set_color("mtgrec", "blue")
            + f" curriculum update after epoch {epoch} (lr {lr:.3g}, {record['seconds']:.1f}s: train passes "
            f"{train_seconds:.1f}s, valid passes {valid_seconds:.1f}s): influence {_fmt(I)}, cumulative {_fmt(cum)}, p {_fmt(p)}"
        )
        return record


class LoadPretrained(TrainerHook):
    """Fine-tuning: the pre-trained weights (``mt_pretrained_path``) are loaded at ``fit`` start.

    Only the model's ``state_dict`` is read (weights_only); the optimizer is the trainer's fresh
    one, so AdamW's moments start at zero (spec §5).
    """

    def __init__(self, path):
        self.path = path

    def fit_start(self, trainer, train_data, valid_data):
        if trainer.start_epoch > 0:
            return  # a resumed fine-tune has its own weights
        state = torch.load(self.path, map_location=trainer.device, weights_only=True)
        trainer.model.load_state_dict(state.get("state_dict", state))
        trainer.logger.info(set_color("mtgrec", "blue") + f" fine-tuning from the pre-trained weights [{self.path}]")


def _fmt(values):
    return "[" + ", ".join(f"{float(v):.4g}" for v in values) + "]"
