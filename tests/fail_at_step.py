"""``python -m resnet_core`` with a failure injected from outside the trainer, for the tests of a failing
rank and of a killed run (tests/unit/test_distributed.py):

    [torchrun ... -m] python -m tests.fail_at_step STEP RANK MODE -- train ...

On rank RANK (``all``: every rank; the rank is torchrun's ``RANK``, 0 in a plain process) the process
fails as it draws the batch of optimizer step STEP (1-based, counted from this process's first batch):
MODE ``raise`` raises a RuntimeError, ``kill`` dies there as from SIGKILL. Steps before STEP complete.
"""
from __future__ import annotations

import os
import signal
import sys

from resnet_core.cli.main import main
from resnet_core.data.loader import BatchLoader


def fail_at(step: int, rank: str, mode: str) -> None:
    own_rank = int(os.environ.get("RANK", "0"))
    if rank != "all" and int(rank) != own_rank:
        return
    draw = BatchLoader.next
    drawn = 0

    def next_or_fail(self):
        nonlocal drawn
        drawn += 1
        if drawn == step:
            if mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"injected failure at step {step} on rank {own_rank}")
        return draw(self)

    BatchLoader.next = next_or_fail


if __name__ == "__main__":
    step, rank, mode, sep, *args = sys.argv[1:]
    if sep != "--" or mode not in ("raise", "kill"):
        sys.exit("usage: python -m tests.fail_at_step STEP RANK|all raise|kill -- ARGS")
    fail_at(int(step), rank, mode)
    sys.exit(main(args))
