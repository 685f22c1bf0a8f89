"""A progress bar per training run on stderr (tqdm: rate and ETA), fed by the trainer's events."""
from __future__ import annotations

import sys


class RunProgress:
    """Subscribe to ``train``'s events; draws one tqdm bar (step/total, loss, accuracy, ETA) on stderr.

    ``enabled=False`` (the CLI's ``--quiet``) draws nothing. ``desc`` names the run in front of the bar.
    """

    def __init__(self, enabled: bool = True, desc: str = "", announce: bool = True):
        self.enabled, self.desc, self.announce = enabled, desc, announce
        self.bar = None
        self._last_step = 0

    def __call__(self, e: dict) -> None:
        if not self.enabled:
            return
        kind = e["type"]
        if kind == "start":
            from tqdm import tqdm  # late: only a drawing CLI needs it

            if self.announce:
                print(f"training {self.desc + ' ' if self.desc else ''}on {e['device']}, {e['params']:,} parameters, "
                      f"{e['total_steps']} steps", file=sys.stderr)
            self.bar = tqdm(total=e["total_steps"], desc=self.desc or None, unit="step", file=sys.stderr,
                            dynamic_ncols=True, mininterval=0.2, leave=True)
        elif kind == "step" and self.bar is not None:
            # Steps arrive every log_every steps: advance by what was trained since the last one.
            self.bar.update(e["step"] - self._last_step)
            self._last_step = e["step"]
            self.bar.set_postfix(loss=f"{e['train_loss']:.3f}", acc=f"{e['train_acc']:.3f}",
                                 img_s=f"{e['images_per_s']:.0f}", refresh=False)
        elif kind == "end":
            self.close()
            print(e["status"] + (f": {e['message']}" if e.get("message") else ""), file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
