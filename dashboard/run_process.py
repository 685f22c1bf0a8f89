"""A training process of the dashboard: started warm (torch imported, the default data set loaded)
before any Start, it trains the runs the server's RunManager hands it, one at a time.

Why a process per run slot and not a thread of the server: measured on a 2-core CPU, runs trained in
threads of the server shared torch's one intra-op pool and the GIL with the page's chart building and
trained at 0.47x the CLI's speed (``bench/dashboard_vs_cli.py``); a process of its own with as many
threads as ``reproduce`` gives a run trains like the CLI, and a run that crashes or runs out of
memory dies alone (the manager records it as ``failed`` with the reason) while the server and the
other runs go on. It is started before it is needed, so a Start still shows its first point within
about a second: the ~2.5 s of ``import torch`` and the data set's rendering are paid while the user
is still reading the page.

Protocol (one JSON object per line). The server writes commands to this process's stdin:
``{"cmd": "prefetch", "data": {...}}``, ``{"cmd": "warmup", "config": {...}}``, ``{"cmd": "run", "runs_dir": D, "run_id": R, "threads": N,
"resume": bool}``, ``{"cmd": "threads", "n": N}`` (taken at the next logged step), ``{"cmd": "stop"}``,
``{"cmd": "pause"}``, ``{"cmd": "resume"}``, ``{"cmd": "exit"}``.
It answers on the original stdout (everything else the process prints goes to stderr):
``{"type": "ready"}``, ``{"type": "warm"}`` after each prefetch or warm-up, then per run ``start``,
``step`` (at most 5 a second), ``done`` (status).
The run itself writes everything into its run directory, which the pages read.

Run as ``python -m dashboard.run_process``; never imports Streamlit.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time

STEP_EVENT_PERIOD_S = 0.2


def _limit_memory() -> None:
    """RESNET_LAB_RUN_MEMORY_GB caps what a run may allocate beyond this process's footprint after
    importing torch (its address space; host memory only): a run that needs more fails alone with
    PyTorch's allocation error instead of taking the machine's memory. The CUDA build of torch maps
    about 3.5 GB of address space on import, so the cap is added to what is mapped by then."""
    gb = os.environ.get("RESNET_LAB_RUN_MEMORY_GB")
    if not gb:
        return
    import resource

    with open("/proc/self/status") as f:
        mapped = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    limit = mapped + int(float(gb) * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


class _Process:
    def __init__(self, out):
        self.out = out
        self.out_lock = threading.Lock()
        self.stop = threading.Event()
        self.pause = threading.Event()
        self.datasets: dict = {}
        self.threads = 1
        self.commands: list[dict] = []
        self.have_command = threading.Condition()

    def send(self, msg: dict) -> None:
        with self.out_lock:
            try:
                self.out.write(json.dumps(msg) + "\n")
                self.out.flush()
            except (OSError, ValueError):  # the server is gone; the run store still has everything
                pass

    # --- commands come in on a thread of their own, so stop/pause reach a run mid-step ---------------
    def read_commands(self) -> None:
        for line in sys.stdin:
            try:
                cmd = json.loads(line)
            except ValueError:
                continue
            kind = cmd.get("cmd")
            if kind == "stop":
                self.stop.set()
                self.pause.clear()
            elif kind == "pause":
                self.pause.set()
            elif kind == "resume":
                self.pause.clear()
            elif kind == "threads":   # the manager divides the cores between the runs training now
                self.threads = max(1, int(cmd.get("n", 1)))
            else:
                if kind == "run":  # take the run's writer lock the moment the server lets go of it
                    cmd["_lock"] = self.take_lock(cmd)
                    # Threads are set here, in the order the server sent its messages: a "threads" message
                    # sent after this run's start (a second run started beside it) must win over it.
                    self.threads = max(1, int(cmd.get("threads", 1)))
                with self.have_command:
                    self.commands.append(cmd)
                    self.have_command.notify()
        # The server closed our stdin: it is gone or wants us gone. A run in progress stops after its
        # step with a checkpoint (status ``stopped``, resumable) rather than train on unwatched.
        self.stop.set()
        self.pause.clear()
        with self.have_command:
            self.commands.append({"cmd": "exit"})
            self.have_command.notify()

    @staticmethod
    def take_lock(cmd: dict):
        from resnet_core.training.runs import RunLock

        try:
            return RunLock(os.path.join(cmd["runs_dir"], cmd["run_id"]), wait_s=10.0)
        except Exception as e:  # noqa: BLE001 - reported by the run (it cannot be written)
            return e

    def next_command(self) -> dict:
        with self.have_command:
            while not self.commands:
                self.have_command.wait()
            return self.commands.pop(0)

    def dataset(self, data_cfg):
        from resnet_core.data import load_dataset

        if data_cfg not in self.datasets:
            while len(self.datasets) >= 3:  # CIFAR-10 is 150 MB of uint8: a few sets at most stay
                self.datasets.pop(next(iter(self.datasets)))
            self.datasets[data_cfg] = load_dataset(data_cfg)
        return self.datasets[data_cfg]

    def run(self, cmd: dict) -> None:
        import torch

        from resnet_core.nets.checkpoints import load_train_state
        from resnet_core.training.runs import RunStore, RunWriter, execute_run

        self.stop.clear()
        self.pause.clear()
        torch.set_num_threads(self.threads)   # the newest the server asked for (read_commands)
        store = RunStore(cmd["runs_dir"])
        lock = cmd.get("_lock")
        if isinstance(lock, Exception):
            print(f"run {cmd['run_id']}: {lock}", file=sys.stderr)
            self.send({"type": "done", "status": "failed", "error": str(lock)})
            return
        writer = RunWriter.reattach(store.root / cmd["run_id"], lock=lock)
        resume = None
        last = {"t": 0.0}

        def on_event(event: dict) -> None:
            kind = event["type"]
            if kind == "start":
                self.send({"type": "start", "total_steps": event["total_steps"]})
            elif kind == "step":
                if torch.get_num_threads() != self.threads:   # set from the training thread itself:
                    torch.set_num_threads(self.threads)       # OpenMP's setting is per calling thread
                now = time.monotonic()
                if now - last["t"] >= STEP_EVENT_PERIOD_S:
                    last["t"] = now
                    self.send({"type": "step", "step": event["step"], "images_per_s": event.get("images_per_s"),
                               "t": event.get("t"), "threads": torch.get_num_threads()})

        status = "failed"
        try:
            if cmd.get("resume"):
                resume = load_train_state(store.checkpoint_path(writer.run_id))
            dataset = self.dataset(writer.config.data)
            result = execute_run(writer, self.stop, self.pause, on_event=on_event, dataset=dataset, resume=resume,
                                 context="dashboard")
            status = result.status if result is not None else "failed"
        except Exception as e:  # noqa: BLE001 - a run that cannot even start is recorded as failed
            writer.set_status("failed", error=f"{type(e).__name__}: {e}", finished=time.time())
            writer.close()
        self.send({"type": "done", "status": status})

    def warmup(self, cmd: dict) -> None:
        """A few unrecorded training steps of ``cmd["config"]`` (the default Start): the first steps of
        a net build its kernels (oneDNN's primitives for each layer's shape), which would otherwise
        stand between the user's first Start and its first point."""
        import dataclasses

        import torch

        from resnet_core.config import RunConfig
        from resnet_core.training.loop import train

        try:
            cfg = RunConfig.from_dict(cmd["config"])
            cfg = dataclasses.replace(cfg, train=dataclasses.replace(
                cfg.train, steps=2, eval_every=0, checkpoint_every=0, feature_maps_every=0, warmup_steps=0))
            torch.set_num_threads(self.threads)
            train(cfg, None, dataset=self.dataset(cfg.data))
        except Exception as e:  # noqa: BLE001 - only a head start; the run itself reports any problem
            print(f"warm-up failed: {type(e).__name__}: {e}", file=sys.stderr)

    def serve(self) -> None:
        from resnet_core.config import DataConfig

        threading.Thread(target=self.read_commands, name="commands", daemon=True).start()
        self.send({"type": "ready", "pid": os.getpid()})
        while True:
            cmd = self.next_command()
            kind = cmd.get("cmd")
            if kind == "exit":
                return
            if kind == "prefetch":
                try:
                    self.dataset(DataConfig.from_dict(cmd["data"]))
                except Exception as e:  # noqa: BLE001 - the run that needs this data set reports it
                    print(f"prefetch failed: {type(e).__name__}: {e}", file=sys.stderr)
                self.send({"type": "warm"})
            elif kind == "warmup":
                self.warmup(cmd)
                self.send({"type": "warm"})
            elif kind == "run":
                self.run(cmd)


def main() -> None:
    # The protocol keeps the real stdout; anything else printed here (warnings, progress) goes to stderr.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import torch

    # Constructing the first optimizer imports torch._dynamo (~2.4 s on a 2-core CPU): pay it now.
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    import resnet_core.training.runs  # noqa: F401 - and the core's modules, before the memory cap
    import resnet_core.training.loop  # noqa: F401
    from resnet_core.memory import keep_freed_memory

    keep_freed_memory()
    _limit_memory()
    _Process(out).serve()


if __name__ == "__main__":
    main()
