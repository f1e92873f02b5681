"""TIGER as a RecBole model: vocab layout, loss, predict vs beam, full-sort contract, training."""

import math
import os

import pytest
import torch
import yaml
from conftest import tiny_config
from recbole.data import data_preparation
from recbole.data.dataset import SequentialDataset
from recbole.data.interaction import Interaction
from recbole.utils import init_seed

from recbole_genrec.config import Config
from recbole_genrec.model.tiger import TIGER
from recbole_genrec.trainer import GenRecTrainer

SMALL = {"n_layers": 1, "d_model": 32, "d_ff": 64, "n_heads": 2, "d_kv": 16}
YAML = os.path.join(os.path.dirname(__file__), "..", "recbole_genrec", "properties", "model", "TIGER.yaml")


def attach_random_sids(dataset, sizes=(4, 4, 4), seed=0):
    """Stand-in for SemanticIDDataset: random collision-free codes for rows 1.., row 0 = zeros."""
    g = torch.Generator().manual_seed(seed)
    n_paths = math.prod(sizes)
    pick = torch.randperm(n_paths, generator=g)[: dataset.item_num - 1]
    codes, rest = [], pick
    for s in reversed(sizes):
        codes.append(rest % s)
        rest = rest // s
    sid = torch.cat([torch.zeros(1, len(sizes), dtype=torch.long), torch.stack(codes[::-1], 1)])
    dataset.item_sid, dataset.item_sids, dataset.sid_codebook_sizes = sid, sid[None], list(sizes)
    return dataset


def build(tiny_data, tmp_path, model_class=TIGER, **overrides):
    """A small ``model_class`` (TIGER or a subclass) on the tiny data with random codes."""
    keys = {**SMALL, "beam_size": 20, "valid_beam_size": 10, "warmup_steps": 2, "learning_rate": 0.01}
    keys.update(overrides)
    config = Config(model=model_class, dataset="tiny", config_dict=tiny_config(tiny_data, tmp_path, **keys))
    init_seed(config["seed"], config["reproducibility"])
    dataset = attach_random_sids(SequentialDataset(config))
    train, valid, test = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    return config, model_class(config, train._dataset), (train, valid, test)


class StandInDataset:
    """Just what TIGER reads from a dataset (for models too big to train in a test)."""

    def __init__(self, n_items, sizes, seed=0):
        g = torch.Generator().manual_seed(seed)
        codes = torch.stack([torch.randint(0, s, (n_items - 1,), generator=g) for s in sizes], 1)
        codes[:, -1] = torch.arange(n_items - 1) % sizes[-1]  # distinct rows for n_items <= sizes[-1]
        self.item_sid = torch.cat([torch.zeros(1, len(sizes), dtype=torch.long), codes])
        self.sid_codebook_sizes = list(sizes)
        self.n_items = n_items

    def num(self, field):
        return self.n_items


def hf_t5_of(model):
    """transformers' T5 with the weights of ``model.t5`` (same parameter names), in the same mode."""
    from transformers import T5Config, T5ForConditionalGeneration

    dims = vars(model.t5.dims)
    hf = T5ForConditionalGeneration(T5Config(**dims, pad_token_id=0, decoder_start_token_id=0))
    hf.load_state_dict(model.t5.state_dict())
    return hf.train(model.training)


def spec_model(tmp_path, **overrides):
    config = Config(model=TIGER, dataset="tiny", config_dict={"data_path": str(tmp_path), **overrides})
    return TIGER(config, StandInDataset(200, [256] * 4))


# ------------------------------------------------------------------ spec §3/§4


def test_vocab_layout_and_spec_param_count(tmp_path):
    model = spec_model(tmp_path)  # TIGER.yaml defaults: 3 layers, MTGRec-repo column
    assert model.vocab_size == 1027 and model.user_token_start == 1025 and model.eos_token == 1026
    tokens = model.item_tokens[1:]
    for d in range(4):
        assert tokens[:, d].min() >= 256 * d + 1 and tokens[:, d].max() <= 256 * d + 256
    assert (model.item_tokens[0] == 0).all()
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 131_968 + 656_000 * 3 == 2_099_968  # spec §4: ≈ 2.10M for L = 3
    smoke = spec_model(tmp_path, n_layers=1, n_user_tokens=2000)  # TIGER-paper user tokens
    assert smoke.vocab_size == 1 + 1024 + 2000 + 1
    assert sum(p.numel() for p in smoke.parameters()) == 131_968 + 656_000 + 1999 * 128  # 1999 more user tokens


def test_yaml_documents_every_key():
    with open(YAML) as f:
        lines = [ln for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    assert all("#" in ln for ln in lines), [ln for ln in lines if "#" not in ln]
    with open(YAML) as f:
        keys = yaml.safe_load(f)
    assert keys["beam_size"] == 50 and keys["valid_beam_size"] == 20 and keys["decoding"] == "constrained"
    assert keys["train_neg_sample_args"] is None


def test_encoder_inputs_layout(tiny_data, tmp_path):
    _, model, _ = build(tiny_data, tmp_path)
    tok = model.item_tokens
    seq = torch.tensor([[3, 5, 0, 0], [7, 0, 0, 0]])  # RecBole layout: right-padded, oldest first
    ids, mask = model.encoder_inputs(seq, torch.tensor([2, 1]), torch.tensor([4, 9]))
    user, eos = model.user_token_start, model.eos_token
    expected0 = [user, *tok[3].tolist(), *tok[5].tolist(), eos]
    expected1 = [user, *tok[7].tolist(), eos, 0, 0, 0]
    assert ids.tolist() == [expected0, expected1]  # padded to the batch's longest history (2), not 4
    assert mask.tolist() == [[True] * 8, [True] * 5 + [False] * 3]
    model.n_user_tokens = 0  # APAO layout: no user token
    ids, _ = model.encoder_inputs(seq, torch.tensor([2, 1]))
    assert ids.tolist() == [expected0[1:], expected1[1:]]


def test_loss_is_mean_token_ce_and_padding_invariant(tiny_data, tmp_path):
    _, model, (train, _, _) = build(tiny_data, tmp_path)
    model.eval()
    batch = next(iter(train))
    loss = model.calculate_loss(batch)
    ids, mask = model._interaction_inputs(batch)
    labels = model.target_labels(batch[model.POS_ITEM_ID])
    assert labels.shape[1] == 3 + 1 and (labels[:, -1] == model.eos_token).all()
    hf = hf_t5_of(model)(input_ids=ids, attention_mask=mask, labels=labels).loss  # HF: CE over the 4 labels
    torch.testing.assert_close(loss, hf)
    # padding to MAX_ITEM_LIST_LENGTH instead of the batch maximum gives the same logits
    logits, _ = model.label_logits(batch)
    wide_ids = torch.cat([ids, ids.new_zeros(ids.shape[0], 25)], 1)
    wide = model.decode_logits(model.encode(wide_ids, wide_ids != 0), wide_ids != 0, labels)
    torch.testing.assert_close(logits, wide, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ scoring contract


def test_predict_agrees_with_beam_scores(tiny_data, tmp_path):
    _, model, (_, _, test) = build(tiny_data, tmp_path)
    model.eval()
    interaction = next(iter(test))[0]
    res = model.generate(interaction, beam_size=20)
    B, W = res.items.shape
    rows = interaction[torch.arange(B).repeat_interleave(W)]
    rows.update(Interaction({model.ITEM_ID: res.items.flatten()}))
    with torch.no_grad():
        pred = model.predict(rows).view(B, W)
    torch.testing.assert_close(pred, res.scores, atol=1e-4, rtol=1e-5)


def test_beam_to_scores_toy():
    scores = TIGER.beam_to_scores(torch.tensor([[5, -1, 2, 7]]), n_items=9)[0]
    assert scores[5] == 3 and scores[2] == 2 and scores[7] == 1
    rest = [i for i in range(1, 9) if i not in (5, 2, 7)]
    assert all(-2 < scores[i] <= -1 for i in rest) and scores[0] == -3
    assert len(set(scores.tolist())) == 9  # no ties anywhere
    assert scores.topk(6).indices.tolist()[:3] == [5, 2, 7]


def test_full_sort_ranking_and_metrics_match_hand_computation(tiny_data, tmp_path):
    config, model, (train, _, test) = build(tiny_data, tmp_path)
    trainer = GenRecTrainer(config, model)
    result = trainer.evaluate(test, load_best_model=False)
    hits = {k: [] for k in (5, 10)}
    ndcg = {k: [] for k in (5, 10)}
    model.eval()
    for interaction, _, _, pos_i in test:
        res = model.generate(interaction, beam_size=model.beam_size)
        scores = model.full_sort_predict(interaction)
        # RecBole's top-k is exactly the beam order, and scores never tie
        assert torch.equal(scores.topk(res.items.shape[1], dim=1).indices, res.items)
        assert all(len(set(row.tolist())) == row.numel() for row in scores)
        for items, target in zip(res.items.tolist(), pos_i.tolist()):
            rank = items.index(target) + 1 if target in items else math.inf
            for k in (5, 10):
                hits[k].append(float(rank <= k))
                ndcg[k].append(1 / math.log2(rank + 1) if rank <= k else 0.0)
    for k in (5, 10):
        assert result[f"recall@{k}"] == pytest.approx(sum(hits[k]) / len(hits[k]), abs=1e-4)
        assert result[f"ndcg@{k}"] == pytest.approx(sum(ndcg[k]) / len(ndcg[k]), abs=1e-4)
    assert trainer.last_decode_stats["invalid_rate"] == 0.0


def test_unconstrained_mode_reports_invalid_ids(tiny_data, tmp_path):
    config, model, (_, _, test) = build(tiny_data, tmp_path, decoding="unconstrained")
    trainer = GenRecTrainer(config, model)
    result = trainer.evaluate(test, load_best_model=False)
    stats = trainer.last_decode_stats
    assert stats["users"] == 40 and stats["beams"] == 40 * 20
    assert 0.0 < stats["invalid_rate"] <= 1.0  # untrained: many invalid paths, all reported
    assert set(result) == {"recall@5", "recall@10", "ndcg@5", "ndcg@10"}


def test_beam_smaller_than_topk_is_refused(tiny_data, tmp_path):
    with pytest.raises(ValueError, match=r"beam_size=5 .*max\(topk\)=10"):
        build(tiny_data, tmp_path, beam_size=5)
    with pytest.raises(ValueError, match="valid_beam_size"):
        build(tiny_data, tmp_path, valid_beam_size=8)
    with pytest.raises(ValueError, match="decoding"):
        build(tiny_data, tmp_path, decoding="greedy")


def test_missing_semantic_ids_is_a_clear_error(tiny_data, tmp_path):
    config = Config(model=TIGER, dataset="tiny", config_dict=tiny_config(tiny_data, tmp_path, **SMALL))
    with pytest.raises(ValueError, match="SemanticIDDataset"):
        TIGER(config, SequentialDataset(config))


# ------------------------------------------------------------------ training through RecBole


def fit_and_test(tiny_data, tmp_path):
    config, model, (train, valid, test) = build(tiny_data, tmp_path)
    trainer = GenRecTrainer(config, model)
    trainer.fit(train, valid, saved=True)
    valid_stats = trainer.last_decode_stats
    result = trainer.evaluate(test, load_best_model=True)
    return config, trainer, valid_stats, result, (train, valid, test)


def test_one_epoch_train_eval_checkpoint_reload_and_seed_reproducibility(tiny_data, tmp_path):
    config, trainer, valid_stats, result, (train, _, test) = fit_and_test(tiny_data, tmp_path / "a")
    assert set(result) == {"recall@5", "recall@10", "ndcg@5", "ndcg@10"}
    assert valid_stats["beams"] == 40 * 10  # validation used valid_beam_size (10), test beam_size (20)
    assert trainer.last_decode_stats["beams"] == 40 * 20
    assert trainer.scheduler.last_epoch == len(train)  # one LR-schedule step per optimizer step
    assert os.path.isfile(trainer.saved_model_file)

    # a fresh model + trainer reloads the checkpoint and reproduces the test metrics
    init_seed(123, True)
    fresh = TIGER(config, train._dataset)
    again = GenRecTrainer(config, fresh).evaluate(test, load_best_model=True, model_file=trainer.saved_model_file)
    assert again == result

    # the same seed twice gives identical metrics on CPU
    _, _, _, result2, _ = fit_and_test(tiny_data, tmp_path / "b")
    assert result2 == result


def test_quick_start_end_to_end_with_semantic_id_dataset(tiny_data, tmp_path):
    """run_recbole_genrec -> SemanticIDDataset (sid_file, no encoder) -> TIGER -> GenRecTrainer -> test metrics."""
    import json

    from recbole_genrec.quick_start import run_recbole_genrec

    sid_path = os.path.join(tiny_data, "tiny", "tiny.sid-test.json")
    with open(sid_path, "w") as f:
        json.dump({f"i{i}": [f"<a_{i // 9}>", f"<b_{i // 3 % 3}>", f"<c_{i % 3}>"] for i in range(30)}, f)
    keys = {**SMALL, "beam_size": 20, "valid_beam_size": 10, "warmup_steps": 2, "sid_file": sid_path}
    out = run_recbole_genrec(model="TIGER", dataset="tiny", config_dict=tiny_config(tiny_data, tmp_path, **keys))
    assert set(out["test_result"]) == {"recall@5", "recall@10", "ndcg@5", "ndcg@10"}


# ------------------------------------------------------------------ code table


def test_code_table_moves_with_the_model_and_one_table_per_tokenizer(tiny_data, tmp_path):
    from recbole_genrec.model.sid_table import SemanticIDTable, tables_from_dataset

    _, model, (train, _, _) = build(tiny_data, tmp_path)
    table = model.sid
    assert isinstance(table, SemanticIDTable) and model.item_tokens is table.item_tokens
    assert not any(k.startswith("sid.") for k in model.state_dict())  # codes are data, not checkpointed
    sid = train._dataset.item_sid
    assert torch.equal(table.item_tokens[1:], sid[1:] + table.offsets) and (table.item_tokens[0] == 0).all()
    assert table.trie.lookup(sid[1:]).tolist() == list(range(1, sid.shape[0]))
    model.to("meta")  # every tensor of the table moves, the trie's included
    assert {t.device.type for t in (table.offsets, table.item_tokens, table.prefix_id, table.n_prefixes)} == {"meta"}
    assert {c.device.type for c in table.trie.children + table.trie.child_codes} == {"meta"}

    class TwoTokenizers:
        sid_codebook_sizes = [4, 4, 4]
        item_sids = torch.stack([sid, torch.cat([sid[:1], sid[1:].flip(0)])])

    tables = tables_from_dataset(TwoTokenizers())
    assert len(tables) == 2 and torch.equal(tables[1].item_tokens[1:], sid[1:].flip(0) + tables[1].offsets)
    items = torch.tensor([1, 2])
    assert model.target_labels(items, tables[1])[:, :3].tolist() == tables[1].item_tokens[items].tolist()


def test_cpu_preset_lives_in_one_yaml_that_the_ml100k_defaults_follow():
    model_dir = os.path.dirname(YAML)
    with open(os.path.join(model_dir, "TIGER-cpu.yaml")) as f:
        preset = yaml.safe_load(f)
    with open(os.path.join(model_dir, "ml-100k", "TIGER.yaml")) as f:
        ml100k = yaml.safe_load(f)
    assert set(preset) == {"n_layers", "d_model", "n_heads", "d_kv", "d_ff"}
    assert {k: ml100k[k] for k in preset} == preset
    assert not hasattr(TIGER, "CPU_PRESET")
