"""``python -m resnet_core analyze NAME``: one analysis of ``resnet_core.analysis`` from the command line.

The model is a config from the ``train`` model flags (a fresh net at initialisation), ``--run RUN_ID`` (a
stored run, analysed with its own architecture and data) or ``--checkpoint PATH`` (ours or an akamaster
``.th``, with ``--dataset``/``--data-dir`` as for ``evaluate``). Settings come from the flags below or
``--set key=value`` (JSON values). ``--out DIR`` writes ``<name>.json``, ``<name>.html`` (Plotly) and
``<name>.png`` there. Progress goes to stderr; the last stdout line is the result as one JSON object.
Every bad input ends with exit status 2 and one line ``error: ...`` on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from resnet_core.cli.common import (add_data_flags, add_model_flags, add_runs_dir_flag, data_config, model_config,
                                    one_line_errors)

EXAMPLES = ("python -m resnet_core analyze gradient-flow --depth 56 --depths 8,20,56,110,218,434,1202 --out out/ ; "
            "python -m resnet_core analyze lesion --checkpoint cifar10:resnet56 --dataset cifar10 --data-dir data "
            "--images 1000")

# flag -> (setting name, type, help); a flag applies to the analyses that have that setting
SETTING_FLAGS = {
    "--batch-size": ("batch_size", int, "images per batch (gradient-flow: the batch measured)"),
    "--depths": ("depths", str, "gradient-flow, shattering: comma-separated depths to sweep, e.g. 8,20,56,110"),
    "--no-twin": ("twin", None, "gradient-flow, shattering: the given architecture only, not also its plain/residual twin"),
    "--images": ("images", int, "lesion, interpolate, landscape, responses: how many images"),
    "--points": ("points", int, "shattering: inputs on the line; interpolate: alphas; landscape: grid points per axis"),
    "--span": ("span", float, "landscape: the grid covers -span..span in both directions"),
    "--draws": ("draws", int, "paths, lesion: random draws per length / count"),
    "--seed": ("seed", int, "random directions, draws, fresh nets"),
    "--method": ("method", str, "landscape: auto, loop or vmap"),
}


def add_parser(subparsers) -> argparse.ArgumentParser:
    from resnet_core.analysis import ANALYSES

    p = subparsers.add_parser("analyze", help="why residual nets work: gradient flow, shattering, paths, "
                              "lesions, loss landscapes", description=f"Examples: {EXAMPLES}")
    p.add_argument("analysis", choices=list(ANALYSES), help="which analysis")
    src = p.add_argument_group("model source (default: a fresh net from the model flags)")
    src.add_argument("--run", default=None, help="a stored run id (see `runs`)")
    src.add_argument("--checkpoint", default=None,
                     help="a .pt from runs/<id>/checkpoints, an akamaster .th file, or a community CIFAR-10 net by "
                          "name, downloaded on first use: cifar10:resnet20, 32, 44, 56, 110 or 1202")
    add_model_flags(p)
    add_data_flags(p, default=None)
    g = p.add_argument_group("settings")
    for flag, (_, typ, help_text) in SETTING_FLAGS.items():
        if typ is None:
            g.add_argument(flag, action="store_true", help=help_text)
        else:
            g.add_argument(flag, type=typ, default=None, help=help_text)
    g.add_argument("--paper", action="store_true",
                   help="the paper's setting where the default is smaller (lesion: 10,000 test images; paths: 1,000 "
                        "draws; landscape: 51x51 grid on 50,000 images; ...): flags given beside it still win")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other setting, the value as JSON (e.g. --set swaps=[1,2,4] --set bn=\"interpolate\")")
    p.add_argument("--out", default=None, help="directory for <analysis>.json, .html and .png")
    p.add_argument("--device", default="cpu", help="cpu, auto, cuda, cuda:N, mps")
    p.add_argument("--no-cache", action="store_true", help="recompute even if the run's directory holds the result")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--estimate", action="store_true", help="print the cost estimate only")
    add_runs_dir_flag(p)
    p.set_defaults(subcommand=run)
    return p


def _settings(a, analysis) -> dict:
    from resnet_core.analysis import AnalysisError

    settings = {}
    for flag, (key, typ, _) in SETTING_FLAGS.items():
        value = getattr(a, flag[2:].replace("-", "_"))
        if typ is None:
            if value:
                settings[key] = False  # --no-twin
            continue
        if value is None:
            continue
        if key == "depths":
            try:
                value = [int(d) for d in value.split(",") if d.strip()]
            except ValueError:
                raise AnalysisError(f"--depths must be comma-separated integers, e.g. 8,20,56; got {value!r}") from None
        if key not in analysis.defaults:
            raise AnalysisError(f"{flag} does not apply to {analysis.name}")
        settings[key] = value
    for item in a.set:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise AnalysisError(f"--set takes KEY=VALUE; got {item!r}")
        try:
            settings[key.strip()] = json.loads(raw)
        except ValueError:
            settings[key.strip()] = raw  # a bare word is a string
    return settings


def _source(a):
    from resnet_core.analysis import AnalysisError, ModelSource

    if a.run and a.checkpoint:
        raise AnalysisError("give --run or --checkpoint, not both")
    if a.run:
        return ModelSource(run_id=a.run)
    if a.checkpoint:
        from resnet_core.nets import community
        if community.is_community(a.checkpoint):  # downloaded on first use, with a bar on stderr
            return ModelSource(checkpoint=str(community.ensure_with_bar(a.checkpoint, not a.quiet)))
        if not Path(a.checkpoint).is_file():
            raise AnalysisError(f"checkpoint not found: {a.checkpoint}")
        return ModelSource(checkpoint=a.checkpoint)
    return ModelSource(config=model_config(a))


class _Bar:
    """tqdm on stderr, 0..100%, its description the analysis's own message."""

    def __init__(self, enabled: bool, name: str):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=1000, desc=name, file=sys.stderr, leave=True, dynamic_ncols=True,
                            bar_format="{desc} |{bar}| {percentage:3.0f}% [{elapsed}<{remaining}]")

    def __call__(self, fraction: float, message: str) -> None:
        if self.bar is not None:
            self.bar.n = int(1000 * fraction)
            self.bar.set_postfix_str(message, refresh=False)
            self.bar.refresh()

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _analyze(a) -> dict:
    from resnet_core.analysis import AnalysisError, estimate_cost, get_analysis, run_analysis
    from resnet_core.figures.analysis_export import write_html, write_png

    analysis = get_analysis(a.analysis)
    source = _source(a)
    data = None
    if a.dataset is not None:

        data = data_config(a)
    settings = _settings(a, analysis)
    if a.paper:
        settings = {**(analysis.paper or {}), **settings}
    out = Path(a.out) if a.out else None
    if out is not None:
        if out.exists() and not out.is_dir():
            raise AnalysisError(f"--out must be a directory; {out} is a file")
        out.mkdir(parents=True, exist_ok=True)
    if a.estimate:
        return {"analysis": analysis.name, **estimate_cost(analysis.name, source, settings, data, device=a.device,
                                                                 runs_dir=a.runs_dir)}
    bar = _Bar(not a.quiet, analysis.name)
    try:
        result = run_analysis(analysis.name, source, data=data, settings=settings, device=a.device,
                              runs_dir=a.runs_dir, progress=bar, use_cache=not a.no_cache)
    finally:
        bar.close()
    if out is not None:
        stem = out / analysis.name
        stem.with_suffix(".json").write_text(json.dumps(result))
        write_html(result, stem.with_suffix(".html"))
        write_png(result, stem.with_suffix(".png"))
        result["out"] = [str(stem.with_suffix(s)) for s in (".json", ".html", ".png")]
    return result


def run(args) -> int:
    from resnet_core.analysis import AnalysisError, Cancelled
    from resnet_core.nets.checkpoints import CheckpointError
    from resnet_core.config import ConfigError
    from resnet_core.data import DataError

    def work() -> int:
        print(json.dumps(_analyze(args)))
        return 0

    return one_line_errors(work, (AnalysisError, Cancelled, CheckpointError, ConfigError, DataError,
                                  FileNotFoundError))
