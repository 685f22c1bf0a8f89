"""``python -m resnet_core evaluate``: accuracy and loss of a checkpoint, ours or a community CIFAR-10 one."""
from __future__ import annotations

import json
import sys

from resnet_core.cli.common import add_data_flags, community_names, data_config


def add_parser(sub) -> None:
    e = sub.add_parser("evaluate", help="accuracy and loss of a checkpoint (ours or a community CIFAR-10 one)")
    e.add_argument("--checkpoint", required=True,
                   help="a .pt from runs/<id>/checkpoints, an akamaster .th file, or a community CIFAR-10 net by "
                        "name, downloaded on first use: " + ", ".join(community_names()))
    add_data_flags(e, default=None)
    e.add_argument("--probes", action="store_true", help="also measure branch responses and activation statistics")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--limit", type=int, default=None, help="evaluate at most this many test images")
    e.add_argument("--device", default="auto")

    e.set_defaults(subcommand=run)


def run(a) -> int:
    from resnet_core.nets import community
    from resnet_core.nets.checkpoints import load_checkpoint
    from resnet_core.training.evaluate import evaluate_checkpoint, reference_line

    if community.is_community(a.checkpoint):  # downloaded on first use, with a bar on stderr
        community.ensure_with_bar(a.checkpoint)
        loaded = community.load(a.checkpoint)
    else:
        loaded = load_checkpoint(a.checkpoint)
    data_cfg = None
    if a.dataset is not None:
        if a.image_size is None:  # a run's checkpoint is evaluated at the size it was trained at
            a.image_size = ((loaded.meta.get("run_config") or {}).get("data") or {}).get("image_size")
        data_cfg = data_config(a)
    out = evaluate_checkpoint(loaded, data_cfg, batch_size=a.batch_size, limit=a.limit, device=a.device,
                              with_probes=a.probes)
    line = reference_line(loaded, out)
    if line:  # the published figures beside the measured one, for a person; the JSON carries them too
        print(line, file=sys.stderr)
    print(json.dumps(out))
    return 0
