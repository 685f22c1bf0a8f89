"""What each preset's runs showed: the end-of-run summary of a run and, per preset, the separations the
paper reports, checked per seed against a threshold (the verdict). Every figure comes from curves.py,
so the page and the CLI's JSON agree."""
from __future__ import annotations

import math

from resnet_core.config import RunConfig
from resnet_core.experiments.curves import final_test_error, final_train_error
from resnet_core.experiments.published import paper_reference


def run_summary(config: RunConfig, records: list[dict]) -> dict:
    """The end-of-run figures the verdicts read, from a run's config and its metrics records."""
    steps = [r for r in records if r.get("type") == "step"]
    branch = None
    if config.model.residual:
        stds = [r["branch_std"] for r in steps if r.get("branch_std")]
        if stds:
            last = [v for v in stds[-1] if v is not None and math.isfinite(v)]
            branch = sum(last) / len(last) if last else None
    # Fig. 7's quantity: the std of every BN output after a 3x3 conv (probes' layer_response_std), plain and
    # residual alike, from the last logged step
    responses = [r["layer_response_std"] for r in steps if r.get("layer_response_std")]
    last = [v for v in (responses[-1] if responses else []) if v is not None and math.isfinite(v)]
    summary = {"label": config.label, "arch": "resnet" if config.model.residual else "plain",
               "depth": config.model.depth, "shortcut": config.model.shortcut, "preact": config.model.preact,
               "seed": config.train.seed, "steps": steps[-1]["step"] if steps else 0,
               "final_train_error": final_train_error(records), "final_test_error": final_test_error(records),
               "branch_std_mean": branch, "response_std_mean": sum(last) / len(last) if last else None}
    reference = paper_reference(config.to_dict())  # a CIFAR-10 run of one of the paper's nets
    if reference is not None:  # as a fraction like the errors beside it; None: the paper states none
        summary["paper_test_error"] = None if reference.error is None else reference.error / 100
    return summary


def _find(summaries: list[dict], **match) -> dict | None:
    for s in summaries:
        if all(s.get(k) == v for k, v in match.items()):
            return s
    return None


def _by_seed(summaries: list[dict]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for s in summaries:
        out.setdefault(s["seed"], []).append(s)
    return dict(sorted(out.items()))


def _check(name: str, seed: int, value: float | None, threshold: float, holds: bool | None, reported=False) -> dict:
    """One separation: ``value`` in points (percentage points of training error) against ``threshold``."""
    return {"name": name, "seed": seed, "value": None if value is None else round(value, 4),
            "threshold": threshold, "holds": bool(holds) if value is not None else False,
            **({"reported_only": True} if reported else {})}


def _err(s: dict | None) -> float | None:
    return None if s is None or s.get("final_train_error") is None else 100.0 * s["final_train_error"]


def _combine(checks: list[dict], lines: list[str], seeds: int) -> dict:
    required = [c for c in checks if not c.get("reported_only")]
    holds = bool(required) and all(c["holds"] for c in required)
    per_seed = {}
    for c in required:
        per_seed.setdefault(c["seed"], []).append(c["holds"])
    n_ok = sum(all(v) for v in per_seed.values())
    line = "; ".join(lines)
    if seeds > 1:
        line += f" ({n_ok}/{len(per_seed)} seeds hold)"
    return {"holds": holds, "checks": checks, "line": line, "seeds_holding": n_ok, "seeds": len(per_seed)}


def verdict_fig6(summaries: list[dict]) -> dict:
    """The issue's separations, per seed, in points of final smoothed training error:
    plain-56 above plain-20 by >= 10; ResNet-56 below plain-56 by >= 20; ResNet-20 no worse than
    plain-20 + 1. Fig. 7 is reported, not required: residual nets' layer responses (std of every BN output
    after a 3x3 conv) smaller than plain nets' of the same depth, and the deeper ResNet's smaller."""
    checks, lines = [], []
    groups = _by_seed(summaries)
    for seed, runs in groups.items():
        p20, p56 = _err(_find(runs, arch="plain", depth=20)), _err(_find(runs, arch="plain", depth=56))
        r20, r56 = _err(_find(runs, arch="resnet", depth=20)), _err(_find(runs, arch="resnet", depth=56))
        gap_plain = None if None in (p20, p56) else p56 - p20
        gap_deep = None if None in (p56, r56) else p56 - r56
        gap_20 = None if None in (p20, r20) else r20 - p20
        checks += [
            _check("plain-56 minus plain-20", seed, gap_plain, 10.0, gap_plain is not None and gap_plain >= 10.0),
            _check("plain-56 minus ResNet-56", seed, gap_deep, 20.0, gap_deep is not None and gap_deep >= 20.0),
            _check("ResNet-20 minus plain-20", seed, gap_20, 1.0, gap_20 is not None and gap_20 <= 1.0),
        ]
        # Fig. 7 (He et al. 2015): residual nets respond less than plain nets of the same depth (the main
        # claim), and the deeper ResNet less than the shallower. The mean over layers of the std of every BN
        # output after a 3x3 conv, at the last logged training step (training batches, BN in training mode;
        # the Why it works page's Fig. 7 view measures test images in eval mode, as the paper does).
        resp = {(a, d): (_find(runs, arch=a, depth=d) or {}).get("response_std_mean")
                for a in ("plain", "resnet") for d in (20, 56)}
        for d in (20, 56):
            p_, r_ = resp[("plain", d)], resp[("resnet", d)]
            if p_ is not None and r_ is not None:
                checks.append(_check(f"Fig. 7: plain-{d} minus ResNet-{d} mean layer response std", seed, p_ - r_,
                                     0.0, r_ < p_, reported=True))
        b20, b56 = resp[("resnet", 20)], resp[("resnet", 56)]
        if b20 is None or b56 is None:  # runs recorded before the per-layer record: the per-block branch std
            b20 = (_find(runs, arch="resnet", depth=20) or {}).get("branch_std_mean")
            b56 = (_find(runs, arch="resnet", depth=56) or {}).get("branch_std_mean")
            name = "Fig. 7: ResNet-20 minus ResNet-56 mean branch std"
        else:
            name = "Fig. 7: ResNet-20 minus ResNet-56 mean layer response std"
        if b20 is not None and b56 is not None:
            checks.append(_check(name, seed, b20 - b56, 0.0, b56 < b20, reported=True))
        if gap_plain is None:
            lines.append(f"seed {seed}: runs missing")
            continue
        shown = "degradation shown" if gap_plain >= 10 else "no degradation"
        fixed = (f"ResNet-56 {abs(gap_deep):.0f} points {'below' if gap_deep >= 0 else 'above'} plain-56"
                 if gap_deep is not None else "ResNet-56 missing")
        if len(groups) == 1 or not lines:
            lines.append(f"plain-56 ends {abs(gap_plain):.0f} points {'above' if gap_plain >= 0 else 'below'} "
                         f"plain-20: {shown}; {fixed}" + (f" (seed {seed})" if len(groups) > 1 else ""))
    return _combine(checks, lines, len(groups))


def verdict_options(summaries: list[dict]) -> dict:
    """Table 3's finding: the three shortcut options end close together (projections are not what makes
    residual learning work). Holds when the spread of final training errors is at most 5 points."""
    checks, lines = [], []
    for seed, runs in _by_seed(summaries).items():
        errs = {s: _err(_find(runs, shortcut=s)) for s in ("A", "B", "C")}
        known = [e for e in errs.values() if e is not None]
        spread = max(known) - min(known) if len(known) == 3 else None
        checks.append(_check("spread of options A/B/C", seed, spread, 5.0, spread is not None and spread <= 5.0))
        if not lines:
            lines.append(f"option A ends at {_fmt(errs['A'])}, B at {_fmt(errs['B'])}, C at {_fmt(errs['C'])} "
                         f"training error: " + ("all within 5 points, shortcuts need no projections"
                                                if spread is not None and spread <= 5 else "apart by more than 5 points"))
    return _combine(checks, lines, len(_by_seed(summaries)))


def _fmt(pts: float | None) -> str:
    return "n/a" if pts is None else f"{pts:.1f}%"


def verdict_preact(summaries: list[dict]) -> dict:
    """He et al. 2016: full pre-activation trains at least as well as the original block. Holds when the
    pre-activation net ends no more than 1 point above the post-activation one."""
    checks, lines = [], []
    for seed, runs in _by_seed(summaries).items():
        post, pre = _err(_find(runs, preact=False)), _err(_find(runs, preact=True))
        diff = None if None in (post, pre) else pre - post
        checks.append(_check("pre- minus post-activation", seed, diff, 1.0, diff is not None and diff <= 1.0))
        if not lines and diff is not None:
            lines.append(f"pre-activation ends {abs(diff):.1f} points {'below' if diff <= 0 else 'above'} "
                         f"post-activation ({_fmt(pre)} vs {_fmt(post)})")
    return _combine(checks, lines, len(_by_seed(summaries)))


def verdict_depth_sweep(summaries: list[dict]) -> dict:
    """Degradation against depth: the deepest plain net ends >= 10 points above the shallowest, and the
    deepest ResNet >= 20 points below the deepest plain net."""
    checks, lines = [], []
    for seed, runs in _by_seed(summaries).items():
        plain = sorted((s["depth"], _err(s)) for s in runs if s["arch"] == "plain" and _err(s) is not None)
        res = sorted((s["depth"], _err(s)) for s in runs if s["arch"] == "resnet" and _err(s) is not None)
        rise = plain[-1][1] - plain[0][1] if len(plain) >= 2 else None
        gap = plain[-1][1] - res[-1][1] if plain and res and plain[-1][0] == res[-1][0] else None
        checks += [
            _check(f"plain-{plain[-1][0] if plain else '?'} minus plain-{plain[0][0] if plain else '?'}", seed,
                   rise, 10.0, rise is not None and rise >= 10.0),
            _check("deepest plain minus deepest ResNet", seed, gap, 20.0, gap is not None and gap >= 20.0),
        ]
        if not lines and rise is not None and res:
            lines.append(f"plain error grows with depth from {_fmt(plain[0][1])} to {_fmt(plain[-1][1])} "
                         f"while ResNet stays at or below {_fmt(max(e for _, e in res))}")
    return _combine(checks, lines, len(_by_seed(summaries)))
