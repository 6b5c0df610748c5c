"""Training: it learns, it resumes exactly, it refuses what would lose work, it stops on NaN."""

import json

import numpy as np
import pytest
import torch

import fame_core
import fame_core.training
from fame_core.errors import FameError
from fame_core.evaluate import metrics_from_ranks
from fame_core.models import model_config
from fame_core.training import TrainConfig, epoch_batches, train, training_pairs


def cfg(kind="fame", **kw):
    base = dict(d=16, n_heads=2, max_len=10, dropout=0.1, attn_dropout=0.1, **({"n_experts": 2} if kind == "fame" else {}))
    return model_config(kind, **{**base, **kw})


def test_training_pairs_predict_the_next_item_of_the_training_part(tiny_world):
    pairs = training_pairs(tiny_world, max_len=10)
    seq = tiny_world.sequences[0][:-2]
    inp, tgt = pairs[0]
    assert inp.tolist() == seq[:-1][-10:].tolist() and tgt.tolist() == seq[1:][-10:].tolist()
    batches = epoch_batches(pairs, 16, np.random.default_rng(0))
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(pairs)))
    spread = [np.ptp([len(pairs[i][0]) for i in b]) for b in batches]
    assert np.median(spread) <= 2          # similar lengths share a batch


def test_resume_after_an_interruption_repeats_the_uninterrupted_run(tmp_path, tiny_world):
    tc = TrainConfig(epochs=4, patience=10, batch_size=32, seed=7)
    full = train(tiny_world, cfg(), tc, tmp_path / "full", progress=False)
    part = train(tiny_world, cfg(), tc, tmp_path / "part", progress=False, stop_after=2)
    assert part["status"] == "interrupted" and (tmp_path / "part" / "train_state.pt").exists()
    with pytest.raises(FameError, match="already holds an unfinished run"):
        train(tiny_world, cfg(), tc, tmp_path / "part", progress=False)
    resumed = train(tiny_world, cfg(), tc, tmp_path / "part", resume=True, progress=False)
    log = lambda d: [(m["epoch"], m["loss"], m["valid"]) for m in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())]
    assert log(tmp_path / "full") == log(tmp_path / "part") and len(log(tmp_path / "full")) == 4
    assert resumed["test"] == full["test"] and not (tmp_path / "part" / "train_state.pt").exists()
    with pytest.raises(FameError, match="has finished; nothing to resume"):
        train(tiny_world, cfg(), tc, tmp_path / "part", resume=True, progress=False)


def test_resume_refuses_other_settings_or_data(tmp_path, tiny_world):
    tc = TrainConfig(epochs=3, batch_size=64)
    train(tiny_world, cfg(), tc, tmp_path / "run", progress=False, stop_after=1)
    with pytest.raises(FameError, match="other model settings"):
        train(tiny_world, cfg(n_experts=3), tc, tmp_path / "run", resume=True, progress=False)
    other = fame_core.load_dataset("synthetic:seed=9,n_users=150,n_items=60,genre=4,actor=6,min_len=4,max_len=12")
    with pytest.raises(FameError, match="was trained on data set"):
        train(other, cfg(), tc, tmp_path / "run", resume=True, progress=False)
    with pytest.raises(FameError, match="no run to resume"):
        train(tiny_world, cfg(), tc, tmp_path / "new", resume=True, progress=False)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(tmp_path, tiny_world, monkeypatch):
    out = tmp_path / "nan"
    tc = TrainConfig(epochs=3, batch_size=64)
    train(tiny_world, cfg(), tc, out, progress=False, stop_after=1)
    real = fame_core.training.loss_on_batch
    monkeypatch.setattr(fame_core.training, "loss_on_batch", lambda *a: real(*a) * float("nan"))
    with pytest.raises(FameError, match=r"loss became nan in epoch 2, step 1; the last good checkpoint is kept in .*--resume"):
        train(tiny_world, cfg(), tc, out, resume=True, progress=False)
    assert (out / "train_state.pt").exists() and len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_training_learns_the_planted_world(tmp_path):
    data = fame_core.load_dataset("synthetic:seed=1,n_users=400,n_items=120,genre=6,actor=12,min_preferred=1,max_preferred=2")
    counts = np.bincount(np.concatenate([s[:-2] for s in data.sequences]), minlength=data.n_items + 1).astype(float)
    ranks = []
    for s in data.sequences:   # most-popular baseline, history masked like the model's ranking
        c = counts.copy()
        c[0] = c[np.unique(s[:-1])] = -np.inf
        ranks.append((c > c[s[-1]]).sum() + (c == c[s[-1]]).sum() - 1)
    popular = metrics_from_ranks(ranks)["HR@10"]
    res = train(data, cfg(dropout=0.2, attn_dropout=0.2), TrainConfig(epochs=20, batch_size=64, lr=5e-3),
                tmp_path / "learn", progress=False)
    assert res["test"]["HR@10"] > 3 * popular        # measured: 0.17 against 0.04
    log = [json.loads(x) for x in (tmp_path / "learn" / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < log[0]["loss"] - 0.2


def test_fame_built_from_a_sasrec_checkpoint(tmp_path, tiny_world):
    tc = TrainConfig(epochs=2, batch_size=64)
    train(tiny_world, cfg("sasrec"), tc, tmp_path / "sas", progress=False)
    res = train(tiny_world, cfg(), TrainConfig(epochs=1, batch_size=64, init_from=str(tmp_path / "sas"), warm=True),
                tmp_path / "fame", progress=False)
    assert res["status"] == "finished"
    conf = json.loads((tmp_path / "fame" / "config.json").read_text())
    assert conf["train"]["init_from"].endswith("sas") and conf["train"]["warm"] is True
    with pytest.raises(FameError, match="takes a SASRec checkpoint"):
        train(tiny_world, cfg(), TrainConfig(epochs=1, init_from=str(tmp_path / "fame")), tmp_path / "x", progress=False)


def test_sasrec_continued_starts_from_the_base_weights(tmp_path, tiny_world):
    """The equal-budget control: SASRec trained on from its own checkpoint, fresh optimizer."""
    from fame_core.checkpoint import load_checkpoint
    from fame_core.models import sasrec_continued

    train(tiny_world, cfg("sasrec"), TrainConfig(epochs=2, batch_size=64), tmp_path / "sas", progress=False)
    base = load_checkpoint(tmp_path / "sas")
    copy = sasrec_continued(base, cfg("sasrec", n_items=tiny_world.n_items))
    seq = torch.as_tensor(tiny_world.sequences[0][:-1][-20:])[None]
    base.eval(), copy.eval()
    assert torch.equal(base(seq).u, copy(seq).u)
    with pytest.raises(FameError, match="n_layers=2 but SASRec was asked for n_layers=1"):
        sasrec_continued(base, cfg("sasrec", n_items=tiny_world.n_items, n_layers=1))
    res = train(tiny_world, cfg("sasrec"), TrainConfig(epochs=1, batch_size=64, init_from=str(tmp_path / "sas")),
                tmp_path / "cont", progress=False)
    assert res["status"] == "finished"
    moved = load_checkpoint(tmp_path / "cont")
    assert not torch.equal(moved(seq).u, base(seq).u)      # it did train on

    # the restart control: the last block drawn afresh except W_K and W_V; everything else is the base's
    restarted = sasrec_continued(base, cfg("sasrec", n_items=tiny_world.n_items), reinit_last=True, seed=3)
    mine, theirs = restarted.state_dict(), base.state_dict()
    last = f"blocks.{len(base.blocks) - 1}."
    kept = [k for k in theirs if not k.startswith(last) or k.startswith((last + "W_K.", last + "W_V."))]
    drawn = [k for k in theirs if k not in kept]
    assert all(torch.equal(mine[k], theirs[k]) for k in kept)
    assert {k.split(".")[2] for k in drawn} == {"W_Q", "W_O", "ffn", "ln_attn", "ln_ffn"}
    assert all(not torch.equal(mine[k], theirs[k]) for k in drawn if not k.startswith(last + "ln_"))
    again = sasrec_continued(base, cfg("sasrec", n_items=tiny_world.n_items), reinit_last=True, seed=3)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in mine.items())   # the seed fixes the draw
    res = train(tiny_world, cfg("sasrec"), TrainConfig(epochs=1, batch_size=64, init_from=str(tmp_path / "sas"),
                                                       reinit_last=True), tmp_path / "restart", progress=False)
    assert json.loads((tmp_path / "restart" / "config.json").read_text())["train"]["reinit_last"] is True
    with pytest.raises(FameError, match="--reinit-last restarts the last block"):
        train(tiny_world, cfg(), TrainConfig(epochs=1, init_from=str(tmp_path / "sas"), reinit_last=True),
              tmp_path / "y", progress=False)


@pytest.mark.fast
def test_bf16_autocast_trains_under_autocast_and_is_recorded(tmp_path, monkeypatch, tiny_world):
    """--amp bf16: the step's forward and loss run under torch.autocast (bfloat16), the run still
    learns, and the setting is recorded; without it nothing is autocast."""
    import fame_core.training as training

    data = tiny_world
    seen, real = [], training.loss_on_batch

    def spy(*a, **k):
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return real(*a, **k)

    monkeypatch.setattr(training, "loss_on_batch", spy)
    cfg = fame_core.models.SASRecConfig(n_items=data.n_items, d=16, n_heads=2, max_len=10, dropout=0.1,
                                        attn_dropout=0.1)
    tc = dict(epochs=4, batch_size=32, seed=1, lr=1e-2, device="cpu")
    result = training.train(data, cfg, training.TrainConfig(amp="bf16", **tc), tmp_path / "bf16", progress=False)
    assert seen and all(seen)
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["train"]["amp"] == "bf16"
    seen.clear()
    full = training.train(data, cfg, training.TrainConfig(**tc), tmp_path / "off", progress=False)
    assert seen and not any(seen)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "bf16" / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0]
    assert abs(result["valid"]["NDCG@20"] - full["valid"]["NDCG@20"]) < 0.03     # bfloat16 rounding, same run
