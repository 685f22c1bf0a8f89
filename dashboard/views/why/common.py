"""What every tab of Why it works shares: the images and device picker, the run panel (cost estimate,
Start, progress and Cancel, errors, the last complete result with its exports) and chart drawing."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import streamlit as st

from dashboard import analysis_service as view
from dashboard import downloads
from dashboard.views.why.captions import CAPTIONS
from dashboard.widgets import available_devices, cifar_root, plot
from resnet_core.config import valid_depths
from resnet_core.training.runs import default_runs_dir

ALL_DEPTHS = valid_depths("basic")
SWEEP_DEPTHS = [8, 20, 56, 110, 218, 434, 1202]
NO_CIFAR = ("The community checkpoints are CIFAR-10 models and CIFAR-10 is not on this machine: download it "
            "from the Train page's sidebar (Data set: CIFAR-10), or extract cifar-10-python.tar.gz into data/ "
            "(or set RESNET_LAB_DATA), to analyse them on their own images.")


@dataclass
class WhyContext:
    """What a tab needs from the page: the worker, where runs are stored, the device, the stored runs
    with a checkpoint, and the data for nets at initialisation and for the community checkpoints."""
    service: view.AnalysisService
    root: str
    device: str
    runs: list[dict]
    init_data: dict | None = None
    ckpt_data: dict | None = None


def images_and_device() -> WhyContext:
    """The "Images and device" expander: the data for nets at initialisation (with one error line for a
    folder that is not there) and the device; the stored runs are read once per rerun."""
    root = str(default_runs_dir().resolve())
    with st.expander("Images and device", expanded=False):
        c1, c2 = st.columns(2)
        cifar = cifar_root()
        data_names = ["Embedded shapes"] + (["CIFAR-10"] if cifar else []) + ["A folder of images"]
        data_pick = c1.radio("Images for analyses of nets at initialisation", data_names, horizontal=True,
                             key="why_data", help="Trained runs are analysed on their own data set. A folder "
                             "(one sub-folder per class) is used whole: every image in it.")
        folder_path = (c1.text_input("Folder (one sub-folder per class)", key="why_folder").strip()
                       if data_pick == "A folder of images" else "")
        devices, found = available_devices()
        device = c2.selectbox("Device", [d for d in devices if d != "auto"], key="why_device",
                              help=f"Found here: {found}.")
    init_data = {"name": "cifar10", "path": cifar, "download": False} if data_pick == "CIFAR-10" else None
    if data_pick == "A folder of images":
        if folder_path and Path(folder_path).expanduser().is_dir():
            init_data = {"name": "folder", "path": str(Path(folder_path).expanduser())}
        else:
            st.error(f"No folder {folder_path!r} here: give the path of a folder with one sub-folder of images per "
                     "class; the embedded shapes are used until then." if folder_path else
                     "Give the path of a folder with one sub-folder of images per class; the embedded shapes are "
                     "used until then.")
    # The community checkpoints are CIFAR-10 models: evaluated on anything else, their errors would mean nothing.
    ckpt_data = {"name": "cifar10", "path": cifar, "download": False} if cifar else None
    return WhyContext(view.AnalysisService.shared(), root, device, view.stored_runs(root), init_data, ckpt_data)


def section(ctx: WhyContext, module) -> None:
    """One tab: its caption, then its body, or a line saying the core lacks its analysis."""
    st.caption(CAPTIONS[module.NAME])
    if module.NAME not in view.available():
        st.info(f"This analysis (`{module.NAME}`) is not available in this version of resnet_core.")
        return
    module.tab(ctx)


def run_choice_label(r: dict) -> str:
    return f"{'residual' if r['residual'] else 'plain'} · {r['label']} · {r['status']} · {r['run_id']}"


def community_request(ctx: WhyContext, name: str, spec: str, settings: dict, key: str, problem: str | None):
    """(the request for a community checkpoint by name, or None while it is not downloaded; the
    problem to show): its Download button and progress are drawn here."""
    path = downloads.community_checkpoint(spec, key=key, auto=False)
    if path is None:
        return None, f"{spec} is not here yet: download it above."
    ref = spec.split(":", 1)[1]
    request = view.Request(name, f"{ref} (community)", checkpoint=str(path), settings=settings, data=ctx.ckpt_data)
    return request, (NO_CIFAR if ctx.ckpt_data is None else problem)


@st.fragment(run_every=0.5)
def progress_panel(service: view.AnalysisService, name: str, keys: list[str]) -> None:
    jobs = [j for j in (service.job(k) for k in keys) if j is not None and j.active]
    if not jobs:
        st.rerun()  # every job finished: redraw the page with the results
    for j in jobs:
        st.progress(j.progress, text=j.progress_text())
    if st.button("Cancel", key=f"why_{name}_cancel"):
        service.cancel(keys)
        st.rerun()


@st.fragment(run_every=0.5)
def estimate_panel(requests: list[view.Request], device: str) -> None:
    if view.ESTIMATES.summary(requests, device)[0] != "pending":
        st.rerun()  # the estimate (or its refusal) is in: show it where it belongs
    st.caption("Estimating the cost ...")


def run_panel(ctx: WhyContext, name: str, requests: list[view.Request], draw: Callable[[dict], dict],
              problem: str | None = None) -> None:
    """Cost estimate, Start, progress and Cancel, errors, and the last complete result with its exports."""
    service, state = ctx.service, st.session_state
    started_key, shown_key = f"why_{name}_requests", f"why_{name}_shown"
    if problem:
        st.info(problem)
    startable = False
    if requests and not problem:
        verdict, text = view.ESTIMATES.summary(requests, ctx.device)
        if verdict == "failed":
            st.error(text)
        elif verdict == "ready":
            st.caption(text)
        else:
            estimate_panel(requests, ctx.device)
        startable = verdict != "failed"   # an estimate still being worked out does not hold Start back
    if st.button("Start", key=f"why_{name}_start", type="primary", disabled=not startable):
        # What this tab started before and no longer asks for would only hold the worker up.
        keys = {r.key for r in requests}
        service.cancel([r.key for r in state.get(started_key) or [] if r.key not in keys])
        for r in requests:
            service.forget(r.key)  # a failed or cancelled earlier attempt may run again
            view.submit(service, r, ctx.root, ctx.device)
        state[started_key] = requests

    started = state.get(started_key) or []
    pending = []
    for r in started:
        job = service.job(r.key)
        if service.result(r.key) is not None:
            continue
        if job is None:       # the server restarted, or the result was evicted: nothing to show for it
            continue
        if job.state == "failed":
            st.error(f"{r.label}: {job.error}")
        elif job.state == "cancelled":
            st.warning(f"{r.label}: cancelled.")
        else:
            pending.append(r.key)
    if pending:
        progress_panel(service, name, pending)
    results = {r.label: service.result(r.key) for r in started}
    if started and all(v is not None for v in results.values()):
        # Kept in the session: a later failure, a cancel or the worker's LRU evicting it does not lose it.
        state[shown_key] = ([r.key for r in started], results)

    shown_keys, shown = state.get(shown_key) or ([], None)
    if not shown:
        return
    if shown_keys != [r.key for r in requests]:
        st.caption("Showing the last complete result, not the settings above: press Start to run those.")
    try:
        figures = draw(shown)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        st.error(f"The result could not be drawn ({type(e).__name__}: {view.one_line(e)}).")
        return
    used = sorted({r["setting_used"] for r in shown.values() if isinstance(r, dict) and r.get("setting_used")})
    if used:
        st.caption("Setting: " + "; ".join(used) + ".")
    export_panel(name, shown, figures)


def export_panel(name: str, shown: dict, figures: dict) -> None:
    with st.expander("Export"):
        c1, c2 = st.columns(2)
        c1.download_button("Download result (CSV)", view.result_csv(shown), file_name=f"resnet_lab_{name}.csv",
                           mime="text/csv", key=f"why_{name}_csv")
        c1.caption("One row per number: model, field, value. For a PNG use the camera icon of a chart.")
        if figures:
            which = c2.selectbox("Chart", list(figures), key=f"why_{name}_export_chart")
            c2.download_button("Download chart (HTML)",
                               figures[which].to_html(include_plotlyjs="cdn", full_html=True),
                               file_name=f"resnet_lab_{name}.html", mime="text/html", key=f"why_{name}_html")


def show(figures: dict, name: str, captions: dict | None = None) -> dict:
    for i, (title, fig) in enumerate(figures.items()):
        plot(fig, f"why_{name}_fig_{i}")
        if captions and title in captions:
            st.caption(captions[title])
    return figures
