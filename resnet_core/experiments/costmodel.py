"""Expected durations, measured on the machine at hand: one home for every training-time estimate.

A training step of a config costs ``fixed + per_layer * depth + per_gmac * GMACs`` seconds, where
GMACs are the multiply-adds of forward and backward over one batch (three forward passes' worth,
counted from the config alone: no model is built). The three coefficients are not constants fitted
elsewhere: ``calibrate`` times a few training steps (the trainer itself, probes included) of the
default Start's net and the quick presets' nets on this machine and this device, once with one
thread (two runs at once get a core each) and once with every core (a run alone gets them all), and
fits them by least squares. The result is cached per machine (CPU model, cores, torch version,
device) under ``~/.cache/resnet-lab`` (``RESNET_LAB_CACHE`` moves it); the dashboard calibrates in
the background at start (``RESNET_LAB_CALIBRATE=0`` turns that off), the CLI on first use
(``python -m resnet_core estimate``; ``--calibrate`` measures again).

``schedule_seconds`` turns step costs into the wall time of a group of runs the way the dashboard
trains them: at most ``parallel`` at once, longest first, the cores divided between the runs
training at that moment, behind the runs already training or queued.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from resnet_core.config import ModelConfig, RunConfig

EVAL_IMAGES_PER_BATCH = 256   # resnet_core.training.loop.evaluate's batch
CALIBRATION_VERSION = 4


# ----------------------------------------------------------------------------------------------------
# Work of a config, from the config alone
# ----------------------------------------------------------------------------------------------------

def config_macs(model: ModelConfig, image_size: int) -> int:
    """Multiply-adds of one image's forward pass (convolutions and the linear head), counted from the
    architecture by ``memory.estimate`` as ``models.count_macs`` measures a built model (a test checks
    they agree)."""
    from resnet_core.memory import estimate

    return estimate(model, image_size).macs


def weight_layers(model: ModelConfig) -> int:
    """Convolutions and the head: what a step pays a fixed kernel-launch cost for, forward and back."""
    return 2 + 3 * model.n * (3 if model.block == "bottleneck" else 2)


def step_gmacs(cfg: RunConfig) -> float:
    """Multiply-adds of one training step, forward and backward (backward about twice the forward)."""
    return 3 * config_macs(cfg.model, cfg.data.image_size) * cfg.train.batch_size / 1e9


# ----------------------------------------------------------------------------------------------------
# Calibration
# ----------------------------------------------------------------------------------------------------

@dataclass
class Calibration:
    machine: dict
    device: str
    coefficients: dict[int, tuple[float, float, float]]   # threads -> (fixed s, s per layer, s per GMAC)
    startup_s: float   # a run's own cost besides its steps: set-up, initial weights, checkpoints, files
    samples: list[dict]
    measured_at: float
    snapshot_s: float = 0.0   # one feature-map snapshot of the probe image, written (per snapshot)

    def step_seconds(self, cfg: RunConfig, threads: int = 1) -> float:
        known = sorted(self.coefficients)
        t = max((k for k in known if k <= threads), default=known[0])
        fixed, per_layer, per_gmac = self.coefficients[t]
        return fixed + per_layer * weight_layers(cfg.model) + per_gmac * step_gmacs(cfg)

    @property
    def basis(self) -> str:
        when = time.strftime("%Y-%m-%d", time.localtime(self.measured_at))
        threads = sorted({s.get("threads", 1) for s in self.samples})
        return (f"estimated from training steps of {len({s['label'] for s in self.samples})} nets timed on this "
                f"machine at {' and '.join(map(str, threads))} thread(s) ({self.machine.get('cpu', '?')}, {when})")

    def to_dict(self) -> dict:
        return {"version": CALIBRATION_VERSION, "machine": self.machine, "device": self.device,
                "coefficients": {str(k): v for k, v in self.coefficients.items()}, "startup_s": self.startup_s,
                "samples": self.samples, "measured_at": self.measured_at, "snapshot_s": self.snapshot_s}

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        return cls(d["machine"], d["device"], {int(k): tuple(v) for k, v in d["coefficients"].items()},
                   float(d["startup_s"]), list(d["samples"]), float(d["measured_at"]), float(d.get("snapshot_s", 0.0)))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=8)
def _machine(device: str) -> tuple:
    import torch

    info = {"host": platform.node(), "cpu": _cpu_model(), "cores": os.cpu_count() or 1, "torch": torch.__version__,
            "device": device}
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return tuple(info.items())


def machine_info(device: str = "cpu") -> dict:
    """What the calibration is keyed on (read once per process: it does not change under it)."""
    return dict(_machine(device))


def cache_path(device: str = "cpu") -> Path:
    m = machine_info(device)
    key = hashlib.sha256(json.dumps(m, sort_keys=True).encode()).hexdigest()[:16]
    root = Path(os.environ.get("RESNET_LAB_CACHE", Path.home() / ".cache" / "resnet-lab"))
    return root / f"cost-{device}-{key}.json"


def calibration_configs(device: str = "cpu") -> list[RunConfig]:
    """The nets the estimates are mostly asked about: the default Start's and the Degradation preset's
    shallowest and deepest (their step costs span the fixed, per-layer and per-GMAC terms), at the quick
    scale and, on a GPU, at the paper's scale too. On an H200 the quick nets' steps are all kernel
    launches (a 16x16 ResNet-56 step cost as much as a 32x32 one there), so a per-GMAC term fitted on
    them alone put the paper's Fig. 6 at 5 hours where it takes about one (README, "The CUDA path")."""
    from resnet_core.experiments.presets import build_fig6
    from resnet_core.experiments.scales import preset_base, scale_config

    scales = ["quick"] if device == "cpu" else ["quick", "paper"]
    out = []
    for scale in scales:
        fig6 = build_fig6(preset_base(scale, device=device))
        out += ([scale_config(scale, device=device)] + [c for c in fig6 if c.model.residual]
                + [c for c in fig6 if not c.model.residual][:1])
    return out


def time_steps(cfg: RunConfig, threads: int, steps: int = 8, warmup: int = 2) -> float:
    """Seconds per training step of ``cfg`` on ``threads`` threads, through the trainer itself (probes
    and logging as the config sets them; no evaluation). A run's own set-up is ``run_overhead``'s."""
    import torch

    from resnet_core.data import load_dataset
    from resnet_core.training.loop import train

    every = max(1, cfg.train.log_every)   # the trainer reports (and probes) steps 1, 1 + every, ...
    total = 1 + every * max(6, math.ceil((warmup + steps) / every))
    data = dataclasses.replace(cfg.data, n_train=max(cfg.data.n_train // 10, 2 * cfg.train.batch_size, 10),
                               n_test=16)
    run = dataclasses.replace(cfg, data=data, train=dataclasses.replace(
        cfg.train, steps=total, eval_every=0, checkpoint_every=0, feature_maps_every=0,
        warmup_steps=0))
    ds = load_dataset(data)
    times: dict[int, float] = {}

    def on_event(e):
        if e["type"] == "step":
            times[e["step"]] = time.perf_counter()

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        train(run, on_event, dataset=ds)
    finally:
        torch.set_num_threads(before)
    kept = [k for k in sorted(times) if k > warmup]   # the first steps pay one-off costs
    # The median over the windows between logged steps: a moment of other work on the machine moves
    # one window, not the figure.
    rates = sorted((times[b] - times[a]) / (b - a) for a, b in zip(kept, kept[1:]))
    return rates[len(rates) // 2]


def run_overhead(cal: "Calibration", cfg: RunConfig, threads: int) -> tuple[float, float]:
    """(seconds a stored run costs besides its training steps and evaluations: building the model,
    the initial weights, the checkpoints, the run's files; seconds of one feature-map snapshot).
    Measured by training ``cfg`` for a few steps into a temporary run store, as the dashboard's runs
    are trained: once with snapshots only at the first and last step, once with one every step."""
    import tempfile

    import torch

    from resnet_core.data import load_dataset
    from resnet_core.training.runs import RunStore, execute_run

    data = dataclasses.replace(cfg.data, n_train=max(2 * cfg.train.batch_size, 10), n_test=max(cfg.train.batch_size, 10))
    steps = 6
    ds = load_dataset(data)

    def wall(every: int) -> tuple[float, RunConfig]:
        run = dataclasses.replace(cfg, data=data, train=dataclasses.replace(
            cfg.train, steps=steps, eval_every=0, checkpoint_every=3, warmup_steps=0, feature_maps_every=every))
        with tempfile.TemporaryDirectory() as tmp:
            writer = RunStore(tmp).create(run, status="queued")
            t0 = time.perf_counter()
            execute_run(writer, dataset=ds)
            return time.perf_counter() - t0, run

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        sparse, run = wall(steps + 1)   # snapshots at the first and the last step only
        dense, _ = wall(1)              # and at every step: steps - 1 more
    finally:
        torch.set_num_threads(before)
    snapshot = max(0.0, (dense - sparse) / (steps - 1))
    return max(0.0, sparse - 2 * snapshot - run_work(run) * cal.step_seconds(run, threads)), snapshot


def _fit(rows: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """Non-negative least squares for y = a + b*layers + c*gmacs (drops a term that fits negative)."""
    import numpy as np

    y = np.array([r[2] for r in rows])
    cols = {0: np.ones(len(rows)), 1: np.array([r[0] for r in rows]), 2: np.array([r[1] for r in rows])}
    active = [0, 1, 2]
    while True:
        A = np.stack([cols[i] for i in active], axis=1)
        coef, *_ = np.linalg.lstsq(A, y, rcond=None)
        if (coef >= 0).all() or len(active) == 1:
            out = [0.0, 0.0, 0.0]
            for i, c in zip(active, coef):
                out[i] = max(0.0, float(c))
            return tuple(out)
        active.pop(int(np.argmin(coef)))


def calibrate(device: str = "cpu", thread_counts: list[int] | None = None, save: bool = True,
              configs: list[RunConfig] | None = None) -> Calibration:
    """Times training steps of the calibration nets on this machine and fits the step-cost model."""
    import torch

    cores = os.cpu_count() or 1
    if thread_counts is None:
        thread_counts = sorted({1, cores}) if device == "cpu" else [max(1, torch.get_num_threads())]
    configs = configs or calibration_configs(device)
    samples, coefficients = [], {}
    for threads in thread_counts:
        rows = []
        for cfg in configs:
            per_step = time_steps(cfg, threads)
            samples.append({"label": cfg.label, "threads": threads, "step_s": round(per_step, 5),
                            "layers": weight_layers(cfg.model), "gmacs": round(step_gmacs(cfg), 4)})
            rows.append((weight_layers(cfg.model), step_gmacs(cfg), per_step))
        coefficients[threads] = _fit(rows)
    cal = Calibration(machine_info(device), device, coefficients, 0.0, samples, time.time())
    cal.startup_s, cal.snapshot_s = run_overhead(cal, configs[0], max(thread_counts))
    if save:
        path = cache_path(device)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cal.to_dict(), indent=1))
        os.replace(tmp, path)
    return cal


def _process_start_path() -> Path:
    calibration = cache_path("cpu")   # the same machine key: one file per machine beside its calibration
    return calibration.with_name(calibration.name.replace("cost-cpu-", "process-start-"))


def record_process_start(seconds: float) -> None:
    """Keeps how long a fresh training process took here to be ready to train (interpreter, torch, the
    data prefetched, a warm-up's kernels): the dashboard adds what is left of it to a Start's estimate."""
    path = _process_start_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"seconds": round(float(seconds), 3), "measured_at": time.time()}))
        os.replace(tmp, path)
    except OSError:   # a read-only cache: the estimate simply leaves the start out
        pass


def process_start_seconds() -> float | None:
    try:
        return float(json.loads(_process_start_path().read_text())["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


_loaded: dict[tuple[str, int], Calibration] = {}


def load_calibration(device: str = "cpu") -> Calibration | None:
    """This machine's cached calibration, or None when it has not been measured yet. Parsed once per
    version of the file (a page asks for it several times on every rerun)."""
    path = cache_path(device)
    try:
        key = (str(path), path.stat().st_mtime_ns)
        if key not in _loaded:
            d = json.loads(path.read_text())
            if d.get("version") != CALIBRATION_VERSION:
                return None
            _loaded.clear()
            _loaded[key] = Calibration.from_dict(d)
        return _loaded[key]
    except (OSError, ValueError, KeyError, TypeError):
        return None


_background: dict[str, threading.Thread] = {}
_background_lock = threading.Lock()


def calibrate_in_background(device: str = "cpu") -> None:
    """Starts the calibration in a process of its own (so it neither holds this process's GIL nor
    shares its thread pool) unless this machine already has one or one is under way."""
    import subprocess
    import sys

    if load_calibration(device) is not None or os.environ.get("RESNET_LAB_CALIBRATE", "1") == "0":
        return
    with _background_lock:
        t = _background.get(device)
        if t is not None and t.is_alive():
            return

        def work():
            root = Path(__file__).resolve().parent.parent
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join([str(root)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
            subprocess.run([sys.executable, "-m", "resnet_core", "estimate", "--calibrate", "--device", device],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900, check=False)

        t = threading.Thread(target=work, name=f"calibrate-{device}", daemon=True)
        _background[device] = t
        t.start()


# ----------------------------------------------------------------------------------------------------
# Wall time of a group of runs
# ----------------------------------------------------------------------------------------------------

def run_work(cfg: RunConfig, n_train: int | None = None, n_test: int | None = None,
             steps_done: int = 0) -> float:
    """Steps left to train, plus evaluations counted as training-step equivalents (a forward pass is
    about a third of a training step)."""
    n_tr = n_train if n_train is not None else cfg.data.n_train
    n_te = n_test if n_test is not None else cfg.data.n_test
    steps = cfg.train.total_steps(n_tr)
    left = max(0, steps - steps_done)
    evals = (left // cfg.train.eval_every) if cfg.train.eval_every else 0
    eval_images = evals * cfg.train.eval_batches * EVAL_IMAGES_PER_BATCH + n_te
    return left + eval_images / (3 * cfg.train.batch_size)


def fixed_seconds(cal: Calibration, cfg: RunConfig, n_train: int | None = None) -> float:
    """A run's own cost besides its steps and evaluations: set-up, checkpoints, files, feature maps."""
    steps = cfg.train.total_steps(n_train if n_train is not None else cfg.data.n_train)
    every = cfg.train.feature_maps_every
    snapshots = (2 + steps // every) if every else 0   # at step 1, every ``every`` steps, at the end
    return cal.startup_s + snapshots * cal.snapshot_s


def _history_group(cal: Calibration, threads: int, context: str) -> str:
    return f"{context}, " + (f"{threads} thread(s)" if cal.device == "cpu" else cal.device)


def _history_key(cfg: RunConfig, n_train: int | None) -> str:
    return f"{cfg.label}, {cfg.train.total_steps(n_train if n_train is not None else cfg.data.n_train)} steps"


def run_alone_seconds(cal: Calibration, cfg: RunConfig, threads: int, n_train: int | None = None,
                      n_test: int | None = None) -> float:
    """The calibration's seconds for ``cfg`` trained alone at ``threads``, its own costs included."""
    return run_work(cfg, n_train, n_test) * cal.step_seconds(cfg, threads) + fixed_seconds(cal, cfg, n_train)


def record_run(cfg: RunConfig, threads: int, seconds: float, n_train: int | None = None,
               n_test: int | None = None, context: str = "cli") -> None:
    """Keeps what a whole run took (``seconds``, trained at ``threads`` throughout) beside this machine's
    calibrated estimate of it, so that later estimates carry the difference (``resnet_core/history.py``):
    the steps were timed in short bursts, a run trains for minutes, its probes and evaluations, and in
    the dashboard (``context``) beside the page and the browser, which on 2 cores took a 5 s Start to
    6.2-7.5 s. Nothing is kept where the machine has no calibration yet."""
    from resnet_core import history
    from resnet_core.device import resolve_device

    try:
        kind = resolve_device(cfg.train.device).type
    except RuntimeError:
        return
    cal = load_calibration(kind)
    if cal is None:
        return
    history.record("runs", _history_group(cal, threads, context), _history_key(cfg, n_train), kind,
                   run_alone_seconds(cal, cfg, threads, n_train, n_test), seconds)


def run_correction(cal: Calibration, context: str = "cli", n_train: int | None = None,
                   n_test: int | None = None) -> Callable[[RunConfig, int], float]:
    """(config, threads) -> factor on that run's calibrated step cost: what the runs finished here in
    ``context`` at that thread count predict for it alone (``history.predict``), over the calibration's
    figure. 1 where none finished."""
    from resnet_core import history

    @functools.lru_cache(maxsize=256)
    def factor(cfg: RunConfig, threads: int) -> float:
        alone = run_alone_seconds(cal, cfg, threads, n_train, n_test)
        if alone <= 0:
            return 1.0
        seconds, _ = history.predict("runs", _history_group(cal, threads, context), _history_key(cfg, n_train),
                                     cal.device, alone, fallback="offset")
        return max(seconds, 1e-9) / alone

    return factor


def finished_here(cal: Calibration, context: str = "cli", threads: int | None = None) -> int:
    """How many runs in ``context`` (at ``threads``, or at any thread count) finished on this machine and
    device and correct its estimates."""
    from resnet_core import history

    cores = cal.machine.get("cores", os.cpu_count() or 1) if cal.device == "cpu" else 1
    counts = range(1, cores + 1) if threads is None else [threads]
    return history.count("runs", cal.device, [_history_group(cal, t, context) for t in counts])


def estimate_basis(cal: Calibration, context: str = "cli") -> str:
    """What an estimate rests on, in words: the timed steps and the runs finished here."""
    n = finished_here(cal, context)
    return f"{cal.basis}; " + (f"corrected by {n} run(s) finished here ({context})" if n
                               else f"no run finished here yet ({context})")


def schedule_seconds(cal: Calibration, cfgs: list[RunConfig], parallel: int, *,
                     ahead: list[tuple[RunConfig, int]] | None = None,
                     n_train: int | None = None, n_test: int | None = None,
                     correction: Callable[[RunConfig, int], float] | None = None) -> float:
    """Seconds until every run of ``cfgs`` has finished, trained ``parallel`` at a time behind the
    runs ``ahead`` (config, steps already done: those training or queued now). On a CPU the cores are
    divided between the runs training at each moment (a run alone gets them all), as the dashboard's
    run manager does. On a GPU the runs at once share the one device: each steps at its own rate
    divided by their number. (On an H200, four Fig. 6 runs at once ran at 0.6 of one run's images/s in
    all: these nets' steps are bound by kernel launches from one host, so sharing is not free.)
    ``correction(cfg, threads)`` multiplies a run's step cost at each thread count (``run_correction``)."""

    cores = cal.machine.get("cores", os.cpu_count() or 1) if cal.device == "cpu" else 1
    ahead = ahead or []
    order = [cfgs[i] for i in (longest_first(cfgs) if parallel > 1 else range(len(cfgs)))]
    correction = correction or (lambda cfg, threads: 1.0)

    def overhead(c: RunConfig) -> float:   # the run's own cost besides its steps, in its steps
        return fixed_seconds(cal, c, n_train) / cal.step_seconds(c, cores)

    pending = ([(c, run_work(c, steps_done=d)) for c, d in ahead]
               + [(c, run_work(c, n_train, n_test) + overhead(c)) for c in order])
    mine = set(range(len(ahead), len(pending)))
    active: dict[int, float] = {}     # index -> step equivalents left
    t, nxt, finished = 0.0, 0, 0.0
    while nxt < len(pending) or active:
        while nxt < len(pending) and len(active) < parallel:
            active[nxt] = pending[nxt][1]
            nxt += 1
        threads = max(1, cores // len(active)) if cal.device == "cpu" else 1
        share = 1 if cal.device == "cpu" else len(active)
        rate = {i: 1.0 / (cal.step_seconds(pending[i][0], threads) * share * correction(pending[i][0], threads))
                for i in active}   # steps per second
        i_first = min(active, key=lambda i: active[i] / rate[i])
        dt = active[i_first] / rate[i_first]
        t += dt
        for i in list(active):
            active[i] -= dt * rate[i]
            if active[i] <= 1e-9 or i == i_first:
                del active[i]
                if i in mine:
                    finished = t
    return finished



def longest_first(cfgs: list[RunConfig], device_type: str = "cpu") -> list[int]:
    """Indices of ``cfgs`` in the order to start them when several train at once: the longest first
    (Graham's LPT rule), so the last run to start is a short one and no core idles at the end. For the
    quick Degradation preset on two cores (at 1,300 steps) this was ~155 s instead of ~198 s in the
    preset's own order (plain-20, plain-56, ResNet-20, ResNet-56), where ResNet-56 started last and
    ran alone. The order needs relative costs only: this machine's calibrated step cost when there is
    one, else the work (weight layers and multiply-adds) per step."""
    cal = load_calibration(device_type)

    def per_step(c: RunConfig) -> float:
        return cal.step_seconds(c, 1) if cal is not None else weight_layers(c.model) * 1e-3 + step_gmacs(c)

    cost = [per_step(c) * (c.train.steps if c.train.steps is not None else c.train.epochs) for c in cfgs]
    return sorted(range(len(cfgs)), key=lambda i: -cost[i])


def runs_at_once() -> int:
    """How many runs the dashboard trains at once (RESNET_LAB_MAX_RUNS, default 2)."""
    try:
        return max(1, int(os.environ.get("RESNET_LAB_MAX_RUNS", "2")))
    except ValueError:
        return 2


def device_calibration(device: str = "auto") -> Calibration | None:
    """The calibration of the device ``device`` resolves to here (a device that cannot be used: the
    CPU's), or None while it has not been measured."""
    from resnet_core.device import resolve_device

    try:
        kind = resolve_device(device).type
    except RuntimeError:
        kind = "cpu"
    return load_calibration(kind)


def estimate_seconds(cfgs: list[RunConfig], device: str = "auto", parallel: int | None = None,
                     n_train: int | None = None, n_test: int | None = None,
                     ahead: list[tuple[RunConfig, int]] | None = None, context: str = "cli") -> float | None:
    """Expected wall time of training ``cfgs``, ``parallel`` at a time (default: as the dashboard does,
    ``runs_at_once()``), on ``device``, behind the runs ``ahead`` (config, steps done), from this
    machine's calibrated step costs (resnet_core/experiments/costmodel.py), corrected by what the runs
    finished here (in ``context``: the CLI's or the dashboard's) took against them (``run_correction``).
    None while this machine and device
    have not been measured yet: no figure is better than one from another machine."""
    if not cfgs:
        return 0.0
    cal = device_calibration(device)
    if cal is None:
        return None
    return schedule_seconds(cal, cfgs, parallel or runs_at_once(), ahead=ahead, n_train=n_train, n_test=n_test,
                            correction=run_correction(cal, context, n_train, n_test))
