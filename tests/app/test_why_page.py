"""AppTest smoke tests of pages/why.py: every section renders, an analysis started from the page draws its
charts from the real core, and a request the core refuses is one st.error line, not a traceback."""
from __future__ import annotations

import json
import threading
from pathlib import Path

from streamlit.testing.v1 import AppTest
from tests.conftest import store_tiny_run

from dashboard.analysis_service import ESTIMATES, AnalysisService

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "pages" / "why.py")


def _figures(at: AppTest) -> list[dict]:
    """The Plotly figures on the page, as the JSON the browser receives."""
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def _run_settled(at: AppTest) -> AppTest:
    """Runs the page, waits for the cost estimates it asked for, and runs it again to show them."""
    at.run()
    assert ESTIMATES.wait(120), "cost estimates did not finish"
    return at.run()


def _wait_idle(timeout: float = 180.0) -> None:
    service = AnalysisService.shared()
    keys = list(service._jobs)
    assert service.wait(keys, timeout), "analysis jobs did not finish"


def _start_and_draw(at: AppTest, *names: str, tab: int | None = None) -> dict[str, dict]:
    """Presses the Start of each named section, waits for the worker and reruns the page: the figures drawn,
    by title, once no exception is raised and no error line is on the page (or in its tab ``tab``)."""
    for name in names:
        at.button(key=f"why_{name}_start").click()
    at.run()
    _wait_idle()
    at.run()
    errors = at.error if tab is None else at.tabs[tab].error
    assert not at.exception and not errors, [e.value for e in errors]
    return {f["layout"]["title"]["text"]: f for f in _figures(at)}


def test_renders_every_section(runs_dir):
    at = _run_settled(AppTest.from_file(PAGE, default_timeout=120))
    assert not at.exception
    assert at.title[0].value == "Why it works"
    assert [t.label for t in at.tabs] == ["Gradient flow", "Shattered gradients", "Paths", "Lesions",
                                          "Layer responses (Fig. 7)", "1-D interpolation", "Loss landscape"]
    text = " ".join(c.value for c in at.caption) + " ".join(i.value for i in at.info)
    for marker in ("∂E/∂x_l = ∂E/∂x_L (1 + ∂ΣF/∂x_l)", "Balduzzi et al. 2017", "Veit et al. 2016: unrolling",
                   "He et al. 2015, Fig. 7", "Goodfellow et al. 2015", "Li et al. 2018"):
        assert marker in text
    assert at.button(key="why_gradient-flow_start").disabled is False
    assert any(c.value.startswith("Estimated ") for c in at.caption)


def test_gradient_flow_from_the_page_draws_its_charts(runs_dir):
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.multiselect(key="why_gf_depths").set_value([8, 20])
    at.number_input(key="why_gf_batch").set_value(4)
    _run_settled(at)
    # the estimate says what it rests on: the rate timed here and this machine's history of the analysis
    assert any(c.value.startswith("Estimated ") and "plain-8 x 4 images" in c.value
               and "GMAC/s measured here (cpu)" in c.value for c in at.caption)
    figures = _start_and_draw(at, "gradient-flow")
    profile = figures["Gradient reaching each block's input, per element (RMS)"]
    # Four nets (plain and residual, depth 8 and 20), one curve each with one point per block: 3n.
    assert sorted((t["name"], len(t["y"])) for t in profile["data"]) == [
        ("plain-20", 9), ("plain-8", 3), ("resnet-20", 9), ("resnet-8", 3)]
    ratio = figures["Gradient at the input over gradient at the output, by depth"]
    assert sorted(t["name"] for t in ratio["data"]) == ["plain, per element", "plain, raw norms",
                                                        "residual, per element", "residual, raw norms"]
    assert all(list(t["x"]) == [8.0, 20.0] for t in ratio["data"])
    # the "+1" view: the shallowest residual net beside its pre-activation twin, with the ReLU mask
    (plus,) = [f for t, f in figures.items() if t.startswith("The \"+1\"")]
    assert sorted(t["name"] for t in plus["data"]) == ["preact-resnet-8 pre-activation", "resnet-8 post-activation"]
    mask = figures["Share of each block's output gradient that passes its output ReLU, ‖u‖/‖v‖"]
    pre = next(t for t in mask["data"] if t["name"] == "pre-activation")
    assert list(pre["y"]) == [1.0, 1.0, 1.0]
    assert any("fitted within each stage" in c.value for c in at.caption)
    assert len(at.get("download_button")) == 2  # CSV and HTML exports

    # The result stays on the page when the settings change, marked as the last complete one.
    at.multiselect(key="why_gf_depths").set_value([8]).run()
    assert len(_figures(at)) == len(figures)
    assert any("Showing the last complete result" in c.value for c in at.caption)


def test_a_request_the_core_refuses_is_one_error_line(runs_dir, tmp_path, monkeypatch):
    broken = tmp_path / "data" / "cifar-10-batches-py"
    broken.mkdir(parents=True)
    (broken / "data_batch_1").write_bytes(b"not a pickle")
    monkeypatch.setenv("RESNET_LAB_DATA", str(tmp_path / "data"))
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.radio(key="why_data").set_value("CIFAR-10")
    _run_settled(at)
    assert not at.exception
    errors = [e.value for e in at.tabs[0].error]  # the Gradient flow tab; the other sections refuse too
    assert len(errors) == 1 and errors[0].startswith("plain-20: CIFAR-10 file ") and "\n" not in errors[0], errors
    assert at.button(key="why_gradient-flow_start").disabled


def test_lesion_of_a_stored_run_and_a_broken_checkpoint_is_one_error(runs_dir):
    good = store_tiny_run(runs_dir, "tiny-good", "resnet-tiny")
    bad = store_tiny_run(runs_dir, "tiny-bad", "resnet-broken")
    (runs_dir / bad / "checkpoints" / "last.pt").write_bytes(b"this is not a checkpoint")
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.selectbox(key="why_le_model").set_value(f"run:{bad}")
    at.number_input(key="why_le_images").set_value(50)
    at.number_input(key="why_le_draws").set_value(1)
    _run_settled(at)
    # The core reads the checkpoint to estimate the cost already: the refusal comes before Start.
    assert not at.exception
    errors = [e.value for e in at.tabs[3].error]  # the Lesions tab
    assert len(errors) == 1 and errors[0].startswith("resnet-broken · -bad: not a PyTorch checkpoint"), errors
    assert "\n" not in errors[0]
    assert at.button(key="why_lesion_start").disabled

    at.selectbox(key="why_le_model").set_value(f"run:{good}")
    _run_settled(at)
    figures = _start_and_draw(at, "lesion", tab=3)  # the other tabs also list the broken run
    single = figures["Test error after deleting one block (▲: downsampling block)"]["data"][0]
    assert single["x"] == ["layer1.0", "layer2.0", "layer3.0"] and single["name"] == "resnet-tiny · good"
    assert single["marker"]["symbol"] == ["circle", "triangle-up", "triangle-up"]
    assert all(0 <= y <= 100 for y in single["y"] if y is not None)
    assert "Mean test error after deleting k random blocks" in figures


def test_interpolation_and_landscape_of_a_stored_run(runs_dir):
    from resnet_core.nets.checkpoints import load_checkpoint, save_checkpoint

    lacking = store_tiny_run(runs_dir, "tiny-no-init", "resnet-noinit")
    run_id = store_tiny_run(runs_dir, "tiny-landscape", "resnet-tiny")
    ckpts = runs_dir / run_id / "checkpoints"
    loaded = load_checkpoint(ckpts / "last.pt")
    save_checkpoint(ckpts / "init.pt", loaded.model, {"model": loaded.model_cfg.to_dict()}, step=0,
                    classes=loaded.classes, mean=loaded.mean, std=loaded.std)
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.multiselect(key="why_in_runs").set_value([run_id, lacking])
    at.multiselect(key="why_la_runs").set_value([run_id])
    at.slider(key="why_in_points").set_value(5)
    at.number_input(key="why_in_images").set_value(50)
    at.slider(key="why_la_grid").set_value(5)
    at.number_input(key="why_la_images").set_value(50)
    _run_settled(at)
    # A run that saved no initial weights is left out of the line, and the page says why.
    assert any("no initial weights saved" in c.value and "left out" in c.value for c in at.tabs[5].caption)
    figures = _start_and_draw(at, "interpolate", "landscape")
    line = figures["Loss along the straight line from the initial to the trained weights"]["data"]
    assert [t["name"] for t in line] == ["resnet-tiny · cape loss", "resnet-tiny · cape accuracy"]
    assert line[0]["x"] == [-0.5, 0.0, 0.5, 1.0, 1.5]
    assert len(line[0]["x"]) == 5
    contour = [t for t in figures["Loss landscape around the trained weights (raw-loss contours at Li et al.'s "
                                  "levels 0.1 to 10)"]["data"] if t["type"] == "contour"]
    assert len(contour) == 1 and len(contour[0]["z"]) == 5 and all(len(row) == 5 for row in contour[0]["z"])
    assert "Loss landscape as a surface (ln(min(loss, 10) + 0.1), one scale)" in figures
    assert any("no claim of chaos" in c.value for c in at.tabs[6].caption)


def test_shattering_and_paths_at_initialisation(runs_dir):
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.multiselect(key="why_sh_depths").set_value([8])
    at.slider(key="why_sh_points").set_value(32)
    at.selectbox(key="why_pa_depth").set_value(8)
    at.number_input(key="why_pa_draws").set_value(1)
    at.number_input(key="why_pa_batch").set_value(2)
    _run_settled(at)
    figures = _start_and_draw(at, "shattering", "paths")
    line = figures["Gradient along a line between two images (standardised)"]["data"]
    assert sorted((t["name"], len(t["y"])) for t in line) == [("plain-8 at initialisation", 32),
                                                              ("resnet-8 at initialisation", 32)]
    assert "Autocorrelation of each pixel's gradient along the line (mean over pixels)" in figures
    assert "Power spectrum of the gradient along the line" in figures
    paths = figures["The unrolled ensemble of 3 blocks"]["data"]
    assert paths[0]["y"] == [0.125, 0.375, 0.375, 0.125]  # Binomial(3, 1/2), exactly
    assert len(paths) == 3 and len(paths[1]["y"]) == 4
    assert any("95% of them pass through" in c.value for c in at.tabs[2].caption)


def test_cancel_from_the_page_while_the_worker_is_busy(runs_dir):
    service = AnalysisService.shared()
    gate = threading.Event()
    service.submit("test-busy", "an earlier analysis", lambda progress, cancel: gate.wait(60) and {"done": True})
    try:
        at = AppTest.from_file(PAGE, default_timeout=120).run()
        at.multiselect(key="why_gf_depths").set_value([8])
        at.radio(key="why_gf_arch").set_value("residual")
        at.number_input(key="why_gf_batch").set_value(2)
        _run_settled(at)
        at.button(key="why_gradient-flow_start").click().run()
        # Queued behind the earlier analysis: a progress bar and Cancel.
        assert any("resnet-8: queued" in p.proto.text for p in at.get("progress"))
        at.button(key="why_gradient-flow_cancel").click().run()
        assert not at.exception
        assert [w.value for w in at.tabs[0].warning] == ["resnet-8: cancelled."]
        assert not at.get("plotly_chart")
    finally:
        gate.set()
    _wait_idle()


def test_layer_responses_of_a_plain_and_a_residual_run(runs_dir):
    from resnet_core.nets.checkpoints import save_checkpoint
    from resnet_core.config import ModelConfig, RunConfig, TrainConfig
    from resnet_core.data import SHAPE_CLASSES
    from resnet_core.nets.models import build_model
    from resnet_core.training.runs import RunStore

    cfg = RunConfig(model=ModelConfig(depth=8, residual=False), train=TrainConfig(steps=1), name="plain-tiny")
    writer = RunStore(runs_dir).create(cfg, status="finished", run_id="tiny-plain")
    save_checkpoint(writer.path / "checkpoints" / "last.pt", build_model(cfg.model), cfg.to_dict(), step=1,
                    classes=list(SHAPE_CLASSES), mean=(0.5,) * 3, std=(0.25,) * 3)
    writer.close()
    store_tiny_run(runs_dir, "tiny-res", "resnet-tiny")
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert sorted(at.multiselect(key="why_re_models").value) == ["run:tiny-plain", "run:tiny-res"]
    at.number_input(key="why_re_images").set_value(50)
    _run_settled(at)
    figures = _start_and_draw(at, "responses")
    data = figures["Layer responses (Fig. 7 of He et al. 2015)"]["data"]
    # the stem's BN and both BNs of each of the 3 basic blocks: 7 layers per net, by layer and sorted
    assert len(data) == 4 and all(len(t["y"]) == 7 for t in data)
    assert any("every 3x3 conv's BN output" in c.value for c in at.tabs[4].caption)
    assert any(c.value.startswith("Setting: reduced: images 50") for c in at.tabs[4].caption)
