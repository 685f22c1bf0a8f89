"""The CLI as a user runs it: a subprocess, JSON on the last stdout line, one-line errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, shared_weight, write_cifar_dir


def cli(*args, env=None):
    e = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "resnet_core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=e)


def last_json(proc):
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_train_prints_a_json_summary_and_lists_the_run(tmp_path):
    p = cli("train", "--arch", "plain", "--depth", "8", "--steps", "3", "--batch-size", "16", "--n-train", "64",
            "--n-test", "32", "--eval-every", "0", "--runs-dir", str(tmp_path), "--device", "cpu")
    assert p.returncode == 0, p.stderr
    out = last_json(p)
    assert set(out) >= {"run_id", "run_dir", "status", "steps", "train_loss", "train_acc", "test_acc", "seconds",
                        "images_per_s"}
    assert out["status"] == "finished" and out["steps"] == 3 and Path(out["run_dir"]).is_dir()
    assert "3/3" in p.stderr  # the progress bar
    runs = cli("runs", "--runs-dir", str(tmp_path), "--json")
    assert [r["run_id"] for r in json.loads(runs.stdout)] == [out["run_id"]]
    ckpt = Path(out["run_dir"]) / "checkpoints" / "last.pt"
    ev = cli("evaluate", "--checkpoint", str(ckpt), "--probes", "--device", "cpu")
    assert ev.returncode == 0, ev.stderr
    res = last_json(ev)
    assert 0 <= res["accuracy"] <= 1 and res["dataset"] == "synthetic" and res["images"] == 32
    assert len(res["probes"]["branch_response_std"]) == 3


def test_describe_reports_params_macs_and_layer_names():
    out = last_json(cli("describe", "--depth", "56", "--json"))
    assert out["params"] == 853018 and out["macs"] > 100e6
    assert out["layers"][0] == "stem.conv" and out["layers"][-1] == "fc" and len(out["layers"]) == 56
    plain = last_json(cli("describe", "--depth", "56", "--arch", "plain", "--json"))
    assert plain["params"] == out["params"]


@pytest.mark.parametrize("args,needle", [
    (["train", "--depth", "21"], "6n+2"),
    (["train", "--lr", "-1"], "learning rate"),
    (["train", "--dataset", "imagenet"], "dataset"),
    (["train", "--dataset", "cifar10", "--data-dir", "/nonexistent/cifar", "--no-download"], "cifar-10"),
    (["train", "--shortcut", "D"], "invalid choice"),
    (["train", "--dataset", "folder:/nonexistent/folder"], "/nonexistent/folder"),
    (["describe", "--depth", "12", "--block", "bottleneck"], "9n+2"),
    (["evaluate", "--checkpoint", "/nonexistent.pt"], "not found"),
    (["runs", "--runs-dir", "/dev/null/x"], None),
])
def test_invalid_values_exit_nonzero_with_one_line(args, needle):
    p = cli(*args)
    if needle is None:  # listing an absent runs dir is not an error
        assert p.returncode == 0 and "no runs" in p.stdout
        return
    assert p.returncode == 2, p.stdout
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), p.stderr
    assert needle.lower() in lines[0].lower() and "Traceback" not in p.stderr


def test_evaluate_community_checkpoint_on_cifar_format_directory(tmp_path):
    weights = shared_weight(20)
    write_cifar_dir(tmp_path, n_test=40)
    p = cli("evaluate", "--checkpoint", str(weights), "--dataset", "cifar10", "--data-dir", str(tmp_path),
            "--no-download", "--probes", "--device", "cpu")
    assert p.returncode == 0, p.stderr
    out = last_json(p)
    assert out["images"] == 40 and out["model"] == "resnet-20" and 0 <= out["accuracy"] <= 1
    stds = out["probes"]["branch_response_std"]
    assert len(stds) == 9 and all(s > 0 for s in stds)


def test_diverging_run_is_reported_not_crashed(tmp_path):
    p = cli("train", "--depth", "8", "--no-bn", "--init", "xavier", "--lr", "99", "--weight-decay", "0", "--steps",
            "30", "--batch-size", "32", "--n-train", "256", "--n-test", "32", "--eval-every", "0",
            "--feature-maps-every", "0", "--runs-dir", str(tmp_path), "--device", "cpu", "--quiet")
    out = last_json(p)
    assert p.returncode == 1 and out["status"] == "diverged" and out["steps"] < 30
    assert "learning rate" in out["error"]


# ---------------------------------------------------------------------------------------------------
# quick-scale flags, folder evaluation, progress bars (in-process: main() is what the module runs)
# ---------------------------------------------------------------------------------------------------

def _main_json(capsys, *args):
    from resnet_core.cli.main import main

    code = main(list(args))
    captured = capsys.readouterr()
    return code, (json.loads(captured.out.strip().splitlines()[-1]) if captured.out.strip() else None), captured.err


def test_describe_fractional_width_and_image_size(capsys):
    _, full, _ = _main_json(capsys, "describe", "--depth", "20", "--json")
    _, half, _ = _main_json(capsys, "describe", "--depth", "20", "--width", "0.5", "--json")
    _, small, _ = _main_json(capsys, "describe", "--depth", "20", "--width", "0.5", "--image-size", "16", "--json")
    assert full["macs"] == 40_551_040 and full["image_size"] == 32
    assert half["name"] == "resnet-20 w0.5" and half["config"]["width"] == 0.5
    assert half["params"] < full["params"] / 3.5                 # ~width^2 of the parameters
    assert small["macs"] == pytest.approx(half["macs"] / 4, rel=0.01) and small["params"] == half["params"]  # 1/4 pixels
    code, _, err = _main_json(capsys, "describe", "--width", "0.01")
    assert code == 2 and err.startswith("error:") and "width" in err


def test_train_quick_options_are_recorded_and_labelled(tmp_path, capsys):
    code, out, err = _main_json(capsys, "train", "--arch", "plain", "--depth", "8", "--width", "0.5", "--image-size", "16",
                                "--steps", "3", "--batch-size", "8", "--n-train", "40", "--n-test", "20",
                                "--large-objects", "--no-augment",
                                "--eval-every", "0", "--runs-dir", str(tmp_path), "--device", "cpu")
    assert code == 0, err
    cfg = json.loads((Path(out["run_dir"]) / "config.json").read_text())
    assert cfg["model"]["width"] == 0.5 and cfg["data"]["image_size"] == 16 and cfg["group"] == ""
    assert cfg["data"]["large_objects"] is True and cfg["data"]["augment"] is False
    assert "plain-8-w0.5-16px-large-no-aug" in out["run_id"]
    # the tqdm bar: steps, a rate and an ETA on stderr
    assert "3/3" in err and ("step/s" in err or "s/step" in err)
    ckpt = Path(out["run_dir"]) / "checkpoints" / "last.pt"
    code, ev, err = _main_json(capsys, "evaluate", "--checkpoint", str(ckpt), "--dataset", "synthetic",
                               "--n-test", "20", "--device", "cpu")
    assert code == 0, err
    assert ev["images"] == 20  # evaluated at the size it was trained at (16): a 32 px input would still run


def test_train_quiet_draws_no_progress(tmp_path, capsys):
    code, out, err = _main_json(capsys, "train", "--depth", "8", "--steps", "2", "--batch-size", "8", "--n-train", "40",
                                "--n-test", "20", "--eval-every", "0", "--runs-dir", str(tmp_path), "--device", "cpu",
                                "--quiet")
    assert code == 0 and out["steps"] == 2 and "2/2" not in err and "step" not in err


def test_evaluate_on_a_folder_uses_every_image(tmp_path, capsys):
    """Every image of a folder, each with its own folder's label: the accuracy and loss equal a hand
    evaluation of the 21 plain-colour pictures (catches a held-out 20% only, shuffled or shifted labels,
    a loss summed or averaged over batches instead of images)."""
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from resnet_core.nets.checkpoints import load_checkpoint

    colours = [(200, 30, 30), (30, 180, 40), (40, 60, 220)]
    for k, colour in enumerate(colours):
        (tmp_path / "imgs" / f"class{k}").mkdir(parents=True)
        for i in range(7):
            Image.new("RGB", (36, 30 + i), colour).save(tmp_path / "imgs" / f"class{k}" / f"{i}.png")
    code, out, err = _main_json(capsys, "train", "--depth", "8", "--steps", "2", "--batch-size", "4",
                                "--dataset", f"folder:{tmp_path / 'imgs'}", "--eval-every", "0",
                                "--runs-dir", str(tmp_path / "runs"), "--device", "cpu", "--quiet")
    assert code == 0, err
    ckpt = Path(out["run_dir"]) / "checkpoints" / "last.pt"
    code, ev, err = _main_json(capsys, "evaluate", "--checkpoint", str(ckpt), "--dataset", f"folder:{tmp_path / 'imgs'}",
                               "--device", "cpu")
    assert code == 0, err
    assert ev["images"] == 21   # all of it, not the 20% a training split would hold out
    assert ev["dataset"] == "folder" and ev["model"] == "resnet-8"
    loaded = load_checkpoint(ckpt)
    mean, std = torch.tensor(loaded.mean).view(3, 1, 1), torch.tensor(loaded.std).view(3, 1, 1)
    x = torch.stack([(torch.tensor(c, dtype=torch.float32).view(3, 1, 1).expand(3, 32, 32) / 255 - mean) / std
                     for c in colours for _ in range(7)])
    y = torch.arange(3).repeat_interleave(7)
    with torch.no_grad():
        logits = loaded.model.eval()(x)
    assert ev["accuracy"] == pytest.approx((logits.argmax(1) == y).float().mean().item(), abs=1e-6)
    assert ev["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-4)


def _raises(exc):
    def work():
        raise exc
    return work


@pytest.mark.parametrize("exc, status, line", [
    (ValueError("depth 7 cannot exist"), 2, "error: depth 7 cannot exist"),
    (RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB"), 2, "error: CUDA out of memory."),
    (FileNotFoundError(2, "No such file or directory", "/x/ckpt.pt"), 2, "error: No such file or directory: /x/ckpt.pt"),
    (KeyError("boom"), 2, "error: unexpected KeyError: 'boom' (please report it with the command line)"),
    (KeyboardInterrupt(), 130, "error: interrupted"),
])
def test_one_line_errors_turns_any_exception_into_one_line(exc, status, line, capsys):
    from resnet_core.cli.common import one_line_errors

    assert one_line_errors(_raises(exc), (ValueError,)) == status
    err = capsys.readouterr().err
    assert err.splitlines() == [line]
    assert one_line_errors(lambda: 0, (ValueError,)) == 0
