"""What the Attribution page's sections share: the chosen methods and their settings, and the jobs of
one script run (submitted to the worker, awaited briefly when fast, polled with progress and Cancel)."""
from __future__ import annotations

from dataclasses import dataclass, field

import streamlit as st

from dashboard import attribution_service as view
from resnet_core.attribution import METHODS, default_layer, layer_choices

SHORT_WAIT_S = 20  # a fast method's result is awaited in the same script run, so it appears without polling


def short_name(spec: str) -> str:
    return spec.split(":", 1)[1].rsplit("/", 1)[-1][:40]


@dataclass
class Methods:
    """The methods picked, their settings by method, the Grad-CAM layer picked and the maps' opacity."""
    names: list[str]
    settings: dict
    layer_pick: str
    alpha: float

    def layer(self, loaded, method: str) -> str | None:
        """The layer a method that needs one uses on this model: the one picked if the model has it, else
        the model's last block."""
        if not METHODS[method].needs_layer:
            return None
        return self.layer_pick if self.layer_pick in layer_choices(loaded.model) else default_layer(loaded.model)


@dataclass
class Jobs:
    """The attribution jobs one script run asks for; ``pending`` collects those still running."""
    service: view.AttributionService
    pending: list[str] = field(default_factory=list)

    def ensure(self, key: str, label: str, fn, long_running: bool = True):
        """The cached result, or None while its job runs; submits the job unless the user cancelled it."""
        result = self.service.result(key)
        if result is not None:
            return result
        job = self.service.job(key)
        if job is not None and job.state in ("cancelled", "failed"):
            return None
        self.service.submit(key, label, fn)
        if not long_running:
            self.service.wait([key], SHORT_WAIT_S)
            result = self.service.result(key)
            if result is not None:
                return result
        self.pending.append(key)
        return None

    def show_problem(self, key: str) -> bool:
        """A failed or cancelled job's line and its Run again button; False while it runs."""
        job = self.service.job(key)
        if job is None or job.active:
            return False
        if job.state == "failed":
            st.error(f"{job.label}: {job.error}")
        else:
            st.warning(f"{job.label}: cancelled")
        st.button("Run again", key=f"again_{key}", on_click=self.service.forget, args=(key,))
        return job.state in ("failed", "cancelled")

    def progress(self, area) -> None:
        """The progress bars and Cancel of the jobs still running, drawn in ``area`` (a container)."""
        if self.pending:
            with area:
                progress_panel(self.service, self.pending)


def pressed_once(label: str, key: str) -> bool:
    """A check's Run button: True from its first press on (kept in the session as ``key + "_on"``)."""
    if st.button(label, key=key):
        st.session_state[f"{key}_on"] = True
    return bool(st.session_state.get(f"{key}_on"))


@st.fragment(run_every=0.5)
def progress_panel(service: view.AttributionService, keys: list[str]) -> None:
    jobs = [j for j in (service.job(k) for k in keys) if j is not None and j.active]
    if not jobs:
        st.rerun()  # everything finished: redraw the page with the results
    for j in jobs:
        st.progress(min(max(j.progress, 0.0), 1.0), text=view.job_progress_text(j))
    if st.button("Cancel", key="attr_cancel", type="secondary"):
        service.cancel(keys)
        st.rerun()


@dataclass
class Subject:
    """One image seen by one model, with its target class: what the checks run on."""
    image: dict
    spec: str
    loaded: object
    seen: object   # the image as the model sees it (PIL)
    x: object      # its normalised tensor
    target: int


def check_subject(prepared: list[Subject]) -> Subject:
    """The image and model the randomisation and deletion/insertion checks use."""
    choice = st.selectbox("Image and model for the randomisation and deletion/insertion checks",
                          list(range(len(prepared))), key="attr_check_subject",
                          format_func=lambda i: f"{prepared[i].image['name']} · {short_name(prepared[i].spec)}")
    return prepared[choice]
