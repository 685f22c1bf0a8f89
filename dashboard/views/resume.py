"""The Resume control: continue a stopped, interrupted or failed run from its last checkpoint, in its
own run directory (resnet_core/training/resume.py; the CLI's ``train --resume`` does the same)."""
from __future__ import annotations

import streamlit as st

from resnet_core.nets.checkpoints import CheckpointError
from resnet_core.training.resume import RESUMABLE

from dashboard import state


def resume_panel(manager, infos) -> None:
    """A picker of the resumable runs and a Resume button; says why when a run cannot continue."""
    candidates = [i for i in infos if i.status in RESUMABLE and not manager.is_active(i.run_id)]
    if not candidates:
        return
    by_id = {i.run_id: i for i in candidates}
    st.subheader("Resume a run")
    pick = st.selectbox("Stopped or interrupted run", list(by_id), key="resume_pick",
                        format_func=lambda r: state.run_title(by_id[r]))
    if st.button("Resume", key="resume_run", icon="▶️"):
        try:
            manager.resume_run(pick, owner=state.session_owner())
            st.success(f"Resumed {by_id[pick].label} ({pick}) from its last checkpoint; it trains on the Train "
                       "page's queue and its curves continue where they stopped.", icon="▶️")
        except (ValueError, RuntimeError, OSError, CheckpointError) as e:
            st.error(f"Cannot resume {pick}: {e}", icon="🚫")
    st.caption("Continues from the run's last checkpoint with its own settings: the same weights, momentum, "
               "learning-rate schedule and batches as if it had never stopped. A run killed mid-way resumes "
               "from its last periodic checkpoint (train with a checkpoint interval to have them).")
