"""For the benches that compare estimates with measured times: this machine's calibration and
training-process start, copied into a cache folder of the bench's own, with no history of finished
work (``resnet_core/history.py``), so that the first estimates are the calibration's alone and every
run of the bench starts from the same state."""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def use_fresh_history(folder: Path, calibration: bool = True) -> Path:
    """Points RESNET_LAB_CACHE (this process and the ones it starts) at ``folder``/cache and returns it;
    without ``calibration`` the training calibration is left behind too (to be measured anew)."""
    from resnet_core.experiments.costmodel import cache_path

    cache = Path(folder) / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    for f in cache_path("cpu").parent.glob("*.json"):
        if f.name.startswith(("cost-", "process-start-") if calibration else ("process-start-",)):
            shutil.copy(f, cache / f.name)
    os.environ["RESNET_LAB_CACHE"] = str(cache)
    return cache
