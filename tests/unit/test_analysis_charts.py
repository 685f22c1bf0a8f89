"""The Why it works page's figures (resnet_core/figures/analysis.py) hold exactly the data they are given."""
from __future__ import annotations

import math

import numpy as np
import pytest

from resnet_core.figures import analysis as charts
def _y(trace) -> list[float]:
    return [float(v) for v in trace.y]


def _same(a, b) -> bool:
    return len(a) == len(b) and all((math.isnan(x) and math.isnan(y)) or x == pytest.approx(y) for x, y in zip(a, b))


def test_block_profile_overlays_depths_with_plain_dashed():
    fig = charts.block_profile_figure({"plain-8": [1.0, 0.1, 0.01], "resnet-20": [1, 1.1, 1.2, 1.3, 1.2, 1.1, 1, 1, 1]},
                                      "t", "norm", names={"plain-8": ["layer1.0", "layer2.0", "layer3.0"]})
    plain, res = fig.data
    assert plain.name == "plain-8" and plain.line.dash == "dash" and res.line.dash == "solid"
    assert list(plain.x) == [0, 1, 2] and _y(plain) == [1.0, 0.1, 0.01] and len(res.y) == 9
    assert list(plain.text) == ["layer1.0", "layer2.0", "layer3.0"]
    assert fig.layout.yaxis.type == "log"


def test_log_axes_turn_zeros_and_missing_values_into_gaps():
    fig = charts.block_profile_figure({"resnet-8": [1.0, 0.0, None]}, "t", "norm")
    assert _same(_y(fig.data[0]), [1.0, float("nan"), float("nan")])


def test_ratio_vs_depth_is_log_log_per_family():
    fig = charts.ratio_vs_depth_figure({"plain": ([8, 20, 56], [2.0, 30.0, 900.0]),
                                        "residual": ([8, 20, 56], [1.5, 1.8, 2.1])})
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    assert [t.name for t in fig.data] == ["plain", "residual"]
    assert list(fig.data[0].x) == [8.0, 20.0, 56.0] and _y(fig.data[0]) == [2.0, 30.0, 900.0]


def test_branch_share_is_a_fraction_axis():
    fig = charts.branch_share_figure({"resnet-8": [0.2, 0.3, 0.4]})
    assert _y(fig.data[0]) == [0.2, 0.3, 0.4] and tuple(fig.layout.yaxis.range) == (0, 1.02)


def test_shattering_figures():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=64)
    fig = charts.line_gradient_figure({"plain-56": noise, "resnet-56": np.sin(np.linspace(0, 3, 64)) * 5})
    for trace in fig.data:  # standardised: shapes compare, not sizes
        assert np.mean(trace.y) == pytest.approx(0, abs=1e-9) and np.std(trace.y) == pytest.approx(1)
        assert trace.x[0] == 0 and trace.x[-1] == 1 and len(trace.x) == 64
    auto = charts.autocorrelation_figure({"plain-56": ([0, 1, 2], [1.0, 0.02, -0.01])})
    assert list(auto.data[0].x) == [0, 1, 2] and _y(auto.data[0]) == [1.0, 0.02, -0.01]


def test_paths_figure_draws_distribution_gradient_and_their_product():
    dist, grad = [0.125, 0.375, 0.375, 0.125], [1.0, 0.5, 0.25, 0.125]
    fig = charts.paths_figure(dist, grad)
    share, per_path, total = fig.data
    assert list(share.x) == [0, 1, 2, 3] and _y(share) == dist
    assert _y(per_path) == grad
    product = [d * g for d, g in zip(dist, grad)]
    assert _y(total) == pytest.approx([v / sum(product) for v in product])  # a share of the whole gradient
    only = charts.paths_figure(dist)
    assert len(only.data) == 1 and "3 blocks" in only.layout.title.text


def test_lesion_figures_mark_downsampling_blocks_and_undeletable_ones():
    fig = charts.lesion_single_figure(
        {"resnet-20": (["layer1.0", "layer2.0", "layer2.1"], [False, True, False], [0.1, None, 0.12])},
        {"resnet-20": 0.08})
    trace = fig.data[0]
    assert list(trace.x) == ["layer1.0", "layer2.0", "layer2.1"]
    assert _same(_y(trace), [10.0, float("nan"), 12.0])  # percent; null: cannot be deleted
    assert list(trace.marker.symbol) == ["circle", "triangle-up", "circle"]
    assert fig.layout.shapes[0].y0 == pytest.approx(8.0)  # the base error line
    by_k = charts.lesion_by_count_figure({"resnet-20": ([1, 2, 3], [0.1, 0.2, 0.4])})
    assert list(by_k.data[0].x) == [1, 2, 3] and _y(by_k.data[0]) == pytest.approx([10, 20, 40])
    reorder = charts.reorder_figure({"resnet-20": ([1.0, 0.9, 0.5], [0.08, 0.1, 0.5])})
    assert _y(reorder.data[0]) == pytest.approx([8, 10, 50]) and reorder.layout.xaxis.autorange == "reversed"


def test_decomposition_stacks_the_input_and_each_branch():
    fig = charts.decomposition_figure(["layer3.0", "layer3.1"], [0.5, 0.25], input_norm=2.0, output_norm=2.4)
    assert fig.layout.barmode == "stack"
    assert [(t.name, t.y[0]) for t in fig.data] == [("input x_l", 2.0), ("layer3.0", 0.5), ("layer3.1", 0.25),
                                                   ("output x_L", 2.4)]


def test_interpolation_figure_has_loss_and_accuracy_per_run():
    fig = charts.interpolation_figure({"resnet-20": ([-0.5, 0, 1, 1.5], [3.0, 2.3, 0.2, 0.9], [0.1, 0.1, 0.95, 0.6])})
    loss, acc = fig.data
    assert list(loss.x) == [-0.5, 0, 1, 1.5] and _y(loss) == [3.0, 2.3, 0.2, 0.9]
    assert _y(acc) == pytest.approx([10, 10, 95, 60]) and acc.yaxis == "y2"


def test_landscapes_share_one_colour_scale():
    xs = [-1.0, 0.0, 1.0]
    flat = [[1.0, 1.0, 1.0], [1.0, 0.5, 1.0], [1.0, 1.0, 1.0]]
    rough = [[9.0, 2.0, 7.0], [3.0, 0.4, 5.0], [8.0, 1.0, 6.0]]
    for build in (charts.landscape_contour_figure, charts.landscape_surface_figure):
        fig = build({"plain-20": (xs, xs, rough), "resnet-20": (xs, xs, flat)}, "log10")
        surfaces = [t for t in fig.data if t.type in ("contour", "surface")]
        # log10 of the loss: the far corners would otherwise take the whole colour range
        assert [np.asarray(t.z).tolist() for t in surfaces] == [np.log10(rough).tolist(), np.log10(flat).tolist()]
        lo = [t.zmin if t.type == "contour" else t.cmin for t in surfaces]
        hi = [t.zmax if t.type == "contour" else t.cmax for t in surfaces]
        assert lo == pytest.approx([math.log10(0.4)] * 2) and hi == pytest.approx([math.log10(9.0)] * 2)
        assert [t.showscale for t in surfaces] == [True, False]


def test_landscapes_in_the_papers_scales():
    xs = [-1.0, 0.0, 1.0]
    rough = [[90.0, 2.0, 7.0], [3.0, 0.4, 5.0], [8.0, 1.0, 6.0]]
    contour = charts.landscape_contour_figure({"plain-20": (xs, xs, rough)})
    c = [t for t in contour.data if t.type == "contour"][0]
    # raw loss at Li et al.'s levels 0.1, 0.6, ..., 9.6 (plot_2D.py: vmin 0.1, vmax 10, vlevel 0.5)
    assert np.asarray(c.z).tolist() == rough
    assert (c.contours.start, c.contours.end, c.contours.size) == (0.1, 9.6, 0.5) and c.autocontour is False
    surface = charts.landscape_surface_figure({"plain-20": (xs, xs, rough)})
    z = np.asarray([t for t in surface.data if t.type == "surface"][0].z)
    assert np.allclose(z, np.log(np.minimum(np.array(rough), 10) + 0.1), rtol=1e-12)
    assert z[0][0] == pytest.approx(math.log(10.1))      # clipped at 10
