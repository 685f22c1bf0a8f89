"""A paper preset's group of runs on the pages: the one-line verdict once every run has ended, the
group picker of Compare, the depth-sweep chart. The runs are written straight into a run store with
synthetic metrics (the way the trainer writes them), so no training happens here."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from resnet_core.experiments import presets as core
from resnet_core.experiments import scales
from resnet_core.training.runs import RunStore

ROOT = Path(__file__).resolve().parents[2]
TRAIN, COMPARE = str(ROOT / "pages" / "train.py"), str(ROOT / "pages" / "compare.py")
DEGRADED = {("plain", 20): 0.20, ("plain", 56): 0.80, ("resnet", 20): 0.12, ("resnet", 56): 0.08}


OPEN_WRITERS: list = []


def write_group(runs_dir: Path, key: str, final_error, steps: int = 40, status: str = "finished",
                unfinished: int = 0) -> tuple[str, list[str]]:
    """A preset group at quick scale whose training accuracy climbs linearly to 1 - final_error(cfg);
    the last ``unfinished`` runs are left "running" by this process (so still active: their writers
    stay open until the ``store_dir`` fixture ends)."""
    group = core.new_group_id(key, "quick")
    store = RunStore(runs_dir)
    ids = []
    cfgs = core.preset_configs(key, "quick", group=group)
    for n, cfg in enumerate(cfgs):
        err = final_error(cfg)
        writer = store.create(cfg, status="running")
        for step in range(1, steps + 1):
            acc = 0.1 + (1 - err - 0.1) * step / steps
            writer({"type": "step", "step": step, "epoch": step / 10, "t": step * 0.1, "lr": 0.1,
                    "train_loss": 2.3 * (1 - acc), "train_acc": acc, "images_per_s": 100.0, "branch_std": [0.5] * 3})
        writer({"type": "eval", "step": steps, "test_loss": 1.0, "test_acc": 1 - err})
        if n < len(cfgs) - unfinished:
            writer.set_status(status, steps=steps)
            writer.close()
        else:
            OPEN_WRITERS.append(writer)  # its writer's lock held: the run is alive until the test ends
        ids.append(writer.run_id)
    return group, ids


def fig6_error(cfg) -> float:
    return DEGRADED[("resnet" if cfg.model.residual else "plain", cfg.model.depth)]


@pytest.fixture
def store_dir(tmp_path, monkeypatch):
    d = tmp_path / "runs"
    monkeypatch.setenv("RESNET_LAB_RUNS", str(d))
    yield d
    while OPEN_WRITERS:
        OPEN_WRITERS.pop().close()


def _texts(elements) -> list[str]:
    return [e.value for e in elements]


def test_train_page_shows_the_verdict_of_a_finished_fig6_group(store_dir):
    _, ids = write_group(store_dir, "fig6", fig6_error)
    at = AppTest.from_file(TRAIN, default_timeout=60)
    at.session_state["shown_runs"] = ids
    at.run()
    assert not at.exception and not at.error, _texts(at.error)
    (verdict,) = _texts(at.success)
    # 80% - 20% training error at the end (the mean of the last 10% of steps, so a little above the final value)
    assert verdict.startswith("**Verdict:** plain-56 ends 58 points above plain-20: degradation shown")
    assert "Degradation (Fig. 6)" in _texts(at.subheader)
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    fig6 = [s for s in specs if s["layout"]["title"]["text"].startswith("Training error by depth")]
    assert len(fig6) == 1
    (fig6_smoothing,) = [s for s in at.slider if s.key.startswith("train_fig6_")]
    assert fig6_smoothing.value == pytest.approx(0.9)                 # the Fig. 6 view smoothed by default
    assert any(t["name"].endswith("(raw)") for t in fig6[0]["data"])


def test_a_group_still_training_says_how_many_runs_have_ended(store_dir):
    _, ids = write_group(store_dir, "fig6", fig6_error, unfinished=1)
    at = AppTest.from_file(TRAIN, default_timeout=60)
    at.session_state["shown_runs"] = ids[:2]          # part of the group shown: the whole group is judged
    at.run()
    assert not at.exception
    assert not at.success
    assert any("when all 4 runs have ended (3 so far)" in i for i in _texts(at.info))


def test_a_failed_degradation_says_so(store_dir):
    flat = lambda cfg: 0.2 if cfg.model.residual or cfg.model.depth == 20 else 0.22   # noqa: E731
    _, ids = write_group(store_dir, "fig6", flat)
    at = AppTest.from_file(TRAIN, default_timeout=60)
    at.session_state["shown_runs"] = ids
    at.run()
    assert not at.success
    assert any(w.startswith("**Verdict:** plain-56 ends 2 points above plain-20: no degradation")
               for w in _texts(at.warning))


def test_compare_selects_a_group_and_shows_its_verdict(store_dir):
    group, ids = write_group(store_dir, "fig6", fig6_error)
    RunStore(store_dir).create(scales.scale_config("quick"), status="finished").close()   # a run of no group
    at = AppTest.from_file(COMPARE, default_timeout=60).run()
    assert not at.exception
    picker = at.selectbox(key="compare_group")
    (option,) = picker.options                          # the one group; the ungrouped run is not offered
    assert option.startswith("Degradation (Fig. 6) · quick · ") and option.endswith(" · 4 runs")
    at.multiselect(key="compare_runs").set_value([]).run()
    assert not at.success                               # nothing selected: no verdict
    at.selectbox(key="compare_group").set_value(group).run()
    assert sorted(at.multiselect(key="compare_runs").value) == sorted(ids)
    assert any(s.startswith("**Verdict:** plain-56 ends 58 points above plain-20") for s in _texts(at.success))


def test_depth_sweep_group_gets_its_chart(store_dir):
    sweep = lambda cfg: 0.05 if cfg.model.residual else 0.05 + cfg.model.depth / 70   # noqa: E731
    group, _ = write_group(store_dir, "depth-sweep", sweep, steps=20)
    at = AppTest.from_file(COMPARE, default_timeout=60).run()
    assert not at.exception
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    (chart,) = [s for s in specs if s["layout"]["title"]["text"].startswith("Final training error against depth")]
    plain = next(t for t in chart["data"] if t["name"] == "plain")
    assert list(plain["x"]) == list(core.SWEEP_DEPTHS)
    assert any(s.startswith("**Verdict:** plain error grows with depth") for s in _texts(at.success))
