"""Training, probes, the run manager, attribution, the analyses and NCCL torchrun on a CUDA GPU."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resnet_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig

ROOT = Path(__file__).resolve().parents[2]
TINY = DataConfig(n_train=256, n_test=64, augment=False)


def tiny(device, steps=3, **train):
    return RunConfig(model=ModelConfig(depth=8), data=TINY,
                     train=TrainConfig(steps=steps, batch_size=32, device=device, eval_every=0, log_every=1,
                                       feature_maps_every=0, **train))


def _first_step(cfg):
    from resnet_core.data import load_dataset
    from resnet_core.training.loop import train

    events = []
    train(cfg, events.append, dataset=load_dataset(cfg.data))
    return next(e for e in events if e["type"] == "step")


def test_probes_on_cuda_agree_with_fp32_on_the_cpu():
    """Same seed, weights and batch, the first step (measured before the first update): the CUDA run (bf16 autocast, channels_last)
    reports the loss within 2% and each layer's gradient norm and branch std within 10% of the fp32
    CPU run (bf16 keeps 8 bits of mantissa; the tolerance is that, summed over a small net)."""
    cpu = _first_step(tiny("cpu", amp=False))
    gpu = _first_step(tiny("cuda"))
    assert gpu["train_loss"] == pytest.approx(cpu["train_loss"], rel=0.02)
    for key in ("grad_norm", "branch_std"):
        a, b = cpu.get(key), gpu.get(key)
        if a is None:
            continue
        pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
        assert pairs and all(y == pytest.approx(x, rel=0.10, abs=1e-6) for x, y in pairs), key


def test_the_run_manager_trains_on_cuda(tmp_path):
    from dashboard.worker import RunManager

    m = RunManager(tmp_path / "runs", max_concurrent=2)
    try:
        cfg = tiny("cuda", steps=5)
        ids = m.start_group([cfg, cfg], "two on one GPU")
        assert m.wait(ids, timeout=300)
        for r in ids:
            info = m.store.get(r)
            assert info.status == "finished", info.error
            assert info.summary.get("device", "").startswith("cuda")
    finally:
        m.shutdown()


def test_attribution_on_cuda_matches_the_cpu():
    from resnet_core.attribution import attribute
    from resnet_core.nets.models import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(depth=8)).eval()
    x = torch.randn(1, 3, 32, 32)
    cpu = attribute(model, x, 3, "saliency")
    gpu = attribute(model.cuda(), x.cuda(), 3, "saliency")
    assert torch.as_tensor(gpu).shape == torch.as_tensor(cpu).shape
    assert torch.allclose(torch.as_tensor(gpu).cpu().float(), torch.as_tensor(cpu).float(), rtol=1e-3, atol=1e-5)


def test_analyses_on_cuda_and_the_landscapes_vmap_path(tmp_path):
    from resnet_core.analysis import ModelSource, run_analysis

    flow = run_analysis("gradient-flow", ModelSource(config=ModelConfig(depth=20)), device="cuda",
                        settings={"depths": [8, 20]})
    assert flow and json.dumps(flow)
    from tests.conftest import store_tiny_run

    run_id = store_tiny_run(tmp_path / "runs", "gpu-landscape", "gpu")
    data = DataConfig(n_train=64, n_test=64)
    loop = run_analysis("landscape", ModelSource(run_id=run_id), data=data, device="cuda", runs_dir=tmp_path / "runs",
                        settings={"points": 5, "images": 64, "batch_size": 64, "method": "loop"}, use_cache=False)
    vm = run_analysis("landscape", ModelSource(run_id=run_id), data=data, device="cuda", runs_dir=tmp_path / "runs",
                      settings={"points": 5, "images": 64, "batch_size": 64, "method": "vmap"}, use_cache=False)
    la = torch.tensor(loop["loss"], dtype=torch.float64)
    lb = torch.tensor(vm["loss"], dtype=torch.float64)
    assert torch.allclose(la, lb, rtol=2e-2, atol=1e-3)


def test_torchrun_with_nccl_on_one_gpu(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun) if torchrun.exists() else sys.executable, *([] if torchrun.exists() else ["-m", "torch.distributed.run"]),
           "--standalone", "--nproc_per_node", "1", "-m", "resnet_core", "train", "--depth", "8", "--steps", "5",
           "--batch-size", "32", "--n-train", "256", "--n-test", "64", "--device", "cuda", "--quiet",
           "--runs-dir", str(tmp_path / "runs")]
    out = subprocess.run(["timeout", "-k", "5", "300", *cmd], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary.get("status") == "finished", summary
