"""``python -m resnet_core attribute``: one image, one model, one method -> an overlay PNG and a JSON line.

Every bad input (image, model spec, checkpoint, layer, target) ends with exit status 2 and one line on
stderr, ``error: <what was wrong and what to do>``; never a traceback. The last stdout line is a JSON
object: ``top5`` (class, probability), ``method``, ``target``, ``target_class``, ``seconds`` (the
attribution alone), ``out``, ``model``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

EXAMPLE = ("python -m resnet_core attribute --image cat.jpg --model cifar10:resnet20 "
           "--method gradcam --out cat_gradcam.png")


def add_parser(subparsers) -> argparse.ArgumentParser:
    from resnet_core.attribution import METHODS, MODEL_SPECS

    p = subparsers.add_parser("attribute", help="attribution map of one image (Captum) as an overlay PNG",
                              description=f"Example: {EXAMPLE}")
    p.add_argument("--image", required=True, help="PNG, JPEG, WebP, BMP, GIF (first frame) or TIFF")
    p.add_argument("--model", required=True, help=MODEL_SPECS)
    p.add_argument("--method", required=True, choices=list(METHODS), help="attribution method")
    p.add_argument("--target", type=int, default=None, help="class index to explain (default: the predicted class)")
    p.add_argument("--layer", default=None, help="Grad-CAM layer by block name, e.g. layer3.2 (default: the last block)")
    p.add_argument("--steps", type=int, default=None, help="ig: integration steps (50); smoothgrad: noisy samples (20)")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity, 0..1")
    p.add_argument("--out", default=None, help="output PNG (default: <image stem>_<method>.png in the current directory)")
    p.add_argument("--runs-dir", default=None, help="run store for run:RUN_ID (default: $RESNET_LAB_RUNS or runs/)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    p.set_defaults(subcommand=run)
    return p


def _settings(method: str, steps: int | None) -> dict | None:
    from resnet_core.attribution import AttributionError

    if steps is None:
        return None
    if steps < 1 or steps > 10_000:
        raise AttributionError(f"--steps must be from 1 to 10000; got {steps}")
    if method == "ig":
        return {"n_steps": steps}
    if method == "smoothgrad":
        return {"nt_samples": steps}
    raise AttributionError(f"--steps applies to ig and smoothgrad, not {method}")


def _attribute(args) -> dict:
    from resnet_core.attribution import (METHODS, AttributionError, attribute, load_model, overlay, png_bytes, predict)
    from resnet_core.data.images import load_image, model_view, normalize_image
    from resnet_core.device import resolve_device

    if not 0.0 <= args.alpha <= 1.0:
        raise AttributionError(f"--alpha must be from 0 to 1; got {args.alpha}")
    settings = _settings(args.method, args.steps)
    out = Path(args.out) if args.out else Path.cwd() / f"{Path(args.image).stem}_{args.method}.png"
    if out.suffix.lower() != ".png":
        raise AttributionError(f"--out must end in .png; got {out.name}")
    if not out.parent.is_dir():
        raise AttributionError(f"the output directory {out.parent} does not exist")
    img = load_image(args.image)  # before the model: a bad picture fails fast
    from resnet_core.nets.community import ensure_with_bar, is_community

    if is_community(args.model):  # downloaded on first use, with a bar on stderr
        ensure_with_bar(args.model)
    loaded = load_model(args.model, runs_dir=args.runs_dir, device=resolve_device(args.device))
    view = model_view(img, loaded.input_size)
    x = normalize_image(view, loaded.mean, loaded.std)
    top5 = predict(loaded, x)
    n_classes = len(loaded.classes)
    target = args.target
    if target is None:
        target = loaded.classes.index(top5[0][0])
    elif not 0 <= target < n_classes:
        raise AttributionError(f"--target must be a class index from 0 to {n_classes - 1}; got {target}")
    t0 = time.perf_counter()
    attr_map = attribute(loaded.model, x, target, args.method, layer=args.layer, settings=settings)
    seconds = time.perf_counter() - t0
    picture = overlay(view, attr_map, alpha=args.alpha, signed=METHODS[args.method].signed)
    try:
        out.write_bytes(png_bytes(picture))
    except OSError as e:
        raise AttributionError(f"cannot write {out}: {e.strerror or e}") from None
    return {"top5": [{"class": c, "probability": round(p, 6)} for c, p in top5], "method": args.method,
            "target": target, "target_class": loaded.classes[target], "seconds": round(seconds, 4),
            "out": str(out), "model": loaded.source}


def run(args) -> int:
    from resnet_core.attribution import AttributionError
    from resnet_core.nets.checkpoints import CheckpointError
    from resnet_core.cli.common import one_line_errors
    from resnet_core.config import ConfigError
    from resnet_core.nets.imagenet import ModelError
    from resnet_core.data.images import ImageError

    def work() -> int:
        result = _attribute(args)
        width = max(len(t["class"]) for t in result["top5"])
        for t in result["top5"]:
            print(f"{t['class']:<{width}}  {t['probability']:.4f}")
        print(f"{result['method']} for class {result['target']} ({result['target_class']}) in "
              f"{result['seconds']:.3f} s -> {result['out']}")
        print(json.dumps(result))
        return 0

    return one_line_errors(work, (ImageError, CheckpointError, ModelError, AttributionError, ConfigError))


if __name__ == "__main__":  # python -m resnet_core.cli.attribute ..., the same as the attribute command
    from resnet_core.cli.main import main

    sys.exit(main(["attribute", *sys.argv[1:]]))
