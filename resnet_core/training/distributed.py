"""Beyond one process: data-parallel training under ``torchrun`` and independent runs spread over GPUs.

torchrun starts one process per rank and tells each its place through ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``; ``launch_from_env`` reads them. ``DistContext`` is what ``train()`` sees of the
process group: PyTorch's own DistributedDataParallel (gloo on the CPU, NCCL on CUDA with one GPU per
rank from ``LOCAL_RANK``), the global batch's loss and accuracy, an agreed stop, a sharded test
evaluation, and failure messages that reach rank 0, which alone writes the run store.

``run_on_gpus`` is the other way to use several GPUs: independent runs (a preset's), one process per
GPU, all writing into one run store; no process group, no scheduler beyond a queue per device.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as tdist
import torch.nn as nn

from resnet_core.config import ConfigError

# Seconds a collective may wait for a silent rank (one that hangs rather than dies: a dead rank's
# peers get an error from gloo/NCCL at once). Long enough for rank 0 alone to save a checkpoint.
TIMEOUT_ENV = "RESNET_LAB_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300
# How long rank 0, seeing a collective break, waits for the failing rank's own message.
PEER_MESSAGE_WAIT_S = 3.0
_FAILURE_KEY = "resnet_lab/failure/{rank}"


@dataclass(frozen=True)
class Launch:
    rank: int
    world_size: int
    local_rank: int


def launch_from_env() -> Launch | None:
    """This process's place in a torchrun launch; None for a plain process (or a world of one)."""
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return None
    world = int(os.environ["WORLD_SIZE"])
    if world <= 1:
        return None  # torchrun --nproc_per_node 1: one process, nothing to coordinate
    return Launch(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def _is_collective_failure(e: BaseException) -> bool:
    # What a rank sees when a peer died: gloo's "Connection closed by peer", NCCL's errors, timeouts.
    text = f"{type(e).__name__} {e}"
    return isinstance(e, getattr(tdist, "DistError", ())) or any(
        s in text for s in ("Connection closed", "Connection reset", "gloo", "NCCL", "Timed out", "timed out"))


class DistContext:
    """The process group as the trainer uses it; one per process, created by ``start``."""

    def __init__(self, launch: Launch, device: torch.device, backend: str, sync_bn: bool):
        self.launch, self.device, self.backend, self.sync_bn = launch, device, backend, sync_bn

    @property
    def rank(self) -> int:
        return self.launch.rank

    @property
    def world_size(self) -> int:
        return self.launch.world_size

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, launch: Launch, device: str = "auto", sync_bn: bool = False) -> "DistContext":
        """Joins the process group torchrun set up: NCCL and cuda:LOCAL_RANK when CUDA is there and
        wanted, gloo on the CPU otherwise."""
        if device == "mps":
            raise ConfigError("data-parallel training runs on CUDA (NCCL) or the CPU (gloo), not on MPS")
        want_cuda = device == "auto" or device.startswith("cuda")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError("device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
        if want_cuda and torch.cuda.is_available():
            if launch.local_rank >= torch.cuda.device_count():
                raise RuntimeError(f"local rank {launch.local_rank} has no GPU: this node has "
                                   f"{torch.cuda.device_count()}; start at most that many processes per node")
            dev, backend = torch.device("cuda", launch.local_rank), "nccl"
            torch.cuda.set_device(dev)
        else:
            dev, backend = torch.device("cpu"), "gloo"
        if sync_bn and dev.type != "cuda":
            # Measured with torch 2.14 on the CPU: DistributedDataParallel refuses SyncBatchNorm there
            # ("SyncBatchNorm layers only work with GPU modules"), so gloo runs keep per-rank statistics.
            raise ConfigError("--sync-bn needs CUDA: PyTorch's SyncBatchNorm works only on GPU modules; "
                              "on the CPU each rank normalises with its own shard's statistics (the default)")
        timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
        if not tdist.is_initialized():
            tdist.init_process_group(backend, timeout=timeout)
        return cls(launch, dev, backend, sync_bn)

    def close(self) -> None:
        if tdist.is_initialized():
            tdist.destroy_process_group()

    # --- training ---------------------------------------------------------------------------------
    def wrap(self, model: nn.Module) -> nn.Module:
        """DistributedDataParallel over ``model`` (already on this rank's device). Its gradients are
        averaged over the ranks in backward, and rank 0's BN buffers are broadcast before each
        forward, so every rank holds the same weights and statistics, as rank 0's checkpoint does."""
        if self.sync_bn:
            nn.SyncBatchNorm.convert_sync_batchnorm(model)  # replaces the BN children in place
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def step_stats(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor,
                   stop_requested: bool) -> tuple[float, float, bool]:
        """The global batch's mean loss and accuracy, and whether any rank was asked to stop: one
        all-reduce of four numbers per step, so every rank stops (or diverges) at the same step."""
        n = float(len(y))
        local = torch.stack([loss.detach().float() * n, (logits.argmax(1) == y).sum().float(),
                             torch.tensor(n, device=loss.device), torch.tensor(float(stop_requested), device=loss.device)])
        tdist.all_reduce(local)
        loss_sum, correct, count, stops = local.tolist()
        return loss_sum / count, correct / count, stops > 0

    def sum_over_ranks(self, t: torch.Tensor) -> torch.Tensor:
        tdist.all_reduce(t)
        return t

    def broadcast_buffers(self, model: nn.Module) -> None:
        for b in model.buffers():
            tdist.broadcast(b, 0)

    # --- failure ------------------------------------------------------------------------------------
    def _store(self):
        try:
            return tdist.distributed_c10d._get_default_store()
        except Exception:  # noqa: BLE001 - without a store the rank's own message is all there is
            return None

    def publish_failure(self, e: BaseException) -> None:
        """Leaves this rank's error where rank 0 finds it (torchrun's rendezvous store), before the
        process exits and its peers see the connection close."""
        store = self._store()
        if store is not None:
            try:
                store.set(_FAILURE_KEY.format(rank=self.rank), f"rank {self.rank}: {type(e).__name__}: {e}")
            except Exception:  # noqa: BLE001 - the store may be gone already
                pass

    def explain_failure(self, e: BaseException) -> str:
        """The message to record: a peer's own error when this rank merely saw a collective break."""
        own = f"rank {self.rank}: {type(e).__name__}: {e}"
        store = self._store()
        if store is None or not _is_collective_failure(e):
            return own
        keys = [_FAILURE_KEY.format(rank=r) for r in range(self.world_size) if r != self.rank]
        deadline = time.monotonic() + PEER_MESSAGE_WAIT_S
        while time.monotonic() < deadline:
            for k in keys:
                try:
                    if store.check([k]):
                        return store.get(k).decode()
                except Exception:  # noqa: BLE001 - the store went away with the launcher
                    return own
            time.sleep(0.05)
        return own


# ----------------------------------------------------------------------------------------------------
# Independent runs over GPUs (a preset's runs at once): one process per device
# ----------------------------------------------------------------------------------------------------

def parse_gpus(spec: str) -> list[str]:
    """``"0,1,2,3"`` -> ["0", "1", "2", "3"]; ``cpu`` entries are allowed (tests, CPU-only machines)."""
    items = [s.strip() for s in str(spec).split(",") if s.strip()]
    if not items or not all(s.isdigit() or s == "cpu" for s in items):
        raise ConfigError(f"--gpus takes GPU numbers separated by commas, e.g. 0,1,2,3; got {spec!r}")
    return items


def _device_env(device: str) -> tuple[str, dict]:
    """(the run's --device, its environment): a GPU number becomes the only GPU its process sees."""
    if device == "cpu":
        return "cpu", {}
    return "cuda", {"CUDA_VISIBLE_DEVICES": device}


def run_on_gpus(cfgs: list, gpus: list[str], runs_dir: str | Path | None = None, *,
                on_finish=None, python: str | None = None, poll_s: float = 0.2) -> list[dict]:
    """Trains ``cfgs`` (RunConfigs) concurrently, one ``python -m resnet_core train --config`` process
    per device in ``gpus`` at a time, the rest queued; returns each run's JSON summary (the CLI's
    last stdout line, or ``{"status": "failed", "error": ...}``) in the order of ``cfgs``.
    ``on_finish(index, summary)`` is called as each ends."""
    import dataclasses

    if not gpus:
        raise ConfigError("no devices given to spread the runs over")
    pending = list(enumerate(cfgs))
    results: list[dict | None] = [None] * len(cfgs)
    # slot (position in gpus: "cpu" may appear several times) -> (index, process, stderr, stdout)
    running: dict[int, tuple[int, subprocess.Popen, object, object]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="resnet-lab-gpus-"))
    project = str(Path(__file__).resolve().parents[1])
    # Every child is told it is not a torchrun rank, even if this process is one, and finds this package.
    base_env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    base_env["PYTHONPATH"] = os.pathsep.join(p for p in (project, os.environ.get("PYTHONPATH")) if p)
    try:
        while pending or running:
            for slot, dev in enumerate(gpus):
                if slot in running or not pending:
                    continue
                i, cfg = pending.pop(0)
                device, env = _device_env(dev)
                cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, device=device))
                cfg_file = tmp / f"run{i}.json"
                cfg_file.write_text(cfg.to_json())
                cmd = [python or sys.executable, "-m", "resnet_core", "train", "--config", str(cfg_file), "--quiet"]
                if runs_dir is not None:
                    cmd += ["--runs-dir", str(Path(runs_dir).resolve())]
                out = open(tmp / f"run{i}.out", "w+")
                err_file = open(tmp / f"run{i}.err", "w+")  # a file, not a pipe: a chatty child cannot block
                proc = subprocess.Popen(cmd, stdout=out, stderr=err_file, text=True, env={**base_env, **env})
                running[slot] = (i, proc, err_file, out)
            for slot, (i, proc, err_file, out) in list(running.items()):
                if proc.poll() is None:
                    continue
                err_file.seek(0)
                err = err_file.read()
                err_file.close()
                out.seek(0)
                lines = [ln for ln in out.read().splitlines() if ln.startswith("{")]
                out.close()
                try:
                    summary = json.loads(lines[-1])
                except (IndexError, ValueError):
                    last = (err.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
                    summary = {"status": "failed", "error": last}
                summary["device"] = gpus[slot]
                results[i] = summary
                del running[slot]
                if on_finish is not None:
                    on_finish(i, summary)
            if running:
                time.sleep(poll_s)
    finally:
        for _, proc, _, _ in running.values():  # interrupted: leave no orphan behind
            proc.terminate()
        for _, proc, _, _ in running.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    return results  # type: ignore[return-value]
