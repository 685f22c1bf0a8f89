"""``python -m resnet_core reproduce``: the JSON line, the run store group, the figures, bad input.

Tiny versions (--steps 2): plumbing, not findings (bench/paper_findings.py measures those)."""
import json
from pathlib import Path

import pytest
from PIL import Image

from resnet_core.cli.main import main
from resnet_core.config import RunConfig
from resnet_core.training.runs import RunStore


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_reproduce_prints_json_stores_one_group_and_writes_figures(tmp_path, capsys):
    runs, figs = tmp_path / "runs", tmp_path / "figs"
    code = main(["reproduce", "preact", "--scale", "quick", "--steps", "2", "--seeds", "2", "--device", "cpu",
                 "--n-train", "128", "--n-test", "32", "--parallel", "1", "--runs-dir", str(runs), "--out", str(figs)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = _last_json(captured.out)
    assert (out["preset"], out["scale"]) == ("preact", "quick") and out["seconds"] > 0
    assert [(r["seed"], r["arch"], r["depth"], r["steps"], r["preact"]) for r in out["runs"]] == [
        (0, "resnet", 20, 2, False), (0, "resnet", 20, 2, True), (1, "resnet", 20, 2, False), (1, "resnet", 20, 2, True)]
    for r in out["runs"]:
        assert 0.0 <= r["final_train_error"] <= 1.0 and 0.0 <= r["final_test_error"] <= 1.0
        assert r["label"].startswith("resnet-20 w0.5 16px") or r["label"].startswith("preact-resnet-20 w0.5 16px")
    v = out["verdict"]
    assert v["seeds"] == 2 and {c["seed"] for c in v["checks"]} == {0, 1}
    assert all({"name", "value", "threshold", "holds"} <= set(c) for c in v["checks"]) and isinstance(v["holds"], bool)
    # every run in the store, all with the same group, which the dashboard groups by
    infos = RunStore(runs).list()
    assert sorted(i.run_id for i in infos) == sorted(r["run_id"] for r in out["runs"])
    groups = {RunConfig.from_dict(i.config).group for i in infos}
    assert groups == {out["group"]} and out["group"].startswith("preact/quick/")
    # a real chart: a PNG of the expected size with more than a couple of colours, and the HTML
    png = Image.open(out["figures"]["png"])
    assert png.size[0] > 400 and len(png.convert("RGB").getcolors(1 << 20)) > 10
    assert "plotly" in (figs / "preact-quick.html").read_text()[:100000].lower()
    assert "[1/4]" in captured.err and "2/2" in captured.err  # a tqdm bar per run


def test_reproduce_quiet_draws_no_bars(tmp_path, capsys):
    code = main(["reproduce", "options", "--steps", "1", "--device", "cpu", "--quiet", "--parallel", "2",
                 "--n-train", "64", "--n-test", "20", "--runs-dir", str(tmp_path / "r"), "--out", str(tmp_path / "f")])
    captured = capsys.readouterr()
    assert code == 0 and "it/s" not in captured.err and "step/s" not in captured.err and "%|" not in captured.err
    out = _last_json(captured.out)
    assert [r["label"] for r in out["runs"]] == [f"resnet-20 w0.5 16px large no-aug option {s}" for s in "ABC"]


@pytest.mark.parametrize("args,needle", [
    (["reproduce", "fig7"], "invalid choice"),
    (["reproduce", "fig6", "--scale", "huge"], "invalid choice"),
    (["reproduce", "fig6", "--seeds", "0"], "--seeds"),
    (["reproduce", "fig6", "--steps", "0"], "--steps"),
    (["reproduce", "fig6", "--parallel", "0"], "parallel"),
    (["reproduce", "fig6", "--n-train", "3"], "n_train"),
    (["reproduce", "fig6", "--dataset", "imagenet"], "dataset"),
    (["reproduce", "fig6", "--dataset", "folder:/nonexistent/folder"], "/nonexistent/folder"),
])
def test_reproduce_bad_input_is_one_line_and_exit_2(args, needle, capsys, tmp_path):
    code = main(args + ["--runs-dir", str(tmp_path / "r"), "--out", str(tmp_path / "f")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:") and needle in err[0]


def _sweep_result():
    runs = [{"run_id": f"r{d}", "label": f"plain-{d}", "arch": "plain", "depth": d, "seed": 0,
             "final_train_error": e} for d, e in ((8, 0.2), (20, 0.4), (56, 0.9))]
    return {"preset": "depth-sweep", "title": "Depth sweep", "scale": "quick", "runs": runs,
            "verdict": {"line": "plain error grows with depth"}}


def test_figures_are_real_charts(tmp_path):
    from resnet_core.figures.preset_export import write_figures

    paths = write_figures(_sweep_result(), {}, tmp_path)
    png = Image.open(paths["png"]).convert("RGB")
    colours = {c for _, c in png.getcolors(1 << 20)}
    assert png.size[0] >= 600 and (31, 119, 180) in colours   # the first series' colour is drawn
    html = Path(paths["html"]).read_text()
    assert "plain (seed 0)" in html and "skipped" not in paths


@pytest.mark.parametrize("missing, kept", [("plotly", "png"), ("matplotlib", "html")])
def test_a_missing_plotting_library_leaves_out_its_figure_and_says_how_to_get_it(tmp_path, monkeypatch, missing,
                                                                                 kept):
    import sys

    from resnet_core.figures.preset_export import write_figures

    for name in [m for m in sys.modules if m == missing or m.startswith(missing + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, missing, None)   # import fails as if not installed
    paths = write_figures(_sweep_result(), {}, tmp_path)
    assert set(paths) == {kept, "skipped"} and Path(paths[kept]).stat().st_size > 1000
    assert f"{missing} is not installed (pip install {missing}" in paths["skipped"]
