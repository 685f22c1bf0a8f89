"""How the cost model schedules runs that train at once: CPU cores divided, one GPU shared."""
import pytest

from resnet_core.config import ModelConfig, RunConfig, TrainConfig
from resnet_core.experiments import costmodel as cm


def _run(steps: int) -> RunConfig:
    # no periodic evaluation, no snapshots: steps, then the final evaluation of the test set
    return RunConfig(model=ModelConfig(depth=8), train=TrainConfig(steps=steps, eval_every=0, feature_maps_every=0))


# The final evaluation: 2,000 test images, a forward pass a third of a training step of 128 images.
FINAL_EVAL = 2000 / (3 * 128)


def _cal(device: str, cores: int, step_s: float) -> cm.Calibration:
    # a step costs ``step_s`` on one thread whatever the net (fixed term only); 2x faster on 2 threads
    coeffs = {1: (step_s, 0.0, 0.0), 2: (step_s / 2, 0.0, 0.0)}
    return cm.Calibration({"cores": cores, "cpu": "test"}, device, coeffs, 0.0, [{"label": "x"}], 0.0)


def test_a_gpu_is_shared_by_the_runs_at_once_not_multiplied():
    """Bug caught: runs side by side on one GPU counted as if each had it alone (the paper-scale Fig. 6
    on an H200 took 0.6 of one run's throughput in all, not 4x)."""
    cal = _cal("cuda", cores=16, step_s=0.01)
    one = cm.schedule_seconds(cal, [_run(1000)], parallel=2)
    two = cm.schedule_seconds(cal, [_run(1000), _run(1000)], parallel=2)
    assert one == pytest.approx((1000 + FINAL_EVAL) * 0.01)
    assert two == pytest.approx(2 * (1000 + FINAL_EVAL) * 0.01)


def test_cpu_cores_are_divided_and_a_lone_run_gets_them_all():
    """Hand computation: 2 cores; A (1000 steps) and B (500) start together on a core each at 0.01 s a
    step; B ends after its 500 + FINAL_EVAL, then A runs alone on both cores at 0.005 s a step for its
    last 500."""
    cal = _cal("cpu", cores=2, step_s=0.01)
    both = cm.schedule_seconds(cal, [_run(1000), _run(500)], parallel=2)
    assert both == pytest.approx((500 + FINAL_EVAL) * 0.01 + 500 * 0.005)
    assert cm.schedule_seconds(cal, [_run(1000)], parallel=2) == pytest.approx((1000 + FINAL_EVAL) * 0.005)


def test_paper_nets_are_calibrated_on_a_gpu_only():
    cpu = cm.calibration_configs("cpu")
    gpu = cm.calibration_configs("cuda")
    assert {c.data.image_size for c in cpu} == {16}
    assert {c.data.image_size for c in gpu} == {16, 32} and len(gpu) == 2 * len(cpu)
    assert any(c.model.depth == 56 and c.model.width == 1 for c in gpu)
