"""Shattered gradients: residual gradients stay correlated along a line of inputs, plain ones do not."""
import pytest
import torch

from resnet_core.analysis import AnalysisError, ModelSource, run_analysis
from resnet_core.analysis.shattering import (autocorrelation, calibrate_bn, gradient_line, line_autocorrelation,
                                              power_spectrum, shattering)
from resnet_core.config import DataConfig, ModelConfig
from resnet_core.data import make_shapes, normalize
from resnet_core.nets.models import build_model
from tests.conftest import store_tiny_run


def _images(n, size=16):
    imgs = torch.from_numpy(make_shapes(n, seed=1, size=size)[0].copy()).permute(0, 3, 1, 2)
    return normalize(imgs, (0.5,) * 3, (0.25,) * 3)


def test_residual_gradients_are_correlated_plain_ones_shattered_at_depth_56():
    x = _images(34)
    corr = {}
    for residual in (True, False):
        torch.manual_seed(0)
        model = calibrate_bn(build_model(ModelConfig(depth=56, residual=residual)), x[2:])
        r = shattering(model, x[0], x[1], target=0, points=64, max_lag=4)
        assert r["cross_pixel_correlation"][0] == pytest.approx(1.0, abs=1e-12)
        assert r["autocorrelation_along_line"][0] == pytest.approx(1.0, abs=1e-12)
        corr[residual] = r["neighbour_correlation"]
    assert corr[True] > 0.4 > 0.15 > abs(corr[False])   # measured: 0.66 against -0.02 (64 points)


def test_gradient_line_is_the_per_input_gradient():
    torch.manual_seed(0)
    model = calibrate_bn(build_model(ModelConfig(depth=8)).double(), _images(20).double())
    a, b = torch.randn(3, 16, 16, dtype=torch.float64), torch.randn(3, 16, 16, dtype=torch.float64)
    g = gradient_line(model, a, b, target=3, points=5, chunk=2)
    x = (0.25 * a + 0.75 * b).unsqueeze(0).requires_grad_(True)
    model(x)[0, 3].backward()
    assert torch.allclose(g[3], x.grad.flatten(), rtol=1e-10)


def test_autocorrelation_of_known_sequences():
    torch.manual_seed(0)
    same = torch.randn(1, 50).repeat(10, 1)
    assert autocorrelation(same, 3).tolist() == pytest.approx([1.0] * 4)
    alternating = torch.stack([torch.arange(50.0) * (-1) ** i for i in range(10)])
    assert autocorrelation(alternating, 2).tolist() == pytest.approx([1.0, -1.0, 1.0])


def test_run_analysis_shattering_config_and_trained(runs_dir):
    data = DataConfig(n_train=32, n_test=16)
    r = run_analysis("shattering", ModelSource(config=ModelConfig(depth=8)), data=data,
                     settings={"points": 16, "max_lag": 4, "calibration_images": 32})
    assert [(m["depth"], m["residual"]) for m in r["models"]] == [(8, True), (8, False)]
    assert len(r["t"]) == 16 and all(len(m["trace"]) == 16 and len(m["autocorrelation_along_line"]) == 5
                                  and len(m["cross_pixel_correlation"]) == 5 and len(m["power_spectrum"]) == 8
                                  for m in r["models"])
    run_id = store_tiny_run(runs_dir, "shatter-run", "tiny")
    r = run_analysis("shattering", ModelSource(run_id=run_id), data=data, runs_dir=runs_dir,
                     settings={"points": 8, "max_lag": 2, "twin": False, "calibration_images": 16})
    assert [m["label"] for m in r["models"]] == ["trained", "at initialisation"]
    with pytest.raises(AnalysisError, match="pair"):
        run_analysis("shattering", ModelSource(config=ModelConfig(depth=8)), data=data, settings={"pair": [1, 1]})


def _acf_by_hand(series, max_lag):
    """numpy, float64, one coordinate at a time: the centred series' biased autocorrelation, averaged."""
    import numpy as np

    out = np.zeros(max_lag + 1)
    for d in range(series.shape[1]):
        c = series[:, d] - series[:, d].mean()
        out += np.array([(c[: len(c) - k] * c[k:]).sum() / (c * c).sum() for k in range(max_lag + 1)])
    return out / series.shape[1]


def test_line_autocorrelation_of_white_noise_and_a_random_walk():
    gen = torch.Generator().manual_seed(0)
    white = torch.randn(512, 40, generator=gen, dtype=torch.float64)      # 512 points along the line, 40 pixels
    walk = torch.cumsum(torch.randn(512, 40, generator=gen, dtype=torch.float64), 0)
    for series in (white, walk):
        assert line_autocorrelation(series, 8).tolist() == pytest.approx(_acf_by_hand(series.numpy(), 8).tolist(),
                                                                         rel=1e-10, abs=1e-12)
    w, b = line_autocorrelation(white, 8), line_autocorrelation(walk, 8)
    assert abs(w[1]) < 0.03 and abs(w[8]) < 0.03          # white noise: gone at lag 1 (1/sqrt(512*40) ~ 0.007)
    assert b[1] > 0.9 and b[8] > 0.7                       # brown noise: decays slowly
    # the power spectrum: flat for white noise (slope ~0), 1/f² for a random walk (slope ~-2)
    assert abs(power_spectrum(white)[2].item()) < 0.2
    assert -2.3 < power_spectrum(walk)[2].item() < -1.5
