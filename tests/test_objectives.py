"""The optional facet objectives: each term's value on hand-made inputs, and training with them."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

import fame_core
from fame_core.objectives import FacetObjectives, FacetProbes, extra_loss
from fame_core.models import FAMEConfig, ModelOutput
from fame_core.training import TrainConfig, train
from tests.conftest import make_model


def details(gates, logits=None):
    B, H = gates.shape
    d = ModelOutput(u=torch.zeros(B, 1, 4), heads=torch.zeros(B, 1, H, 4), attention=torch.zeros(B, H, 1, 1, 1),
                    gates=gates[:, None, :],
                    router_logits=None if logits is None else logits[:, :, None, :])  # (B, H, T=1, N)
    return d, torch.ones(B, 1, dtype=torch.bool)


@pytest.mark.fast
def test_gate_term_rewards_decisive_and_balanced_gates():
    obj = FacetObjectives(gate_decisive=1.0)
    uniform, where = details(torch.full((4, 2), 0.5))
    decisive, _ = details(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]))
    collapsed, _ = details(torch.tensor([[1.0, 0.0]] * 4))
    value = lambda d: extra_loss(None, d, where, obj, None).item()
    assert value(uniform) == pytest.approx(0.0, abs=1e-6)
    assert value(decisive) == pytest.approx(-math.log(2), abs=1e-4)   # decisive per user, both heads used
    assert value(collapsed) == pytest.approx(0.0, abs=1e-4)           # decisive but one head only: no reward


@pytest.mark.fast
def test_router_term_rewards_decisive_and_balanced_routing():
    obj = FacetObjectives(router_decisive=1.0)
    hard = torch.eye(2)[[0, 1, 0, 1]].reshape(4, 1, 2) * 30               # each position picks one expert
    d_hard, where = details(torch.ones(4, 1), hard)
    d_soft, _ = details(torch.ones(4, 1), torch.zeros(4, 1, 2))
    assert extra_loss(None, d_hard, where, obj, None).item() == pytest.approx(-math.log(2), abs=1e-3)
    assert extra_loss(None, d_soft, where, obj, None).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.fast
def test_load_balance_and_z_loss():
    obj = FacetObjectives(load_balance=1.0)
    balanced = torch.eye(4)[None].repeat(1, 1, 1) * 20                # 4 positions, each to its own expert
    balanced = balanced.reshape(4, 1, 4)
    collapsed = torch.zeros(4, 1, 4)
    collapsed[..., 0] = 20
    d_b, where = details(torch.ones(4, 1), balanced)
    d_c, _ = details(torch.ones(4, 1), collapsed)
    assert extra_loss(None, d_b, where, obj, None).item() == pytest.approx(1.0, abs=1e-3)
    assert extra_loss(None, d_c, where, obj, None).item() == pytest.approx(4.0, abs=1e-3)
    z = extra_loss(None, d_c, where, FacetObjectives(router_z=1.0), None).item()
    assert z == pytest.approx(20.0 ** 2, rel=1e-3)


@pytest.mark.fast
def test_head_diversity_is_low_for_unrelated_heads_and_high_for_copies():
    model = make_model("fame", n_items=400)
    with torch.no_grad():
        model.W_f[1] = model.W_f[0]
    d, where = details(torch.full((2, 2), 0.5))
    copies = extra_loss(model, d, where, FacetObjectives(head_diversity=1.0), None).item()
    torch.manual_seed(1)
    with torch.no_grad():
        model.W_f[1] = torch.randn_like(model.W_f[1])
    unrelated = extra_loss(model, d, where, FacetObjectives(head_diversity=1.0), None).item()
    # copies: every dimension of head 1 correlates fully with one of head 0 (8 of 64 pairs)
    assert copies == pytest.approx(1 / 8, abs=0.08) and copies > 2.5 * unrelated


def test_facet_probes_learn_and_resume(tmp_path, tiny_world):
    obj = FacetObjectives(facet_heads="genre,actor", facet_weight=1.0, gate_decisive=0.1, load_balance=0.01,
                          router_z=0.001, head_diversity=0.5)
    cfg = FAMEConfig(d=16, n_heads=2, n_experts=2, max_len=10)
    tc = TrainConfig(epochs=3, batch_size=64, objectives=obj)
    full = train(tiny_world, cfg, tc, tmp_path / "full", progress=False)
    train(tiny_world, cfg, tc, tmp_path / "part", progress=False, stop_after=1)
    resumed = train(tiny_world, cfg, tc, tmp_path / "part", resume=True, progress=False)
    assert resumed["test"] == full["test"]
    saved = json.loads((tmp_path / "full" / "config.json").read_text())["train"]["objectives"]
    assert saved["facet_heads"] == ["genre", "actor"] and saved["gate_decisive"] == 0.1
    assert FacetObjectives(facet_heads="genre,actor").facet_heads == ("genre", "actor")  # 0.1.0 records
    with pytest.raises(fame_core.FameError, match="names 3 facets but the model has 2 heads"):
        FacetProbes(tiny_world, ["genre", "actor", "genre"], 8, 2)


@pytest.mark.fast
def test_leakage_is_high_when_a_head_encodes_the_other_facet_and_low_otherwise(tiny_world):
    from fame_core.labels import facet_labels

    probes = FacetProbes(tiny_world, ["genre", "actor"], 4, 2)
    genre, _ = facet_labels(tiny_world, "genre")
    actor, _ = facet_labels(tiny_world, "actor")
    g = torch.nn.functional.one_hot(torch.as_tensor(genre).clamp_min(0), 4).float()
    a = torch.nn.functional.one_hot(torch.as_tensor(actor).clamp_min(0) % 4, 4).float()
    clean = torch.stack([g, a])        # head 0 genre only, head 1 actor only
    swapped = torch.stack([a, g])      # each head carries the other's facet
    assert probes.leakage(clean).item() < 0.1 and probes.leakage(swapped).item() > 0.8


# ---- gates and routers that carry information (issue 16) ------------------------------------------

def test_head_log_likelihoods_match_each_heads_own_softmax():
    from fame_core.objectives import head_log_likelihoods

    torch.manual_seed(0)
    model = make_model("fame", n_items=30)
    F_heads = torch.randn(7, model.config.n_heads, model.config.d_head)
    targets = torch.randint(1, 31, (7,))
    got = head_log_likelihoods(model, F_heads, targets, chunk=3)
    subs = model.item_sub_embeddings()
    for m in range(7):
        for h in range(model.config.n_heads):
            scores = subs[h, 1:] @ F_heads[m, h]                         # P^(h)(v) over items 1..n
            want = torch.log_softmax(scores, 0)[targets[m] - 1]
            assert got[m, h].item() == pytest.approx(want.item(), abs=1e-5)


def test_gate_competence_teaches_the_gate_only_and_is_zero_at_the_target():
    from fame_core.objectives import competence_targets, head_log_likelihoods

    torch.manual_seed(1)
    model = make_model("fame", n_items=30)
    seq = torch.randint(1, 31, (4, 6))
    targets = torch.randint(1, 31, (4, 6))
    det = model(seq)
    where = targets > 0
    obj = FacetObjectives(gate_competence=1.0)
    loss = extra_loss(model, det, where, obj, None, targets)
    model.zero_grad()
    loss.backward()
    assert model.W_g.weight.grad.abs().sum() > 0                   # the gate learns ...
    assert model.W_f.grad is None or model.W_f.grad.abs().sum() == 0   # ... the heads' item maps do not
    # with the gate equal to its target, the KL term is 0
    with torch.no_grad():
        det = model(seq)
        c = competence_targets(head_log_likelihoods(model, det.heads[where], targets[where]))
        det.gates = torch.zeros_like(det.gates).masked_scatter(where[..., None].expand_as(det.gates), c)
        assert extra_loss(model, det, where, obj, None, targets).item() == pytest.approx(0.0, abs=1e-5)
    # a head that ranks the target far better gets nearly all of the target's weight
    ll = torch.tensor([[-1.0, -9.0], [-8.0, -2.0]])
    assert competence_targets(ll)[:, 0].tolist() == pytest.approx([1 / (1 + math.exp(-8)), 1 / (1 + math.exp(6))], abs=1e-6)
    assert competence_targets(ll, temperature=1e3)[0, 0].item() == pytest.approx(0.5, abs=0.01)


def test_dropped_head_weights_keep_a_head_and_sum_to_one():
    from fame_core.objectives import dropped_head_weights

    g = torch.softmax(torch.randn(4000, 3), -1)
    gen = torch.Generator().manual_seed(0)
    w = dropped_head_weights(g, 0.5, generator=gen)
    assert torch.allclose(w.sum(-1), torch.ones(4000), atol=1e-6)
    assert ((w > 0).sum(-1) >= 1).all()
    dropped = (w == 0).float().mean().item()
    assert 0.4 < dropped < 0.5            # 0.5 per head, less the rescued all-dropped positions (1/8 of them)
    assert torch.allclose(dropped_head_weights(g, 0.0), g)


def test_expert_diversity_is_one_for_copies_and_small_for_random_queries():
    model = make_model("fame", n_items=30)
    obj = FacetObjectives(expert_diversity=1.0)
    det, where = details(torch.full((2, model.config.n_heads), 0.5))
    random_value = extra_loss(model, det, where, obj, None).item()
    with torch.no_grad():
        model.moe.W_Q[:] = model.moe.W_Q[:, :1]
    assert extra_loss(model, det, where, obj, None).item() == pytest.approx(1.0, abs=1e-5)
    assert random_value < 0.05


def test_new_objective_options_are_checked_and_recorded(tmp_path, tiny_world):
    from fame_core.errors import FameError

    for bad in (dict(head_dropout=1.0), dict(gate_competence=-1), dict(competence_temperature=0),
                dict(expert_diversity=float("nan"))):
        with pytest.raises(FameError, match="must be|must lie|from"):
            FacetObjectives(**bad)
    obj = FacetObjectives(gate_competence=0.5, head_dropout=0.2, expert_diversity=0.1)
    res = train(tiny_world, FAMEConfig(n_items=tiny_world.n_items, d=16, n_heads=2, n_experts=2, max_len=20),
                TrainConfig(epochs=1, batch_size=64, objectives=obj), tmp_path / "run", progress=False)
    assert res["status"] == "finished"
    rec = json.loads((tmp_path / "run" / "config.json").read_text())["train"]["objectives"]
    assert rec["gate_competence"] == 0.5 and rec["head_dropout"] == 0.2 and rec["expert_diversity"] == 0.1


def test_mixture_likelihood_matches_direct_computation_and_trains_heads_and_gate():
    from fame_core.objectives import mixture_nll

    torch.manual_seed(2)
    model = make_model("fame", n_items=25)
    H, dh = model.config.n_heads, model.config.d_head
    F_heads = torch.randn(5, H, dh)
    gates = torch.softmax(torch.randn(5, H), -1)
    targets = torch.randint(1, 26, (5,))
    subs = model.item_sub_embeddings()
    want = 0.0
    for m in range(5):
        p = sum(gates[m, h] * torch.softmax(subs[h, 1:] @ F_heads[m, h], 0)[targets[m] - 1] for h in range(H))
        want += -torch.log(p).item() / 5
    assert mixture_nll(model, F_heads, gates, targets).item() == pytest.approx(want, abs=1e-5)
    seq, tgt = torch.randint(1, 26, (3, 6)), torch.randint(1, 26, (3, 6))
    det = model(seq)
    loss = extra_loss(model, det, tgt > 0, FacetObjectives(mixture_likelihood=1.0), None, tgt)
    model.zero_grad()
    loss.backward()
    assert model.W_g.weight.grad.abs().sum() > 0 and model.W_f.grad.abs().sum() > 0


@pytest.mark.fast
def test_router_cluster_term_is_the_routers_cross_entropy_against_the_next_items_cluster():
    from fame_core.objectives import ItemClusters, router_cluster_loss

    torch.manual_seed(3)
    logits = torch.randn(6, 2, 3)                           # (M, H, N)
    labels = torch.tensor([[-1, 0, 1, 2, 0], [-1, 2, 2, 1, 0]])   # (H, n+1): items 1..4
    targets = torch.tensor([1, 2, 3, 4, 1, 3])
    want = sum(-torch.log_softmax(logits[m, h], 0)[labels[h, targets[m]]] for m in range(6) for h in range(2)) / 12
    assert router_cluster_loss(logits, labels, targets).item() == pytest.approx(want.item(), rel=1e-6)
    model = make_model("fame", n_items=30)
    clusters = ItemClusters(model.config.n_heads, model.config.n_experts, model.config.d_head)
    first = clusters.refresh(model, seed=0).clone()
    assert first.shape == (model.config.n_heads, 31) and (first[:, 0] == -1).all()
    assert set(first[:, 1:].unique().tolist()) <= set(range(model.config.n_experts))
    from sklearn.cluster import KMeans       # the first refresh: every head from its own k-means++ start
    for h, X in enumerate(model.item_sub_embeddings()[:, 1:].detach().numpy()):
        direct = KMeans(model.config.n_experts, init="k-means++", n_init=1, max_iter=10, random_state=0).fit(X)
        assert (first[h, 1:].numpy() == direct.predict(X)).all()
    assert torch.equal(clusters.refresh(model, seed=99), first)     # warm-started: same items, same clusters
    subs = model.item_sub_embeddings()[:, 1:].detach()             # each item in its nearest centroid's cluster
    assert torch.equal(first[:, 1:], torch.cdist(subs, clusters.centroids).argmin(-1))
    with pytest.raises(ValueError, match="ItemClusters refreshed"):
        seq = torch.randint(1, 31, (2, 5))
        extra_loss(model, model(seq), seq > 0, FacetObjectives(router_clusters=1.0), None, seq)


@pytest.mark.fast
def test_head_cluster_term_is_the_assigned_heads_likelihood_and_gate():
    from fame_core.objectives import assigned_nll

    torch.manual_seed(4)
    model = make_model("fame", n_items=25)
    subs = model.item_sub_embeddings().detach()                        # (H, n+1, d')
    M, H = 6, model.config.n_heads
    F_heads = torch.randn(M, H, model.config.d_head, requires_grad=True)
    gates = torch.softmax(torch.randn(M, H), -1)
    targets, assign = torch.randint(1, 26, (M,)), torch.tensor([0, 1, 1, 0, 1, 0])
    want = sum(-math.log(gates[m, assign[m]]) - torch.log_softmax(subs[assign[m], 1:] @ F_heads[m, assign[m]],
               0)[targets[m] - 1].item() for m in range(M)) / M
    value = assigned_nll(model, F_heads, gates, targets, assign)
    assert value.item() == pytest.approx(want, rel=1e-5)
    value.backward()            # only the assigned head of a position learns from it
    other = F.one_hot(1 - assign, H).bool()
    assert (F_heads.grad[other] == 0).all() and (F_heads.grad[~other].abs().sum(-1) > 0).all()


@pytest.mark.fast
def test_head_clusters_split_the_items_by_their_target_counts():
    from fame_core.objectives import ItemClusters

    torch.manual_seed(5)
    model = make_model("fame", n_items=40)
    H = model.config.n_heads
    counts = torch.ones(41, dtype=torch.float64)
    counts[1] = 1e6                          # one item as heavy as all others: k-means must give it a centroid
    clusters = ItemClusters(H, model.config.n_experts, model.config.d_head, routers=False, heads=True,
                            item_weights=counts)
    labels = clusters.refresh(model, seed=0).clone()
    assert labels.shape == (41,) and labels[0] == -1 and set(labels[1:].tolist()) == set(range(H))
    full = model.item_sub_embeddings()[:, 1:].detach().permute(1, 0, 2).reshape(40, -1)
    assert torch.equal(labels[1:], torch.cdist(full, clusters.head_centroids).argmin(-1))   # nearest centroid
    assert torch.allclose(clusters.head_centroids[labels[1]], full[0], atol=1e-3)         # the heavy item's
    assert "centroids" not in clusters.state_dict()      # no router clusters asked for: none in the resume state
    with pytest.raises(ValueError, match="heads=True"):
        seq = torch.randint(1, 41, (2, 5))
        extra_loss(model, model(seq), seq > 0, FacetObjectives(head_clusters=1.0), None, seq)


@pytest.mark.fast
@pytest.mark.parametrize("option, saved, absent", [("router_clusters", "centroids", "head_centroids"),
                                                   ("head_clusters", "head_centroids", "centroids")])
def test_training_with_clusters_resumes_to_the_same_model(tmp_path, tiny_world, option, saved, absent):
    obj = FacetObjectives(**{option: 1.0})
    cfg = FAMEConfig(n_items=tiny_world.n_items, d=16, n_heads=2, n_experts=3, max_len=10)
    tc = TrainConfig(epochs=3, batch_size=64, objectives=obj)
    full = train(tiny_world, cfg, tc, tmp_path / "full", progress=False)
    train(tiny_world, cfg, tc, tmp_path / "part", progress=False, stop_after=1)
    state = torch.load(tmp_path / "part" / "train_state.pt", weights_only=True)
    assert saved in state["clusters"] and absent not in state["clusters"]   # only the clusters asked for
    resumed = train(tiny_world, cfg, tc, tmp_path / "part", resume=True, progress=False)
    assert resumed["test"] == full["test"]
    assert json.loads((tmp_path / "full" / "config.json").read_text())["train"]["objectives"][option] == 1.0


@pytest.mark.fast
def test_head_clusters_epochs_apply_the_hard_assignment_in_the_first_epochs_only(tmp_path, tiny_world, monkeypatch):
    import fame_core.objectives as objectives

    calls = {"loss": 0, "refresh": 0}
    nll, refresh = objectives.assigned_nll, objectives.ItemClusters.refresh

    def counting_nll(*args, **kwargs):
        calls["loss"] += 1
        return nll(*args, **kwargs)

    def counting_refresh(self, *args, **kwargs):
        calls["refresh"] += 1
        return refresh(self, *args, **kwargs)

    monkeypatch.setattr(objectives, "assigned_nll", counting_nll)
    monkeypatch.setattr(objectives.ItemClusters, "refresh", counting_refresh)
    cfg = FAMEConfig(n_items=tiny_world.n_items, d=16, n_heads=2, n_experts=3, max_len=10)
    seen = {}
    for phase in (0, 1):
        calls.update(loss=0, refresh=0)
        obj = FacetObjectives(head_clusters=1.0, head_clusters_epochs=phase, mixture_likelihood=1.0)
        train(tiny_world, cfg, TrainConfig(epochs=3, patience=10, batch_size=64, objectives=obj),
              tmp_path / f"phase{phase}", progress=False)
        seen[phase] = dict(calls)
    assert seen[0]["loss"] > 0 and seen[0]["loss"] == 3 * seen[1]["loss"]   # every epoch, or the first only
    assert (seen[0]["refresh"], seen[1]["refresh"]) == (3, 1)               # no k-means once it is off
    recorded = json.loads((tmp_path / "phase1" / "config.json").read_text())["train"]["objectives"]
    assert recorded["head_clusters_epochs"] == 1 and recorded["head_clusters"] == 1.0


@pytest.mark.fast
@pytest.mark.parametrize("stop_after", [1, 2])
def test_head_clusters_epochs_resume_across_the_cutoff_to_the_same_model(tmp_path, tiny_world, stop_after):
    obj = FacetObjectives(head_clusters=1.0, head_clusters_epochs=1, mixture_likelihood=1.0)
    cfg = FAMEConfig(n_items=tiny_world.n_items, d=16, n_heads=2, n_experts=3, max_len=10)
    tc = TrainConfig(epochs=3, batch_size=64, patience=10, objectives=obj)
    full = train(tiny_world, cfg, tc, tmp_path / "full", progress=False)
    train(tiny_world, cfg, tc, tmp_path / "part", progress=False, stop_after=stop_after)
    assert train(tiny_world, cfg, tc, tmp_path / "part", resume=True, progress=False)["test"] == full["test"]


@pytest.mark.fast
def test_a_run_recorded_before_an_objective_existed_resumes_with_its_default(tmp_path, tiny_world):
    """An objectives field added to the code after a run was recorded takes its default on resume
    (as top-level training settings do), instead of reading as a changed setting."""
    obj = FacetObjectives(head_clusters=1.0, mixture_likelihood=1.0)
    cfg = FAMEConfig(n_items=tiny_world.n_items, d=16, n_heads=2, n_experts=3, max_len=10)
    tc = TrainConfig(epochs=2, batch_size=64, patience=10, objectives=obj)
    train(tiny_world, cfg, tc, tmp_path / "run", progress=False, stop_after=1)
    path = tmp_path / "run" / "config.json"
    config = json.loads(path.read_text())
    del config["train"]["objectives"]["head_clusters_epochs"]      # as code before the option recorded it
    path.write_text(json.dumps(config))
    train(tiny_world, cfg, tc, tmp_path / "run", resume=True, progress=False)
    assert json.loads(path.read_text())["status"] == "finished"
    changed = TrainConfig(epochs=2, batch_size=64, patience=10,
                          objectives=FacetObjectives(head_clusters=2.0, mixture_likelihood=1.0))
    train(tiny_world, cfg, tc, tmp_path / "run2", progress=False, stop_after=1)
    with pytest.raises(fame_core.FameError, match="head_clusters 1.0 -> 2.0"):   # a real change is still refused
        train(tiny_world, cfg, changed, tmp_path / "run2", resume=True, progress=False)


def test_every_gate_router_preset_splits_into_a_model_setting_and_objectives():
    from fame_core.objectives import GATE_ROUTER_PRESETS, split_preset

    for name, preset in GATE_ROUTER_PRESETS.items():
        model_opts, objectives = split_preset(preset)
        assert {**model_opts, **objectives} == preset, name
        cfg = FAMEConfig(n_items=30, d=16, n_heads=2, n_experts=4, **model_opts)    # both are accepted
        FacetObjectives(**objectives)
        assert cfg.recent_window == preset.get("recent_window", 0)
        assert cfg.head_cluster_bias == preset.get("head_cluster_bias", 0.0)
    assert split_preset(GATE_ROUTER_PRESETS["recent head"]) == ({"recent_window": 2}, {})
