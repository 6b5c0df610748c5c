"""The specialisation badges both pages show: are this checkpoint's heads, gate and experts facets?

Presentation only: the verdicts come from fame_core.facets (specialisation, planted_checks,
real_checks) through the cached functions of session.
"""

import session

CHECKS_HELP = (
    "A head 'is' a facet only if a linear probe on its item sub-embeddings predicts that facet at least "
    "0.05 better than on every other head, and better than a random projection of the full embedding to the "
    "same size; otherwise its lists are not evidence of a facet. In worlds with planted facets, the gate passes "
    "if its largest head names the user's dominant facet 0.2 above the majority rate, and the experts if their "
    "argmax carries more information about the preferred value than random routers (by 3 standard deviations). "
    "Without planted truth, the gate passes if its largest head is the one that ranks the user's target better, "
    "0.05 more often than always trusting one head (beside it: the same reading over the users whose better head "
    "shows the target in its top 20, where the choice of head changes a list), and the experts if their argmax "
    "tells the next item's facet value better than random routers. See docs/facets.md.")


def _colour(ok: bool) -> str:
    return "green" if ok else "orange"


def gate_badge(model, path: str, data_path: str | None, data) -> str:
    """One markdown badge for next to the gate: did this checkpoint's gate pass its check? Read
    from the results on disk only (the checks run when asked for, at the bottom of the page)."""
    if not model.config.model == "fame":
        return ":gray-badge[no gate: this model sums its heads]"
    if data is None:
        return ":gray-badge[gate not checked: needs the data set]"
    planted = data.truth is not None
    if not planted and not data.facets:
        return ":gray-badge[gate not checked: the data set has no item facet]"
    facet = None if planted else next(iter(data.facets))
    if not session.checks_cached(path, data_path, facet or "", gate_only=True):
        return ":gray-badge[gate not checked yet: switch on the checks at the bottom of the page]"
    checks = session.planted_checks(path, data_path) if planted else session.real_checks(path, data_path, facet)
    verdict = "gate check passed" if checks["gate_passes"] else "gate check failed"
    what = (f"largest gate names the planted facet {checks['gate_accuracy']:.2f} vs majority "
            f"{checks['majority_rate']:.2f}") if planted else \
        (f"larger-gate head ranks the target better for {checks['gate_accuracy']:.3f} of users vs "
         f"{checks['majority_rate']:.3f} trusting one head always" +
         (f"; where it changes a top {checks['gate_top']}: {checks['gate_accuracy_top']:.3f} vs "
          f"{checks['majority_rate_top']:.3f}" if checks.get("gate_accuracy_top") is not None else ""))
    return f":{_colour(checks['gate_passes'])}-badge[{verdict}: {what}]"


def facet_badges(model, path: str, data_path: str | None, facet: str) -> list[str]:
    """Markdown badges: one per head, one for the gate, one for the experts (when N > 1)."""
    from fame_core.facets import specialisation   # scikit-learn: imported when a check is asked for

    spec = specialisation(session.alignment(path, data_path))
    badges = []
    for h in range(model.config.n_heads):
        s = spec[f"head {h}"]
        badges.append(f":green-badge[head {h} ≈ {s['facet']} · probe gap +{s['gap']:.2f}]" if s["facet"]
                      else f":orange-badge[head {h}: no facet · best gap {s['gap']:+.2f}]")
    planted = session.planted_checks(path, data_path)
    if planted is not None:
        checks, gate, experts, digits = planted, "gate → planted facet", "experts → preferred value", 2
        reference = f"majority {planted['majority_rate']:.2f}"
    else:
        checks = session.real_checks(path, data_path, facet)
        gate, experts, digits = "gate picks the better head", f"experts → next item's {facet}", 3
        reference = f"one head always {checks['majority_rate']:.2f}"
    badges.append(f":{_colour(checks['gate_passes'])}-badge[{gate} {checks['gate_accuracy']:.2f} ({reference})]")
    if checks["experts"] > 1:
        badges.append(f":{_colour(checks['experts_pass'])}-badge[{experts}: MI {checks['expert_mi']:.{digits}f} vs "
                      f"random routers {checks['random_router_mi']:.{digits}f}±{checks['random_router_std']:.{digits}f}]")
    return badges
