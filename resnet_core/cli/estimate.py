"""``python -m resnet_core estimate``: how long the default Start and each preset take on this machine."""
from __future__ import annotations

import json
import sys

from resnet_core.config import ConfigError


def add_parser(sub) -> None:
    est = sub.add_parser("estimate", help="how long the default Start and each preset take on this machine "
                                          "(from timed training steps, measured once and cached)")
    est.add_argument("--calibrate", action="store_true", help="time the training steps again, even if cached")
    est.add_argument("--device", default="cpu", choices=["cpu", "cuda", "mps"])
    est.add_argument("--scale", default="quick", choices=["quick", "paper"])
    est.add_argument("--parallel", type=int, default=None,
                     help="runs trained at once (default: $RESNET_LAB_MAX_RUNS or 2, as the dashboard)")

    est.set_defaults(subcommand=run)


def run(a) -> int:
    from resnet_core.experiments import costmodel
    from resnet_core.experiments.presets import PRESETS, preset_configs
    from resnet_core.experiments.costmodel import estimate_seconds, runs_at_once
    from resnet_core.experiments.scales import scale_config
    from resnet_core.device import resolve_device

    resolve_device(a.device)
    if a.parallel is not None and not 1 <= a.parallel <= 16:
        raise ConfigError(f"parallel must be from 1 to 16; got {a.parallel}")
    cal = None if a.calibrate else costmodel.load_calibration(a.device)
    if cal is None:
        print(f"timing training steps on this machine ({a.device}); cached in {costmodel.cache_path(a.device)}",
              file=sys.stderr)
        cal = costmodel.calibrate(a.device)
    parallel = a.parallel or runs_at_once()
    out = {"machine": cal.machine, "basis": costmodel.estimate_basis(cal), "parallel": parallel, "startup_s": round(cal.startup_s, 3),
           "coefficients": {str(t): {"fixed_s": round(c[0], 5), "per_layer_s": round(c[1], 6),
                                     "per_gmac_s": round(c[2], 5)} for t, c in cal.coefficients.items()},
           "samples": cal.samples,
           "estimates_s": {"start": round(estimate_seconds([scale_config(a.scale, device=a.device)], a.device,
                                                           parallel), 1),
                           **{key: round(estimate_seconds(preset_configs(key, a.scale, device=a.device), a.device,
                                                          parallel), 1) for key in PRESETS}}}
    print(json.dumps(out))
    return 0
