"""The Why it works page's worker (dashboard/analysis_service.py): cancel, failure, cache, and the CSV export."""
from __future__ import annotations

import csv
import io
import subprocess
import sys
import threading
import time

from pathlib import Path

import pytest

from dashboard import analysis_service as view
from dashboard.analysis_service import AnalysisService, Request
from resnet_core.analysis import AnalysisError, Cancelled
from resnet_core.config import ModelConfig

ROOT = Path(__file__).resolve().parents[2]


def test_cancel_stops_a_running_job_between_units_of_work():
    svc = AnalysisService()
    started = threading.Event()

    def slow(progress, cancel):
        started.set()
        for i in range(500):
            if cancel.is_set():
                raise Cancelled("cancelled")
            progress(i / 500, f"unit {i}")
            time.sleep(0.01)
        return {"finished": True}

    job = svc.submit("slow", "slow job", slow)
    assert started.wait(10)
    svc.cancel(["slow"])
    assert svc.wait(["slow"], 10)
    assert job.state == "cancelled" and svc.result("slow") is None
    assert 0 <= job.progress < 1 and job.message.startswith("unit")


def test_a_queued_job_cancelled_before_it_starts_never_runs():
    svc = AnalysisService()
    gate, ran = threading.Event(), []
    svc.submit("first", "first", lambda progress, cancel: gate.wait(10) and {"a": 1})
    svc.submit("second", "second", lambda progress, cancel: ran.append(1) or {"b": 2})
    svc.cancel(["second"])
    gate.set()
    assert svc.wait(["first", "second"], 10)
    assert svc.job("second").state == "cancelled" and ran == []
    assert svc.result("first") == {"a": 1}


def test_failures_leave_one_line_and_the_worker_alive():
    svc = AnalysisService()

    def refused(progress, cancel):
        raise AnalysisError("depth 21 is not valid for basic blocks: use 6n+2\nsecond line")

    bad = svc.submit("refused", "refused", refused)
    crash = svc.submit("crash", "crash", lambda progress, cancel: 1 / 0)
    assert svc.wait(["refused", "crash"], 10)
    assert bad.state == "failed" and bad.error == "depth 21 is not valid for basic blocks: use 6n+2"
    assert crash.state == "failed" and crash.error.startswith("unexpected ZeroDivisionError")
    # Still alive, and a failed request may be started again once forgotten.
    svc.forget("refused")
    again = svc.submit("refused", "refused", lambda progress, cancel: {"ok": True})
    assert svc.wait(["refused"], 10) and again.state == "done" and svc.result("refused") == {"ok": True}


def test_results_are_cached_and_the_cache_is_bounded():
    svc = AnalysisService(max_results=2)
    calls = []
    svc.submit("ok", "ok", lambda progress, cancel: calls.append(1) or {"v": 42})
    svc.wait(["ok"], 10)
    assert svc.submit("ok", "ok", lambda progress, cancel: calls.append(1) or {"v": 43}).state == "done"
    svc.wait(["ok"], 10)
    assert svc.result("ok") == {"v": 42} and calls == [1]
    for k in ("x", "y"):
        svc.submit(k, k, lambda progress, cancel, k=k: {"k": k})
        svc.wait([k], 10)
    assert svc.result("ok") is None and svc.result("y") == {"k": "y"}


def test_request_keys_depend_on_everything_that_changes_the_result():
    a = Request("gradient-flow", "resnet-8", config=ModelConfig(depth=8).to_dict(), settings={"batch_size": 8})
    same = Request("gradient-flow", "another label", config=ModelConfig(depth=8).to_dict(), settings={"batch_size": 8})
    assert a.key == same.key  # the label is only for people
    others = [Request("gradient-flow", "x", config=ModelConfig(depth=20).to_dict(), settings={"batch_size": 8}),
              Request("gradient-flow", "x", config=ModelConfig(depth=8).to_dict(), settings={"batch_size": 4}),
              Request("gradient-flow", "x", config=ModelConfig(depth=8).to_dict(), settings={"batch_size": 8},
                      data={"name": "synthetic", "n_train": 100}),
              Request("lesion", "x", run_id="r1"), Request("lesion", "x", run_id="r2")]
    assert len({a.key, *(o.key for o in others)}) == 6


def test_real_gradient_flow_through_the_worker(runs_dir):
    svc = AnalysisService()
    req = Request("gradient-flow", "resnet-8", config=ModelConfig(depth=8).to_dict(), settings={"batch_size": 4},
                  data={"name": "synthetic", "n_train": 40, "n_test": 20})
    assert view.ESTIMATES.summary([req]) == ("pending", "")
    assert view.ESTIMATES.wait(60)
    verdict, text = view.ESTIMATES.summary([req])
    assert verdict == "ready" and text.startswith("Estimated ") and "resnet-8 x 4 images" in text
    messages = []
    job = svc.submit(req.key, req.label, lambda progress, cancel: view.job_fn(req, str(runs_dir))(
        lambda f, m="": (messages.append(m), progress(f, m)), cancel))
    assert svc.wait([req.key], 120), job.progress_text()
    assert job.state == "done", job.error
    result = svc.result(req.key)
    assert result["blocks"] == ["layer1.0", "layer2.0", "layer3.0"] and len(result["input_grad_norm"]) == 3
    assert messages and job.progress == 1.0


def test_csv_export_has_one_row_per_number():
    rows = list(csv.reader(io.StringIO(view.result_csv({
        "resnet-8": {"blocks": ["a", "b"], "ratio": 2.5, "sweep": [{"depth": 8, "ratio": 1.0}],
                     "loss": [[1.0, 2.0], [3.0, None]]}}))))
    assert rows[0] == ["model", "field", "value"]
    assert ["resnet-8", "blocks[1]", "b"] in rows and ["resnet-8", "ratio", "2.5"] in rows
    assert ["resnet-8", "sweep[0].ratio", "1.0"] in rows and ["resnet-8", "loss[1][0]", "3.0"] in rows
    assert ["resnet-8", "loss[1][1]", ""] in rows
    assert len(rows) == 1 + 2 + 1 + 2 + 4


def test_the_worker_module_never_imports_streamlit():
    code = "import sys, dashboard.analysis_service, resnet_core.figures.analysis; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
                         cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_an_estimate_the_core_refuses_is_one_line_and_not_a_crash(runs_dir):
    req = Request("gradient-flow", "x", config=ModelConfig(depth=8).to_dict(), settings={"batch_size": 0})
    view.ESTIMATES.get(req)
    assert view.ESTIMATES.wait(60)
    verdict, text = view.ESTIMATES.summary([req])
    assert verdict == "failed" and text == "x: batch_size must be an integer from 1 to 1024; got 0"


@pytest.mark.parametrize("seconds,text", [(0.2, "under a second"), (12, "about 12 s"), (300, "about 5.0 min")])
def test_format_seconds(seconds, text):
    assert view.format_seconds(seconds) == text
