"""Chart builders: the right traces, titled axes, decimation, and the incremental metrics reader."""
from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import pytest

from resnet_core.figures import training as charts
from resnet_core.training.series import MetricsTail, RunSeries

LAYERS = ["stem.0", "layer1.0.branch.0", "layer1.0.branch.3", "fc"]
BLOCKS = ["layer1.0", "layer2.0", "layer3.0"]
STAGES = ["layer1", "layer2", "layer3"]


def fake_series(run_id="r1", steps=30, residual=True, depth=8, diverged=False) -> RunSeries:
    rng = np.random.default_rng(0)
    step = np.arange(1, steps + 1)
    s = RunSeries(run_id=run_id, label=f"{'resnet' if residual else 'plain'}-{depth}", residual=residual,
                  depth=depth, layout={"layers": LAYERS, "blocks": BLOCKS, "stages": STAGES}, total_steps=steps,
                  step=step)
    s.scalars = {k: rng.random(steps) for k in ("epoch", "t", "lr", "train_loss", "train_acc", "images_per_s")}
    s.vectors = {"grad_norm": rng.random((steps, len(LAYERS))) + 1e-3,
                 "branch_std": rng.random((steps, len(BLOCKS))), "branch_ratio": rng.random((steps, len(BLOCKS))) + 0.1,
                 "act_mean": rng.random((steps, 3)), "act_std": rng.random((steps, 3)), "dead_relu": rng.random((steps, 3))}
    s.eval_step, s.test_loss, s.test_acc = np.array([10, 20]), np.array([2.0, 1.5]), np.array([0.3, 0.5])
    if diverged:
        s.diverged = {"step": steps, "loss": float("nan")}
    return s


def assert_titled(fig: go.Figure) -> None:
    x = [fig.layout[k].title.text for k in fig.layout.to_plotly_json() if k.startswith("xaxis")]
    y = [fig.layout[k].title.text for k in fig.layout.to_plotly_json() if k.startswith("yaxis")]
    assert any(x) and any(y), f"untitled axes in {fig.layout.title.text!r}"


@pytest.mark.parametrize("build", [charts.loss_figure, charts.accuracy_figure, charts.grad_profile_figure,
                                   charts.branch_std_figure, charts.dead_relu_figure, charts.fig6_figure,
                                   lambda runs: charts.activation_figure(runs, "act_mean")])
def test_multi_run_charts_draw_every_run_with_titled_axes(build):
    runs = [fake_series("a", residual=False), fake_series("b", residual=True)]
    fig = build(runs)
    assert_titled(fig)
    names = " ".join(t.name or "" for t in fig.data)
    assert "plain-8" in names and "resnet-8" in names


@pytest.mark.parametrize("build", [charts.loss_figure, charts.grad_profile_figure, charts.fig6_figure,
                                   charts.branch_std_figure, lambda runs: charts.grad_norm_heatmap(fake_series(steps=0))])
def test_charts_of_runs_without_points_say_so_instead_of_failing(build):
    fig = build([fake_series(steps=0)])
    assert_titled(fig)


def test_loss_curve_has_train_and_test_traces():
    fig = charts.loss_figure([fake_series()])
    modes = sorted(t.mode for t in fig.data)
    assert modes == ["lines", "lines+markers"]
    assert list(fig.data[1].x) == [10, 20]


def test_grad_heatmap_is_layers_by_steps_in_network_order_on_a_log_scale():
    s = fake_series(steps=30)
    fig = charts.grad_norm_heatmap(s)
    hm = fig.data[0]
    assert np.asarray(hm.z).shape == (len(LAYERS), 30)
    assert [y.split(": ")[1] for y in hm.y] == LAYERS
    np.testing.assert_allclose(np.asarray(hm.z)[:, -1], np.log10(s.vectors["grad_norm"][-1]))
    assert fig.layout.yaxis.autorange == "reversed"   # input at the top
    assert_titled(fig)


def test_long_runs_are_decimated():
    s = fake_series(steps=5000)
    assert np.asarray(charts.grad_norm_heatmap(s).data[0].z).shape[1] <= charts.MAX_HEATMAP_COLS
    assert len(charts.loss_figure([s]).data[0].x) <= charts.MAX_POINTS
    x, y = charts.decimate(np.arange(1000), np.ones(1000), 100)
    assert len(x) == 100 and np.allclose(y, 1.0)


def test_shared_grad_range_covers_both_twins():
    """Two twins whose gradients lie decades apart: the shared colour range must reach into each one's
    values (catches a range taken from one run only), and each twin's heatmap must draw its own values on
    that range (catches one run's matrix drawn for both, or the per-run range winning over the shared)."""
    plain, resnet = fake_series("p", residual=False), fake_series("r")
    plain.vectors["grad_norm"] = 10.0 ** np.linspace(-6, -5, 30 * len(LAYERS)).reshape(30, len(LAYERS))
    resnet.vectors["grad_norm"] = 10.0 ** np.linspace(1, 2, 30 * len(LAYERS)).reshape(30, len(LAYERS))
    lo, hi = charts.grad_norm_range([plain, resnet])
    assert -6 <= lo < -5 and 1 < hi <= 2
    for twin in (plain, resnet):
        hm = charts.grad_norm_heatmap(twin, (lo, hi)).data[0]
        np.testing.assert_allclose(np.asarray(hm.z), np.log10(twin.vectors["grad_norm"]).T)
        assert (hm.zmin, hm.zmax) == (lo, hi)


def test_branch_std_is_drawn_by_block_and_sorted():
    s = fake_series()
    fig = charts.branch_std_figure([s])
    by_block, ranked = fig.data
    np.testing.assert_allclose(by_block.y, s.vectors["branch_std"][-1])
    np.testing.assert_allclose(ranked.y, np.sort(s.vectors["branch_std"][-1])[::-1])


def test_ratio_figure_has_one_line_per_block():
    fig = charts.branch_ratio_figure(fake_series())
    assert [t.name for t in fig.data] == BLOCKS
    assert fig.layout.yaxis.type == "log"


def test_divergence_is_marked():
    fig = charts.loss_figure([fake_series(diverged=True)])
    assert any("diverged at step" in a.text for a in fig.layout.annotations)


def test_fig6_dashes_plain_and_colours_by_depth():
    runs = [fake_series("p20", residual=False, depth=20), fake_series("r20", depth=20),
            fake_series("p56", residual=False, depth=56), fake_series("r56", depth=56)]
    fig = charts.fig6_figure(runs)
    lines = [t for t in fig.data if t.mode == "lines"]
    assert {t.line.dash for t in lines if "plain" in t.name} == {"dash"}
    assert {t.line.dash for t in lines if "resnet" in t.name} == {"solid"}
    assert len({t.line.color for t in lines}) == 2   # one colour per depth


def test_feature_map_figures():
    maps = {"stem": np.ones((8, 32, 32), np.float16), "layer1": np.ones((8, 32, 32), np.float16),
            "layer2": np.ones((8, 16, 16), np.float16), "layer3": np.ones((8, 8, 8), np.float16),
            "layer2.0/x": np.ones((8, 16, 16), np.float16), "layer2.0/F": np.zeros((8, 16, 16), np.float16),
            "layer2.0/out": np.ones((8, 16, 16), np.float16)}
    fig = charts.feature_stage_figure(maps, 25)
    assert len(fig.data) == 4
    assert np.asarray(fig.data[3].z).shape == (8, 8 * 9 - 1)   # 8 channels side by side, 1-px gaps
    block = charts.feature_block_figure(maps, "layer2.0", 25)
    assert len(block.data) == 3 and block.data[0].zmax == block.data[1].zmax   # one colour scale
    assert charts.mosaic(np.arange(2 * 2 * 2, dtype=float).reshape(2, 2, 2), cols=2).shape == (2, 5)


def test_metrics_tail_reads_only_new_complete_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    start = {"type": "start", "total_steps": 3, "layout": {"layers": LAYERS, "blocks": BLOCKS, "stages": STAGES}}
    step = lambda i: {"type": "step", "step": i, "train_loss": 2.0 / i, "train_acc": 0.1 * i, "lr": 0.1,
                      "epoch": 0, "t": i, "images_per_s": 100.0, "grad_norm": [1.0] * 4}
    path.write_text(json.dumps(start) + "\n" + json.dumps(step(1)) + "\n" + '{"type": "st')   # torn last line
    tail = MetricsTail(path)
    assert tail.poll()
    s = tail.series("r")
    assert list(s.step) == [1] and s.total_steps == 3 and s.vectors["grad_norm"].shape == (1, 4)
    assert not tail.poll()
    with open(path, "w") as f:   # the writer finishes the line and adds an eval and a NaN loss
        f.write(json.dumps(start) + "\n" + json.dumps(step(1)) + "\n" + json.dumps(step(2)) + "\n"
                + json.dumps({"type": "eval", "step": 2, "test_loss": 1.0, "test_acc": 0.5}) + "\n"
                + json.dumps({**step(3), "train_loss": float("nan")}) + "\n")
    tail.poll()
    s = tail.series("r")
    assert list(s.step) == [1, 2, 3] and list(s.eval_step) == [2] and np.isnan(s.scalars["train_loss"][-1])


@pytest.mark.parametrize("build", [charts.loss_figure, charts.accuracy_figure, charts.grad_profile_figure,
                                   charts.branch_std_figure, charts.dead_relu_figure, charts.fig6_figure,
                                   lambda runs: charts.grad_norm_heatmap(runs[0]),
                                   lambda runs: charts.branch_ratio_figure(runs[0], 0.6, "epoch"),
                                   lambda runs: charts.loss_figure(runs, 0.9, "time"),
                                   lambda runs: charts.depth_sweep_figure([{"arch": "plain", "depth": 20,
                                                                            "final_train_error": 0.2}])])
def test_live_charts_have_fixed_margins_and_keep_a_users_zoom(build):
    """Axis automargin measures every tick label on each redraw, once a second: it stays off, and
    uirevision keeps zoom and legend clicks across those redraws."""
    fig = build([fake_series()])
    layout = fig.layout.to_plotly_json()
    axes = [k for k in layout if k.startswith(("xaxis", "yaxis"))]
    assert axes and all(layout[k].get("automargin") is False for k in axes), fig.layout.title.text
    assert fig.layout.uirevision


# --- smoothing and the x-axis choice ----------------------------------------------------------------
def test_smoothed_curve_is_the_ema_of_the_data_with_the_raw_curve_faint_behind():
    from resnet_core.experiments.curves import ema

    s = fake_series(steps=50)
    fig = charts.loss_figure([s], smoothing=0.8)
    raw, smoothed = [t for t in fig.data if t.mode == "lines"]
    np.testing.assert_allclose(smoothed.y, ema(s.scalars["train_loss"], 0.8))
    np.testing.assert_allclose(raw.y, s.scalars["train_loss"])
    assert raw.opacity == charts.RAW_OPACITY and raw.showlegend is False
    assert raw.line.color == smoothed.line.color
    # the hand computation: debiased EMA of the first two points
    v0, v1 = s.scalars["train_loss"][:2]
    assert smoothed.y[1] == pytest.approx((0.8 * 0.2 * v0 + 0.2 * v1) / (1 - 0.8 ** 2))


def test_no_smoothing_draws_only_the_raw_curve():
    s = fake_series(steps=50)
    fig = charts.accuracy_figure([s], smoothing=0.0)
    (line,) = [t for t in fig.data if t.mode == "lines"]
    np.testing.assert_allclose(line.y, 100 * s.scalars["train_acc"])
    assert line.opacity is None


def test_smoothing_runs_before_decimation():
    from resnet_core.experiments.curves import ema

    s = fake_series(steps=2000)
    fig = charts.fig6_figure([s], smoothing=0.9)
    smoothed = [t for t in fig.data if t.mode == "lines" and t.showlegend is not False][0]
    _, expected = charts.decimate(s.step, ema(100 * (1 - s.scalars["train_acc"]), 0.9), 200)
    assert len(smoothed.y) == 200
    np.testing.assert_allclose(smoothed.y, expected)


def test_a_zoom_is_kept_across_redraws_but_not_across_an_x_axis_switch():
    s = fake_series()
    assert charts.loss_figure([s], 0.6).layout.uirevision == charts.loss_figure([s], 0.0).layout.uirevision
    by_step, by_epoch = charts.loss_figure([s], 0.6, "step"), charts.loss_figure([s], 0.6, "epoch")
    assert by_step.layout.uirevision != by_epoch.layout.uirevision


@pytest.mark.parametrize("x_axis,field", [("epoch", "epoch"), ("time", "t")])
def test_x_axis_switch_uses_epoch_or_wall_time(x_axis, field):
    s = fake_series(steps=30)
    s.scalars["epoch"] = s.step / 10.0
    s.scalars["t"] = np.cumsum(np.full(30, 0.25))
    for fig in (charts.loss_figure([s], 0.5, x_axis), charts.fig6_figure([s], 0.5, x_axis),
                charts.branch_ratio_figure(s, 0.5, x_axis), charts.dead_relu_figure([s], 0.5, x_axis)):
        lines = [t for t in fig.data if t.mode == "lines"]
        np.testing.assert_allclose(lines[0].x, s.scalars[field])
        assert fig.layout.xaxis.title.text == charts.X_AXES[x_axis][1]
    # test points sit at the x of their step: eval at steps 10 and 20
    test = [t for t in charts.loss_figure([s], 0.5, x_axis).data if t.mode == "lines+markers"][0]
    np.testing.assert_allclose(test.x, s.scalars[field][[9, 19]])
    np.testing.assert_allclose(charts.grad_norm_heatmap(s, x_axis=x_axis).data[0].x, s.scalars[field])


def test_x_axis_falls_back_to_steps_without_the_field():
    s = fake_series(steps=10)
    s.scalars["t"] = np.full(10, np.nan)
    np.testing.assert_allclose(charts.x_values(s, "time"), s.step)


def test_depth_sweep_draws_final_error_against_depth_plain_dashed():
    summaries = [{"arch": a, "depth": d, "final_train_error": e, "label": f"{a}-{d}"}
                 for a, d, e in (("plain", 8, 0.10), ("plain", 20, 0.15), ("plain", 56, 0.80),
                                 ("resnet", 8, 0.09), ("resnet", 20, 0.08), ("resnet", 56, 0.05),
                                 ("resnet", 56, 0.07))]   # two seeds of resnet-56
    fig = charts.depth_sweep_figure(summaries)
    assert_titled(fig)
    plain = next(t for t in fig.data if t.name == "plain")
    resnet = next(t for t in fig.data if t.name == "residual")
    assert list(plain.x) == [8, 20, 56] and plain.line.dash == "dash"
    np.testing.assert_allclose(plain.y, [10, 15, 80])
    np.testing.assert_allclose(resnet.y, [9, 8, 6])              # the mean of the two resnet-56 seeds
    assert any(t.name == "residual, each run" and len(t.x) == 4 for t in fig.data)
    assert charts.depth_sweep_figure([]).layout.annotations   # nothing finished yet: says so
