"""The specialisation badges both pages show: are this checkpoint's heads, gate and experts facets?

Presentation only: every verdict comes from fame_core.verdicts (issue 41), the same numbers the
`facets --json` command prints. A badge is green only when its verdict `passed` (the model beats the
best simple baseline with the 95 % paired bootstrap interval above zero), and names that baseline
with the margin and its interval; orange when it failed; gray when it could not be computed (with
the reason) or was not computed yet. The heads' per-facet specialisation (fame_core.facets) is shown
beside them in gray: a description, not a verdict.
"""

import session

CHECKS_HELP = (
    "Each claim is checked against the strongest simple rule that needs no training, on test users, with a 95 % "
    "paired bootstrap interval of the per-user difference and an exact test (docs/verdicts.md). Gate: is its largest "
    "head the one that ranks the target better, more often than always one head, the history's majority head, the "
    "last item's head, or a logistic regression on history summaries fitted on validation users? Router: does the "
    "experts' choice tell the next item's facet value (or head cluster) better than random routers with the same "
    "loads and than the last item's or the history's value? Heads: does the best head's linear probe separate a "
    "facet better than the other heads, a random projection of the same size and shuffled labels? Attention: does "
    "masking items in attention order lower the score more (AOPC) than random orders, most recent first and "
    "integrated gradients? A badge is green only when the model beats the best of these with the interval above 0.")


def _verdicts(model, path: str, data_path: str | None, data):
    from fame_core import verdicts

    return verdicts.verdicts(model, data)


def verdict_badge(label: str, v: dict) -> str:
    """One markdown badge for a verdict (fame_core.verdicts' JSON)."""
    if "reason" in v:
        return f":gray-badge[{label}: not checked · {v['reason']}]"
    lo, hi = v["ci95"]
    word = "passed" if v["passed"] else "failed"
    colour = "green" if v["passed"] else "orange"
    return (f":{colour}-badge[{label} {word}: {v['model']:.3f} vs {v['best_baseline']} "
            f"{v['model'] - v['margin']:.3f} · margin {v['margin']:+.3f} (95 % CI {lo:+.3f} to {hi:+.3f})]")


def gate_badge(model, path: str, data_path: str | None, data) -> str:
    """One markdown badge for next to the gate: its verdict, read from disk only (the verdicts are
    computed when the checks are switched on, at the bottom of the page)."""
    from fame_core import verdicts

    if "gate" not in model.capabilities:
        return ":gray-badge[no gate: this model sums its heads]"
    if data is None:
        return ":gray-badge[gate not checked: needs the data set]"
    if not verdicts.is_cached(model, data):
        return ":gray-badge[gate not checked yet: switch on the checks at the bottom of the page]"
    return verdict_badge("gate", _verdicts(model, path, data_path, data)["gate"])


def facet_badges(model, path: str, data_path: str | None, facet: str) -> list[str]:
    """Markdown badges: each head's specialisation (gray, descriptive), then the verdicts of heads,
    gate, router and attention (green only when passed)."""
    from fame_core.facets import specialisation   # scikit-learn: imported when a check is asked for

    _, data = session.open_checkpoint(path, data_path)
    badges = []
    if data is not None and data.facets:
        spec = specialisation(session.alignment(path, data_path))
        for h in range(model.config.n_heads):
            s = spec[f"head {h}"]
            badges.append(f":gray-badge[head {h} ≈ {s['facet']} · probe gap +{s['gap']:.2f}]" if s["facet"]
                          else f":gray-badge[head {h}: no facet · best gap {s['gap']:+.2f}]")
    if data is None:
        return badges + [":gray-badge[verdicts not computed: needs the data set]"]
    v = _verdicts(model, path, data_path, data)
    labels = {"heads": "heads ≈ facets", "gate": "gate picks the better head", "router": "experts → next item",
              "attention": "attention is faithful"}
    return badges + [verdict_badge(labels[c], v[c]) for c in ("heads", "gate", "router", "attention")]
