"""Compare: overlay any stored runs (this session, earlier sessions, the CLI), the paper's Fig. 6 view,
CSV and chart export, deleting runs."""
from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from dashboard import preset_groups, redraw, state, widgets
from dashboard.views import resume
from resnet_core.figures import training as charts
from resnet_core.training.series import metrics_long_csv
from resnet_core.experiments.published import paper_reference, run_reference
from resnet_core.training.runs import ACTIVE

st.title("Compare runs")
st.caption("Every run in the run store is here: from this dashboard, from earlier sessions and from the "
           f"command line. Runs directory: `{state.runs_dir()}`.")

manager = state.get_manager()
store = manager.store
infos = store.list()
by_id = {i.run_id: i for i in infos}

if not infos:
    st.info("No runs yet. Start one on the Train page or with `python -m resnet_core train`.")
    st.stop()


def _paper_error(config: dict | None) -> float | None:
    """He et al. 2015 Table 6's figure for a CIFAR-10 run of one of its nets (none for plain nets: the
    paper draws their curves in Fig. 6 but states no number)."""
    ref = paper_reference(config or {})
    return None if ref is None else ref.error


def _table() -> pd.DataFrame:
    rows = []
    for i in infos:
        s = i.summary
        rows.append({"run": i.run_id, "label": i.label, "group": (i.config or {}).get("group") or "",
                     "status": i.status, "steps": s.get("steps", s.get("step")),
                     "test acc (%)": round(100 * s["test_acc"], 2) if s.get("test_acc") is not None else None,
                     "test err (%)": round(100 * (1 - s["test_acc"]), 2) if s.get("test_acc") is not None else None,
                     "paper's test err (%)": _paper_error(i.config),
                     "train loss": s.get("train_loss"),
                     "images/s": round(s["images_per_s"]) if s.get("images_per_s") else None,
                     "created": pd.Timestamp.fromtimestamp(i.created).strftime("%Y-%m-%d %H:%M:%S")})
    return pd.DataFrame(rows)


with st.expander(f"All {len(infos)} stored runs", expanded=False):
    st.dataframe(_table(), hide_index=True, width="stretch")
    st.caption("Paper's test err: He et al. 2015, Table 6, for runs on CIFAR-10 at 32x32 of the paper's nets "
               "(basic post-activation blocks with BN, widths 16/32/64, option A), trained for the paper's "
               "64,000 steps or not; each finished run of those nets is listed here with both.")
    for i in infos:
        reference = run_reference(i.config, i.summary) if i.status == "finished" else None
        if reference:
            st.caption(f"{i.label} · {i.run_id}: {reference}")

run_groups = preset_groups.groups(infos)


def _default_selection() -> list[str]:
    """The newest run's preset group when it has one (a preset is read as a whole), else the 4 newest runs."""
    newest_group = (infos[0].config or {}).get("group")
    if newest_group in run_groups:
        return [i.run_id for i in run_groups[newest_group]]
    return [r.run_id for r in infos[:4]]


def _select_group() -> None:
    # A callback runs before the script, so the multiselect below still takes the group's runs.
    group = st.session_state.get("compare_group")
    if group in run_groups:
        st.session_state["compare_runs"] = [i.run_id for i in run_groups[group]]


st.session_state["compare_runs"] = [r for r in st.session_state.get("compare_runs", _default_selection())
                                    if r in by_id]
if run_groups:
    st.selectbox("Select the runs of a preset", list(run_groups), index=None, key="compare_group",
                 format_func=lambda g: preset_groups.group_title(g, run_groups[g]), on_change=_select_group,
                 placeholder="Pick a group of runs started together (a paper preset)",
                 help="Runs started together as a paper preset, from the Train page or `python -m resnet_core "
                      "reproduce`. Picking one selects all its runs below; its verdict is shown above the charts.")
selected = st.multiselect("Runs to compare", list(by_id), key="compare_runs",
                          format_func=lambda r: state.run_title(by_id[r]))


ticking = any(by_id[r].status in ACTIVE for r in selected)


# Active runs redraw as the Train page's auto setting does, but never more than every 2 s: this page compares.
@st.fragment(run_every=max(2.0, redraw.default_redraw_seconds(os.cpu_count())) if ticking else None)
def compare_panel():
    try:
        _compare_body()
    except Exception as e:  # noqa: BLE001 - a run's odd data must not put a traceback on the page
        st.error(f"Could not draw the runs ({type(e).__name__}: {e}); the runs themselves are unaffected.", icon="⚠️")


def _compare_body():
    fresh = [store.get(r) for r in selected if (store.root / r).is_dir()]
    series = [state.get_series(i) for i in fresh]
    if not series:
        st.info("Pick runs above to overlay them.")
        return
    smoothing, x_axis = widgets.curve_controls("compare_curves")
    for group in preset_groups.groups(fresh):   # every preset among the selected runs, judged on all its runs
        members = [store.get(i.run_id) for i in run_groups.get(group, []) if (store.root / i.run_id).is_dir()]
        result = preset_groups.group_result(group, members)   # read afresh: this panel redraws while runs end
        if result is not None:
            widgets.preset_verdict(result)
            if result.key == "depth-sweep":
                widgets.plot(charts.depth_sweep_figure(result.summaries), f"cmp_sweep_{group}")
                st.caption("Each run's training error over its last 10% of steps: the plain line rising with "
                           "depth is the degradation problem; the residual line stays low.")
    fig6_smoothing = widgets.FIG6_SMOOTHING   # set by the Fig. 6 slider, drawn right above its chart
    # Builders, not figures: each is built where it is drawn, after the controls it depends on.
    figs = {
        "Loss": (lambda: charts.loss_figure(series, smoothing, x_axis),
                 "Loss against training time, one colour per run (faint: unsmoothed); dashed: test set."),
        "Accuracy": (lambda: charts.accuracy_figure(series, smoothing, x_axis),
                     "Accuracy against training time; the higher curve learned more."),
        "Fig. 6: training error by depth": (lambda: charts.fig6_figure(series, fig6_smoothing, x_axis),
            "The paper's Fig. 6: dashed plain nets, solid residual nets, colour by depth. A deeper plain net's "
            "error stays above the shallower one's (degradation); a deeper residual net's goes below."),
        "Gradient profile": (lambda: charts.grad_profile_figure(series),
            "Last recorded gradient norm per layer, input on the left: a plain net's falls off towards the input."),
        "Branch response std (Fig. 7)": (lambda: charts.branch_std_figure(series),
            "Std of each block's branch F(x) at the last step: residual nets' responses are smaller."),
    }
    built = {}
    c1, c2 = st.columns(2)
    for i, (name, (build, caption)) in enumerate(figs.items()):
        with (c1 if i % 2 == 0 else c2) if i < 2 else st.container():
            if name.startswith("Fig. 6"):
                # Its own smoothing, heavier by default: per-batch error is too noisy to read a gap in.
                fig6_smoothing, _ = widgets.curve_controls("compare_fig6", widgets.FIG6_SMOOTHING,
                                                           "Fig. 6 smoothing", x_axis=False)
            built[name] = build()
            widgets.plot(built[name], f"cmp_{i}")
            st.caption(caption)

    st.subheader("Export")
    e1, e2 = st.columns(2)
    with e1:
        st.download_button("Download metrics (CSV)", metrics_long_csv(series), file_name="resnet_lab_metrics.csv",
                           mime="text/csv", key="csv", icon="⬇️")
        st.caption("The selected runs' loss, accuracy, learning rate and throughput per step, in long format "
                   "(run_id, label, step, metric, value).")
    with e2:
        which = st.selectbox("Chart", list(figs), key="export_chart")
        st.download_button("Download chart (HTML)", built[which].to_html(include_plotlyjs="cdn", full_html=True),
                           file_name="resnet_lab_chart.html", mime="text/html", key="html", icon="⬇️")
        st.caption("An interactive HTML file (loads plotly.js from its CDN). For a PNG, use the camera icon "
                   "that appears at the top right of any chart when you hover over it.")


compare_panel()

resume.resume_panel(manager, infos)   # Resume a stopped or interrupted run (dashboard/views/resume.py)

st.subheader("Delete a run")
victim = st.selectbox("Run", list(by_id), key="delete_run", format_func=lambda r: state.run_title(by_id[r]))
active = manager.is_active(victim) or by_id[victim].status in ACTIVE
if active:
    st.caption("This run is still queued or training: stop it on the Train page before deleting it.")
if st.session_state.get("confirm_delete") != victim:
    st.button("Delete…", key="delete", disabled=active,
              on_click=lambda: st.session_state.update(confirm_delete=victim))
else:
    st.warning(f"Delete **{by_id[victim].label}** ({victim}) and all its files? This cannot be undone.", icon="⚠️")
    y, n, _ = st.columns([1, 1, 4])
    if y.button("Yes, delete", type="primary", key="delete_yes"):
        st.session_state.pop("confirm_delete", None)
        try:
            manager.delete(victim)
            state.forget_series(victim)
            st.session_state["delete_note"] = f"Deleted {victim}."
        except (RuntimeError, OSError) as e:
            st.session_state["delete_error"] = str(e)
        st.rerun()
    n.button("Cancel", key="delete_no", on_click=lambda: st.session_state.pop("confirm_delete", None))
if "delete_note" in st.session_state:
    st.success(st.session_state.pop("delete_note"), icon="🗑️")
if "delete_error" in st.session_state:
    st.error(st.session_state.pop("delete_error"), icon="🚫")
