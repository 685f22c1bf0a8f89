"""Compare: overlay any stored runs (this session, earlier sessions, the CLI), the paper's Fig. 6 view,
CSV and chart export, deleting runs."""
from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from dashboard import charts, state, widgets
from dashboard.series import metrics_long_csv
from resnet_core.runs import ACTIVE

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


def _table() -> pd.DataFrame:
    rows = []
    for i in infos:
        s = i.summary
        rows.append({"run": i.run_id, "label": i.label, "status": i.status,
                     "steps": s.get("steps", s.get("step")),
                     "test acc (%)": round(100 * s["test_acc"], 2) if s.get("test_acc") is not None else None,
                     "train loss": s.get("train_loss"),
                     "images/s": round(s["images_per_s"]) if s.get("images_per_s") else None,
                     "created": pd.Timestamp.fromtimestamp(i.created).strftime("%Y-%m-%d %H:%M:%S")})
    return pd.DataFrame(rows)


with st.expander(f"All {len(infos)} stored runs", expanded=False):
    st.dataframe(_table(), hide_index=True, width="stretch")

st.session_state["compare_runs"] = [r for r in st.session_state.get("compare_runs", [r.run_id for r in infos[:4]])
                                    if r in by_id]
selected = st.multiselect("Runs to compare", list(by_id), key="compare_runs",
                          format_func=lambda r: state.run_title(by_id[r]))


ticking = any(by_id[r].status in ACTIVE for r in selected)


# Active runs redraw as the Train page's auto setting does, but never more than every 2 s: this page compares.
@st.fragment(run_every=max(2.0, widgets.auto_redraw_seconds(os.cpu_count())) if ticking else None)
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
    figs = {
        "Loss": (charts.loss_figure(series), "Loss against step, one colour per run; dashed: test set."),
        "Accuracy": (charts.accuracy_figure(series), "Accuracy against step; the higher curve learned more."),
        "Fig. 6: training error by depth": (charts.fig6_figure(series),
            "The paper's Fig. 6: dashed plain nets, solid residual nets, colour by depth. A deeper plain net's "
            "error stays above the shallower one's (degradation); a deeper residual net's goes below."),
        "Gradient profile": (charts.grad_profile_figure(series),
            "Last recorded gradient norm per layer, input on the left: a plain net's falls off towards the input."),
        "Branch response std (Fig. 7)": (charts.branch_std_figure(series),
            "Std of each block's branch F(x) at the last step: residual nets' responses are smaller."),
    }
    c1, c2 = st.columns(2)
    for i, (name, (fig, caption)) in enumerate(figs.items()):
        with (c1 if i % 2 == 0 else c2) if i < 2 else st.container():
            widgets.plot(fig, f"cmp_{i}")
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
        st.download_button("Download chart (HTML)", figs[which][0].to_html(include_plotlyjs="cdn", full_html=True),
                           file_name="resnet_lab_chart.html", mime="text/html", key="html", icon="⬇️")
        st.caption("An interactive HTML file (loads plotly.js from its CDN). For a PNG, use the camera icon "
                   "that appears at the top right of any chart when you hover over it.")


compare_panel()

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
