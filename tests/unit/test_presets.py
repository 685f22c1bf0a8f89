"""Scales, preset configs, run summaries, verdicts and the duration estimate (plumbing, not findings)."""
import json

import pytest

from resnet_core.config import ConfigError, DataConfig, RunConfig
from resnet_core.experiments.presets import PRESETS, preset_configs, verdict
from resnet_core.experiments.scales import SCALES, default_scale, preset_base, scale_config
from resnet_core.experiments.verdicts import run_summary


def test_scales_quick_and_paper_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/cifar-10-batches-py here
    assert SCALES == ("quick", "paper")
    start, q, p = scale_config("quick"), preset_base("quick"), scale_config("paper")
    # the quick default Start: a shallow net that gets past the plateau fast, on the presets' data
    assert (start.model.depth, start.data.image_size, start.train.batch_size) == (8, 16, 128)
    assert start.train.steps <= 600
    # the quick presets: 16x16 at widths 8/16/32, few steps with a warm-up
    assert (q.data.image_size, q.model.width, q.model.stage_widths) == (16, 0.5, (8, 16, 32))
    assert q.train.steps <= 2000 and q.train.batch_size <= 64 and q.train.warmup_steps > 0
    assert preset_base("paper") == p   # paper: the default run is the presets' base
    # the paper's setting: widths 16/32/64 at 32x32, batch 128, lr 0.1, /10 at 32k and 48k of 64k
    assert (p.data.image_size, p.model.width, p.model.stage_widths) == (32, 1, (16, 32, 64))
    assert (p.train.steps, p.train.batch_size, p.train.lr, p.train.schedule) == (64000, 128, 0.1, "step")
    assert (p.train.momentum, p.train.weight_decay, p.train.warmup_steps) == (0.9, 1e-4, 0)
    assert p.data.name == "synthetic"  # CIFAR-10 absent: the shapes set at 32


def test_paper_scale_uses_cifar10_when_present(tmp_path, monkeypatch):
    (tmp_path / "data" / "cifar-10-batches-py").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    p = scale_config("paper")
    assert p.data.name == "cifar10" and p.data.image_size == 32
    # a data set given by the user keeps its source and gets the scale's size
    q = preset_base("quick", DataConfig(name="folder", path="/x"))
    assert (q.data.name, q.data.path, q.data.image_size) == ("folder", "/x", 16)


def test_default_scale_is_quick_without_a_cuda_gpu():
    import torch

    expected = "paper" if torch.cuda.is_available() else "quick"
    assert default_scale("auto") == expected
    assert default_scale("cpu") == "quick"


def test_bad_scale_and_preset_are_refused():
    with pytest.raises(ConfigError, match="quick, paper"):
        scale_config("huge")
    with pytest.raises(ConfigError, match="fig6"):
        preset_configs("fig7", "quick")


@pytest.mark.parametrize("key", list(PRESETS))
@pytest.mark.parametrize("scale", SCALES)
def test_every_preset_shares_seed_group_and_data(key, scale):
    cfgs = preset_configs(key, scale, seed=3, group="g1")
    assert len(cfgs) >= 2
    assert {c.train.seed for c in cfgs} == {3} and {c.group for c in cfgs} == {"g1"}
    assert len({json.dumps(c.data.to_dict(), sort_keys=True) for c in cfgs}) == 1
    assert len({json.dumps(c.train.to_dict(), sort_keys=True) for c in cfgs}) == 1
    assert len({c.label for c in cfgs}) == len(cfgs)   # each run tells itself apart
    for c in cfgs:  # round-trips through config.json with its group
        assert RunConfig.from_dict(json.loads(c.to_json())) == c


def test_quick_presets_and_the_default_start_train_large_shapes_without_augmentation():
    d = preset_configs("fig6", "quick")[0].data
    assert (d.image_size, d.large_objects, d.augment) == (16, True, False)
    start = scale_config("quick").data       # the default Start trains on the same data
    assert start == d
    paper = preset_configs("fig6", "paper")[0].data
    assert (paper.large_objects, paper.augment) == (False, True)
    cifar = preset_configs("fig6", "quick", dataset=DataConfig(name="cifar10", path="data"))[0]
    assert (cifar.data.large_objects, cifar.data.augment) == (False, False)   # a shapes-only option
    assert cifar.label == "plain-20 w0.5 16px no-aug"


def test_preset_architectures():
    fig6 = preset_configs("fig6", "quick")
    assert [(c.model.residual, c.model.depth) for c in fig6] == [(False, 20), (False, 56), (True, 20), (True, 56)]
    assert fig6[0].label == "plain-20 w0.5 16px large no-aug"   # what quick changes shows in the label
    assert [c.model.shortcut for c in preset_configs("options", "quick")] == ["A", "B", "C"]
    assert [c.model.preact for c in preset_configs("preact", "quick")] == [False, True]
    sweep = preset_configs("depth-sweep", "paper")
    assert sorted((c.model.residual, c.model.depth) for c in sweep) == sorted(
        (r, d) for r in (False, True) for d in (8, 20, 32, 44, 56))


def _summary(arch, depth, err, seed=0, **extra):
    return {"label": f"{arch}-{depth}", "arch": arch, "depth": depth, "seed": seed, "steps": 100,
            "final_train_error": err, "final_test_error": err, "branch_std_mean": extra.pop("branch", None), **extra}


def _fig6(p20, p56, r20, r56, seed=0, b20=None, b56=None):
    return [_summary("plain", 20, p20, seed), _summary("plain", 56, p56, seed),
            _summary("resnet", 20, r20, seed, branch=b20), _summary("resnet", 56, r56, seed, branch=b56)]


def test_fig6_verdict_holds_with_the_issue_separations():
    v = verdict("fig6", _fig6(0.19, 0.84, 0.10, 0.27, b20=0.8, b56=0.5))
    assert v["holds"] is True
    checks = {c["name"]: c for c in v["checks"]}
    assert checks["plain-56 minus plain-20"]["value"] == pytest.approx(65.0)
    assert checks["plain-56 minus ResNet-56"]["value"] == pytest.approx(57.0)
    assert checks["ResNet-20 minus plain-20"]["value"] == pytest.approx(-9.0)
    fig7 = checks["Fig. 7: ResNet-20 minus ResNet-56 mean branch std"]
    assert fig7["holds"] and fig7["reported_only"]
    assert v["line"].startswith("plain-56 ends 65 points above plain-20: degradation shown")


@pytest.mark.parametrize("errors,failing", [
    ((0.30, 0.35, 0.10, 0.10), "plain-56 minus plain-20"),     # only 5 points of degradation
    ((0.19, 0.84, 0.10, 0.70), "plain-56 minus ResNet-56"),    # the deep ResNet barely better
    ((0.19, 0.84, 0.21, 0.27), "ResNet-20 minus plain-20"),    # ResNet-20 2 points worse
])
def test_fig6_verdict_fails_each_separation(errors, failing):
    v = verdict("fig6", _fig6(*errors))
    assert v["holds"] is False
    assert [c["name"] for c in v["checks"] if not c["holds"] and not c.get("reported_only")] == [failing]


def test_fig6_verdict_per_seed_and_fig7_not_required():
    runs = _fig6(0.19, 0.84, 0.10, 0.27, seed=0, b20=0.5, b56=0.8) + _fig6(0.19, 0.25, 0.10, 0.20, seed=1)
    v = verdict("fig6", runs)
    assert v["holds"] is False and v["seeds"] == 2 and v["seeds_holding"] == 1
    assert "1/2 seeds hold" in v["line"]
    assert {c["seed"] for c in v["checks"]} == {0, 1}
    only_seed0 = verdict("fig6", runs[:4])
    assert only_seed0["holds"] is True  # the Fig. 7 check failing (0.5 < 0.8) is reported, not required


def test_other_verdicts():
    opts = [dict(_summary("resnet", 20, e), shortcut=s) for s, e in (("A", 0.10), ("B", 0.09), ("C", 0.08))]
    v = verdict("options", opts)
    assert v["holds"] and v["checks"][0]["value"] == pytest.approx(2.0) and "option A ends at 10.0%" in v["line"]
    opts[0]["final_train_error"] = 0.30
    assert not verdict("options", opts)["holds"]
    pre = [dict(_summary("resnet", 20, 0.12), preact=False), dict(_summary("resnet", 20, 0.10), preact=True)]
    v = verdict("preact", pre)
    assert v["holds"] and "2.0 points below" in v["line"]
    sweep = [_summary("plain", d, e) for d, e in ((8, 0.05), (20, 0.15), (56, 0.80))] + \
            [_summary("resnet", d, e) for d, e in ((8, 0.05), (20, 0.08), (56, 0.10))]
    v = verdict("depth-sweep", sweep)
    assert v["holds"] and v["line"] == "plain error grows with depth from 5.0% to 80.0% while ResNet stays at or below 10.0%"
    assert not verdict("depth-sweep", [dict(s, final_train_error=0.1) for s in sweep])["holds"]


def test_run_summary_reads_final_errors_and_branch_std():
    cfg = preset_configs("fig6", "quick")[2]  # ResNet-20
    records = [{"type": "step", "step": i + 1, "train_acc": 0.5, "branch_std": [1.0, 2.0, 3.0]} for i in range(9)]
    records += [{"type": "step", "step": 10, "train_acc": 0.9, "branch_std": [0.5, 1.0, 1.5]},
                {"type": "eval", "step": 10, "test_acc": 0.8, "partial": False}]
    s = run_summary(cfg, records)
    assert (s["arch"], s["depth"], s["seed"], s["steps"]) == ("resnet", 20, 0, 10)
    assert s["final_train_error"] == pytest.approx(0.1) and s["final_test_error"] == pytest.approx(0.2)
    assert s["branch_std_mean"] == pytest.approx(1.0)
    assert run_summary(preset_configs("fig6", "quick")[0], records)["branch_std_mean"] is None  # plain




def test_run_summary_carries_the_papers_figure_for_paper_scale_cifar_runs():
    cifar = DataConfig(name="cifar10", path="data", download=False)
    records = [{"type": "step", "step": 1, "train_acc": 0.5}]
    plain20, plain56, resnet20, resnet56 = preset_configs("fig6", "paper", dataset=cifar)
    assert run_summary(resnet56, records)["paper_test_error"] == pytest.approx(0.0697)
    assert run_summary(resnet20, records)["paper_test_error"] == pytest.approx(0.0875)
    assert run_summary(plain56, records)["paper_test_error"] is None  # Fig. 6 draws it, states no number
    assert "paper_test_error" not in run_summary(preset_configs("fig6", "quick")[2], records)


def test_fig7_check_compares_residual_with_plain_of_the_same_depth():
    # He et al. 2015, Fig. 7: residual nets respond less than plain nets of the same depth (the main claim),
    # from the std of every BN after a 3x3 conv (layer_response_std), plain and residual alike
    runs = [dict(_summary("plain", 20, 0.19), response_std_mean=1.2), dict(_summary("plain", 56, 0.84), response_std_mean=1.5),
            dict(_summary("resnet", 20, 0.10), response_std_mean=0.9), dict(_summary("resnet", 56, 0.27), response_std_mean=0.7)]
    checks = {c["name"]: c for c in verdict("fig6", runs)["checks"]}
    assert checks["Fig. 7: plain-20 minus ResNet-20 mean layer response std"]["value"] == pytest.approx(0.3)
    assert checks["Fig. 7: plain-56 minus ResNet-56 mean layer response std"]["holds"]
    assert checks["Fig. 7: ResNet-20 minus ResNet-56 mean layer response std"]["holds"]
    assert all(c["reported_only"] for n, c in checks.items() if n.startswith("Fig. 7"))
    runs[1]["response_std_mean"] = 0.5            # the plain-56 responding less than the ResNet-56: fails
    checks = {c["name"]: c for c in verdict("fig6", runs)["checks"]}
    assert not checks["Fig. 7: plain-56 minus ResNet-56 mean layer response std"]["holds"]


def test_run_summary_reads_the_layer_responses_for_plain_and_residual():
    records = [{"type": "step", "step": 1, "train_acc": 0.5, "layer_response_std": [3.0, 3.0]},
               {"type": "step", "step": 2, "train_acc": 0.5, "layer_response_std": [1.0, 2.0, 3.0]}]
    for cfg in preset_configs("fig6", "quick")[:3:2]:      # plain-20 and ResNet-20
        assert run_summary(cfg, records)["response_std_mean"] == pytest.approx(2.0)


def _checks(kind, runs):
    v = verdict(kind, runs)
    return v["holds"], [(c["name"], c["value"], c["holds"]) for c in v["checks"] if not c.get("reported_only")]


def test_verdict_numbers_by_hand_half_a_point_either_side_of_each_threshold():
    """Every required check's value, in points, against a hand subtraction, on summaries written here
    half a point inside and outside each threshold. Catches errors compared as fractions instead of
    points, a sign or pair swapped, >= written as <= (or the reverse), and a depth sweep read in the
    order the runs come instead of by depth."""
    assert _checks("fig6", _fig6(0.200, 0.305, 0.100, 0.100)) == (True, [
        ("plain-56 minus plain-20", 10.5, True), ("plain-56 minus ResNet-56", 20.5, True),
        ("ResNet-20 minus plain-20", -10.0, True)])
    assert _checks("fig6", _fig6(0.200, 0.295, 0.100, 0.100)) == (False, [
        ("plain-56 minus plain-20", 9.5, False), ("plain-56 minus ResNet-56", 19.5, False),
        ("ResNet-20 minus plain-20", -10.0, True)])
    assert _checks("fig6", _fig6(0.200, 0.500, 0.215, 0.100))[1][2] == ("ResNet-20 minus plain-20", 1.5, False)
    assert _checks("fig6", _fig6(0.200, 0.500, 0.205, 0.100))[1][2] == ("ResNet-20 minus plain-20", 0.5, True)
    for pre, value, holds in ((0.1115, 1.15, False), (0.1085, 0.85, True)):
        runs = [dict(_summary("resnet", 20, 0.100), preact=False), dict(_summary("resnet", 20, pre), preact=True)]
        assert _checks("preact", runs) == (holds, [("pre- minus post-activation", value, holds)])
    for b, value, holds in ((0.155, 5.5, False), (0.145, 4.5, True)):
        opts = [dict(_summary("resnet", 20, e), shortcut=s) for s, e in (("A", 0.10), ("B", b), ("C", 0.12))]
        assert _checks("options", opts) == (holds, [("spread of options A/B/C", value, holds)])
    for deepest, rise, gap, holds in ((0.305, 10.5, 20.5, True), (0.295, 9.5, 19.5, False)):
        sweep = [_summary("plain", 32, deepest), _summary("resnet", 8, 0.05), _summary("plain", 8, 0.20),
                 _summary("resnet", 32, 0.10), _summary("plain", 20, 0.25)]   # not in depth order
        assert _checks("depth-sweep", sweep) == (holds, [
            ("plain-32 minus plain-8", rise, holds), ("deepest plain minus deepest ResNet", gap, holds)])
