"""``python -m resnet_core describe``: parameters, multiply-adds and layer names of a network."""
from __future__ import annotations

import json

from resnet_core.cli.common import add_model_flags, model_config
from resnet_core.config import DataConfig


def add_parser(sub) -> None:
    d = sub.add_parser("describe", help="parameters, multiply-adds and layer names of a network")
    add_model_flags(d)
    d.add_argument("--image-size", type=int, default=32, help="input side in pixels for the multiply-adds")
    d.add_argument("--json", action="store_true", help="one JSON object instead of text")

    d.set_defaults(subcommand=run)


def run(a) -> int:
    from resnet_core.nets.models import build_model, count_macs, count_params

    cfg = model_config(a)
    size = DataConfig(image_size=a.image_size).image_size  # validated like a run's
    model = build_model(cfg)
    out = {"name": cfg.name, "config": cfg.to_dict(), "image_size": size, "params": count_params(model),
           "macs": count_macs(model, (size, size)),
           "layers": model.layer_names, "blocks": [n for n, _ in model.named_blocks()],
           "feature_info": [fi.__dict__ for fi in model.feature_info]}
    if a.json:
        print(json.dumps(out))
    else:
        print(f"{cfg.name}: {out['params']:,} parameters, {out['macs'] / 1e6:.2f}M multiply-adds per {size}x{size} image, "
              f"{len(out['layers'])} weight layers, {len(out['blocks'])} blocks")
        print("layers: " + ", ".join(out["layers"]))
    return 0
