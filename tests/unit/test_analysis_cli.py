"""``python -m resnet_core analyze``: one JSON line, charts in --out, one-line errors with exit status 2."""
import json
import subprocess
import sys

import pytest

from resnet_core.cli.main import main
from tests.conftest import ROOT, store_tiny_run

TINY = ["--dataset", "synthetic", "--n-train", "32", "--n-test", "16"]


def _run(capsys, *argv):
    code = main(["analyze", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_gradient_flow_json_and_charts(capsys, tmp_path):
    code, out, err = _run(capsys, "gradient-flow", "--depth", "8", "--depths", "8,14", "--batch-size", "4",
                          "--set", "sweep_batch_size=2", "--out", str(tmp_path / "o"), *TINY)
    assert code == 0, err
    r = json.loads(out.strip().splitlines()[-1])
    for key in ("blocks", "input_grad_norm", "ratio", "seconds", "peak_memory_mb", "sweep"):
        assert key in r
    assert [e["depth"] for e in r["sweep"]] == [8, 8, 14, 14]
    for suffix in ("json", "html", "png"):
        f = tmp_path / "o" / f"gradient-flow.{suffix}"
        assert f.is_file() and f.stat().st_size > 1000
    assert (tmp_path / "o" / "gradient-flow.png").read_bytes()[:4] == b"\x89PNG"
    assert "plotly" in (tmp_path / "o" / "gradient-flow.html").read_text()
    assert "100%" in err  # the progress bar on stderr


def test_paths_counts_only(capsys):
    code, out, _ = _run(capsys, "paths", "--depth", "110", "--set", "measure=false", "--quiet", *TINY)
    assert code == 0
    r = json.loads(out.strip().splitlines()[-1])
    assert r["blocks"] == 54 and len(r["length_distribution"]) == 55


def test_lesion_on_a_stored_run(capsys, runs_dir):
    run_id = store_tiny_run(runs_dir, "cli-run", "tiny")
    code, out, err = _run(capsys, "lesion", "--run", run_id, "--runs-dir", str(runs_dir), "--images", "16",
                          "--draws", "1", "--set", "swaps=[1]", "--quiet", *TINY)
    assert code == 0, err
    r = json.loads(out.strip().splitlines()[-1])
    assert 0 <= r["base_error"] <= 1 and len(r["single"]) == 3 and r["by_count"]
    assert {"block", "downsampling", "error"} <= set(r["single"][0])


@pytest.mark.parametrize("argv, message", [
    (["gradient-flow", "--depths", "8,9"], "depth 9"),
    (["gradient-flow", "--depths", "8,x"], "comma-separated"),
    (["gradient-flow", "--points", "5"], "does not apply"),
    (["gradient-flow", "--set", "bogus=1"], "no setting"),
    (["gradient-flow", "--depth", "9"], "depth 9"),
    (["lesion"], "trained"),
    (["lesion", "--checkpoint", "/nonexistent.th"], "not found"),
    (["lesion", "--run", "nope"], "no run"),
    (["landscape", "--run", "a", "--checkpoint", "b"], "not both"),
    (["paths", "--arch", "plain"], "plain"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, runs_dir, argv, message):
    code, out, err = _run(capsys, *argv, "--quiet", *TINY)
    assert code == 2
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_estimate_only(capsys):
    code, out, _ = _run(capsys, "gradient-flow", "--depth", "8", "--estimate", *TINY)
    r = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and r["seconds"] > 0 and "forward" in r["detail"]


def test_unknown_analysis_via_the_real_entry_point():
    p = subprocess.run([sys.executable, "-m", "resnet_core", "analyze", "nonsense"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.startswith("error:") and "Traceback" not in p.stderr


def _json(capsys, *argv):
    code, out, err = _run(capsys, *argv, "--quiet", *TINY)
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_new_quantities_reach_the_command_line(capsys, runs_dir):
    r = _json(capsys, "gradient-flow", "--depth", "8", "--batch-size", "4", "--no-twin")
    for key in ("rms_input_grad", "per_layer_rate_by_stage", "ratio_per_element", "branch_energy_share",
                "branch_shortcut_cosine", "plus_one"):
        assert key in r
    assert sum(1 for _ in r["branch_energy_share"]) == len(r["blocks"])
    r = _json(capsys, "shattering", "--depth", "8", "--points", "8", "--no-twin", "--set", "calibration_images=16")
    assert all(len(m["autocorrelation_along_line"]) == 8 and "power_spectrum" in m for m in r["models"])
    r = _json(capsys, "paths", "--depth", "8", "--draws", "2", "--batch-size", "2")
    assert len(r["gradient_energy_share_by_length"]) == 4 and r["full_gradient_norm"] > 0
    run_id = store_tiny_run(runs_dir, "cli-new", "tiny")
    r = _json(capsys, "lesion", "--run", run_id, "--runs-dir", str(runs_dir), "--images", "16", "--draws", "1",
              "--set", "swaps=[1]")
    assert all("residual_error" in s for s in r["decomposition"]) and r["setting_used"].startswith("reduced")
    r = _json(capsys, "responses", "--run", run_id, "--runs-dir", str(runs_dir), "--images", "16")
    assert len(r["layer_response_std"]) == len(r["layer_response_names"]) == 7 and r["images"] == 16


def test_paper_flag_sets_the_papers_setting(capsys, runs_dir):
    run_id = store_tiny_run(runs_dir, "cli-paper", "tiny")
    r = _json(capsys, "responses", "--run", run_id, "--runs-dir", str(runs_dir), "--paper")
    assert r["settings"]["images"] == 10000 and r["setting_used"] == "the paper's"
    assert r["images"] == 16                     # all the test images there are
    r = _json(capsys, "paths", "--depth", "8", "--paper", "--draws", "3", "--batch-size", "2")
    assert r["settings"]["draws"] == 3 and "the paper's 1000" in r["setting_used"]   # a flag beside it wins
