"""Why it works: the arguments of He et al. and Veit et al. made visible without waiting for training:
gradient flow at any depth, shattered gradients, the unrolled ensemble and lesions, loss landscapes.

Every analysis is ``resnet_core.analysis``'s (the CLI's ``analyze`` runs the same); this page picks
models and settings, runs them in the worker (``dashboard/analysis_view.py``) and draws the result."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from resnet_core.figures import analysis as charts
from dashboard import analysis_view as view
from dashboard import downloads
from dashboard.widgets import available_devices, cifar_root, plot
from resnet_core.nets import community
from resnet_core.config import INITS, SHORTCUTS, ConfigError, ModelConfig, valid_depths
from resnet_core.training.runs import default_runs_dir

ORDER = ["gradient-flow", "shattering", "paths", "lesion", "responses", "interpolate", "landscape"]
TAB_TITLES = {"gradient-flow": "Gradient flow", "shattering": "Shattered gradients", "paths": "Paths",
              "lesion": "Lesions", "responses": "Layer responses (Fig. 7)", "interpolate": "1-D interpolation",
              "landscape": "Loss landscape"}
CAPTIONS = {
    "gradient-flow": (
        "Training adjusts every layer by the gradient that reaches it from the loss, passed backwards "
        "through every layer above it. In a plain net that signal is multiplied by each layer's Jacobian in "
        "turn: with BN at initialisation it grows by about 1.2x per layer towards the input (Yang et al. "
        "2019). With identity shortcuts and nothing after the addition (pre-activation), "
        "∂E/∂x_l = ∂E/∂x_L (1 + ∂ΣF/∂x_l) (He et al. 2016): the \"+1\" carries the gradient between any two "
        "blocks, and the branches add to it. This runs one forward and one backward pass at initialisation. "
        "Look for: the gradient per element (RMS; stages differ in size) growing towards the input for every "
        "net, by orders of magnitude for deep plain nets and by a small factor for residual ones; the fitted "
        "growth per layer within each stage; the \"+1\" view, where the pre-activation net passes the whole "
        "gradient through every shortcut and the post-activation net's ReLU after the addition lets only a "
        "share through; and the branch's energy share (its projection on the gradient; with the shortcut's "
        "it adds to 1)."),
    "shattering": (
        "Balduzzi et al. 2017: walk in a straight line from one image to another and record, at each of the "
        "inputs on the way, the gradient of one class score with respect to the input. Each pixel's gradient "
        "is then a signal along the line. In a deep plain net it behaves like white noise (it is "
        "\"shattered\"): its autocorrelation is gone after one step and its power spectrum is flat, so it "
        "says little about the neighbourhood. A residual net's behaves like brown noise: correlated over "
        "many steps, its power falling with frequency. Look for: the plain curves' autocorrelation along the "
        "line falling to zero at lag 1, the residual curves' staying high, and the spectrum slopes (0 white, "
        "-2 brown). The correlation across pixels is a second view, not the paper's statistic."),
    "paths": (
        "Veit et al. 2016: unrolling x_{i+1} = x_i + F(x_i) over n blocks writes the output as a sum over "
        "2ⁿ paths, each passing through the branch of some blocks and the shortcut of the others. Path "
        "lengths follow a Binomial(n, 1/2): most paths are of medium length. Yet the gradient a path carries "
        "shrinks fast with its length, so the gradient that trains the net comes mostly from short paths. "
        "Look for: where the third panel (each length's part of ‖g‖², C(n,k)·E‖g_k‖²/‖g‖²) peaks, far left "
        "of the first panel's peak. The parts add to 1 only if path gradients are orthogonal; their sum is "
        "given. A few draws on small random training batches show the shape; the paper averages about "
        "1,000 draws per length."),
    "lesion": (
        "If a ResNet is an ensemble of paths, deleting one block removes only some of them, and the net "
        "should survive (Veit et al. 2016): the block is replaced by its shortcut. In a plain net every "
        "signal goes through every layer, so removing any layer is catastrophic. Look for: the residual "
        "net's error staying near its base line for most single deletions (downsampling blocks, ▲, hurt "
        "more), the error rising smoothly, not abruptly, with the number of deleted blocks, and swapping "
        "random pairs of same-shape blocks costing little (error against Kendall's τ). The decomposition "
        "tests x_L = x_l + ΣF(x_i) with the branches' own outputs: its residual error is zero only for "
        "pre-activation nets."),
    "responses": (
        "He et al. 2015, Fig. 7: in a trained net, the std of every 3x3 layer's output after BN and before the "
        "ReLU or the addition, on test images with BN in eval mode. If residual functions are closer to zero "
        "than unreferenced ones, residual nets respond less than plain nets of the same depth, and deeper "
        "ResNets less than shallower ones. Look for: the residual run's line below its plain twin's, by "
        "layer and sorted by magnitude. Pre-activation and bottleneck nets measure what the paper's quantity "
        "is for them (the result says which)."),
    "interpolate": (
        "Goodfellow et al. 2015: follow the straight line in weight space from the initial weights (α = 0) "
        "to the trained ones (α = 1) and beyond. A smooth descent without bumps means training had a simple "
        "road to travel. BN's running statistics move along the line with the weights (the paper's way); "
        "recomputing them at each α is an option. The line needs the run's own initial weights "
        "(checkpoints/init.pt): runs trained before runs saved them cannot be interpolated."),
    "landscape": (
        "Li et al. 2018: the loss around the trained weights along two random directions, each filter of a "
        "direction scaled to the norm of the matching filter of the weights (so nets of different scale "
        "compare), drawn as raw-loss contours at levels 0.1 to 10 and as the surface ln(min(loss, 10) + 0.1). "
        "In the paper plain nets are still nearly convex at 20 layers and turn chaotic, full of ridges and "
        "holes, from about 56 layers; residual nets keep a wide smooth bowl at every depth. Seeing the chaos "
        "needs a trained plain-56 (on CIFAR-10). Look for: a plain net and its residual twin side by side "
        "on one colour scale, and the width of the central basin."),
}
ALL_DEPTHS = valid_depths("basic")
SWEEP_DEPTHS = [8, 20, 56, 110, 218, 434, 1202]

st.title("Why it works")
st.caption("Why residual connections make deep nets trainable, shown on your machine: each tab runs one "
           "experiment from the papers on nets at initialisation, runs trained here or the community "
           "checkpoints, in the background, with a progress bar and Cancel. Numbers are cached, so coming "
           "back to a tab shows its last result at once.")
service = view.AnalysisService.shared()
root = str(default_runs_dir().resolve())
state = st.session_state
analyses = view.available()
RUNS = view.stored_runs(root)   # every stored run with a checkpoint, read once per rerun

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
INIT_DATA = {"name": "cifar10", "path": cifar, "download": False} if data_pick == "CIFAR-10" else None
if data_pick == "A folder of images":
    if folder_path and Path(folder_path).expanduser().is_dir():
        INIT_DATA = {"name": "folder", "path": str(Path(folder_path).expanduser())}
    else:
        st.error(f"No folder {folder_path!r} here: give the path of a folder with one sub-folder of images per "
                 "class; the embedded shapes are used until then." if folder_path else
                 "Give the path of a folder with one sub-folder of images per class; the embedded shapes are "
                 "used until then.")
# The community checkpoints are CIFAR-10 models: evaluated on anything else, their errors would mean nothing.
CKPT_DATA = {"name": "cifar10", "path": cifar, "download": False} if cifar else None
NO_CIFAR = ("The community checkpoints are CIFAR-10 models and CIFAR-10 is not on this machine: download it "
            "from the Train page's sidebar (Data set: CIFAR-10), or extract cifar-10-python.tar.gz into data/ "
            "(or set RESNET_LAB_DATA), to analyse them on their own images.")


def run_choice_label(r: dict) -> str:
    return f"{'residual' if r['residual'] else 'plain'} · {r['label']} · {r['status']} · {r['run_id']}"


# --- running and showing ---------------------------------------------------------------------------------

@st.fragment(run_every=0.5)
def progress_panel(name: str, keys: list[str]) -> None:
    jobs = [j for j in (service.job(k) for k in keys) if j is not None and j.active]
    if not jobs:
        st.rerun()  # every job finished: redraw the page with the results
    for j in jobs:
        st.progress(j.progress, text=j.progress_text())
    if st.button("Cancel", key=f"why_{name}_cancel"):
        service.cancel(keys)
        st.rerun()


@st.fragment(run_every=0.5)
def estimate_panel(requests: list[view.Request]) -> None:
    if view.ESTIMATES.summary(requests, device)[0] != "pending":
        st.rerun()  # the estimate (or its refusal) is in: show it where it belongs
    st.caption("Estimating the cost ...")


def run_panel(name: str, requests: list[view.Request], draw, problem: str | None = None) -> None:
    """Cost estimate, Start, progress and Cancel, errors, and the last complete result with its exports."""
    started_key, shown_key = f"why_{name}_requests", f"why_{name}_shown"
    if problem:
        st.info(problem)
    startable = False
    if requests and not problem:
        verdict, text = view.ESTIMATES.summary(requests, device)
        if verdict == "failed":
            st.error(text)
        elif verdict == "ready":
            st.caption(text)
        else:
            estimate_panel(requests)
        startable = verdict != "failed"   # an estimate still being worked out does not hold Start back
    if st.button("Start", key=f"why_{name}_start", type="primary", disabled=not startable):
        # What this tab started before and no longer asks for would only hold the worker up.
        keys = {r.key for r in requests}
        service.cancel([r.key for r in state.get(started_key) or [] if r.key not in keys])
        for r in requests:
            service.forget(r.key)  # a failed or cancelled earlier attempt may run again
            view.submit(service, r, root, device)
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
        progress_panel(name, pending)
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


def section(name: str, body) -> None:
    st.caption(CAPTIONS[name])
    if name not in analyses:
        st.info(f"This analysis (`{name}`) is not available in this version of resnet_core.")
        return
    body(name)


# --- 1. gradient flow ---------------------------------------------------------------------------------

def gradient_flow(name: str) -> None:
    c1, c2, c3 = st.columns([1, 2, 1])
    arch = c1.radio("Nets", ["both", "residual", "plain"], horizontal=True, key="why_gf_arch")
    depths = c2.multiselect("Depths", ALL_DEPTHS, default=[20, 56, 110], key="why_gf_depths",
                            help="Depth 6n+2; the paper's CIFAR nets: 20 to 110, and 1202. "
                                 "One forward and backward pass each.")
    batch = c3.number_input("Batch (images)", 1, 256, 16, key="why_gf_batch")
    c2.button("The papers' depths: 8, 20, 56, 110, 218, 434, 1202", key="why_gf_sweep",
              on_click=lambda: state.update(why_gf_depths=SWEEP_DEPTHS, why_gf_batch=8),
              help="Plain and residual nets at the depths of the paper's Table 6 and Fig. 6, at a batch of 8: "
                   "a 1,202-layer net costs as much as about 60 ResNet-20s, and the estimate says how long here.")
    c4, c5, c6, c7 = st.columns(4)
    bn = c4.checkbox("BatchNorm", True, key="why_gf_bn")
    preact = c5.checkbox("Pre-activation", False, key="why_gf_preact")
    init = c6.selectbox("Init", INITS, key="why_gf_init")
    shortcut = c7.selectbox("Shortcut", SHORTCUTS, key="why_gf_shortcut")
    kinds = {"both": [False, True], "residual": [True], "plain": [False]}[arch]
    requests, problem = [], None if depths else "Pick at least one depth."
    try:
        for residual in kinds:
            for depth in sorted(depths):
                cfg = ModelConfig(depth=depth, residual=residual, batchnorm=bn, preact=preact, init=init,
                                  shortcut=shortcut)
                # the "+1" view: the shallowest residual net also runs with the other activation order
                requests.append(view.Request(name, cfg.name + ("" if bn else " no-BN"), config=cfg.to_dict(),
                                             settings={"batch_size": int(batch),
                                                       "plus_one": residual and depth == min(depths)},
                                             data=INIT_DATA))
    except ConfigError as e:
        requests, problem = [], str(e)

    def draw(results):
        names = {k: r.get("blocks", []) for k, r in results.items()}
        rms = {k: r["rms_input_grad"] for k, r in results.items() if r.get("rms_input_grad")}
        norms = {k: r["input_grad_norm"] for k, r in results.items()}
        figs = {"Gradient per element by block": charts.block_profile_figure(
                    rms, "Gradient reaching each block's input, per element (RMS)", "RMS gradient (log)", names=names),
                "Gradient norm by block": charts.block_profile_figure(
                    norms, "Gradient reaching each block's input, ‖∂L/∂x_l‖ (raw: stages differ in size)",
                    "gradient norm (log)", names=names)}
        sweeps: dict[str, tuple[list, list]] = {}
        for r in sorted(results.values(), key=lambda r: r["depth"]):
            family = "residual" if r["residual"] else "plain"
            for label, key in ((f"{family}, per element", "ratio_per_element"), (f"{family}, raw norms", "ratio")):
                if key in r:
                    depths, ratios = sweeps.setdefault(label, ([], []))
                    depths.append(r["depth"])
                    ratios.append(r[key])
        figs["Ratio by depth"] = charts.ratio_vs_depth_figure(sweeps)
        plus = next((r["plus_one"] for r in results.values() if r.get("plus_one")), None)
        if plus:
            pre, post = plus["pre-activation"], plus["post-activation"]
            figs["The +1"] = charts.block_profile_figure(
                {f"{pre['model']} pre-activation": pre["rms_input_grad"],
                 f"{post['model']} post-activation": post["rms_input_grad"]},
                "The \"+1\": pre-activation (nothing after the addition) beside post-activation", "RMS gradient (log)")
            figs["ReLU mask"] = charts.block_profile_figure(
                {"pre-activation": pre["output_relu_pass"], "post-activation": post["output_relu_pass"]},
                "Share of each block's output gradient that passes its output ReLU, ‖u‖/‖v‖",
                "‖u‖ / ‖v‖", log_y=False)
        share = {k: r["branch_energy_share"] for k, r in results.items()
                 if r.get("branch_energy_share") and r.get("residual")}
        if share:
            figs["Branch share"] = charts.branch_share_figure(share)
        cosine = {k: r["branch_shortcut_cosine"] for k, r in results.items()
                  if r.get("residual") and r.get("branch_shortcut_cosine")}
        if cosine:
            figs["Cosine"] = charts.block_profile_figure(
                cosine, "Cosine between the branch's and the shortcut's part of the gradient", "cosine", log_y=False)
        act = {k: r["activation_std"] for k, r in results.items() if r.get("activation_std")}
        if act:
            figs["Activation std"] = charts.block_profile_figure(act, "Forward activation std by block",
                                                                 "std (log)")
        wgrad = {k: r["weight_grad_norm"] for k, r in results.items() if r.get("weight_grad_norm")}
        if wgrad:
            figs["Weight gradients"] = charts.block_profile_figure(wgrad, "Weight-gradient norm by layer",
                                                                   "‖∂L/∂W‖ (log)", x_title="layer index (0: stem)")
        show(figs, name, {
            "Gradient per element by block": "Root mean square of the gradient's elements: a stage-1 tensor has "
            "4x the elements of a stage-3 one, which alone doubles a ratio of raw norms.",
            "The +1": "He et al.'s ∂E/∂x_l = ∂E/∂x_L (1 + ∂ΣF/∂x_l) holds for identity shortcuts with nothing "
            "after the addition: the pre-activation net. In the post-activation net the ReLU after each sum "
            "masks the shortcut's gradient too (the chart below).",
            "Branch share": "The projection of the branch's part on the whole gradient; the shortcut's is the rest. "
            "Norms would not divide it: the two parts are nearly orthogonal (the cosine, below)."})
        rates = []
        for k, r in results.items():
            per_stage = [f"{s['stage']} {s['rate']:.3f}" for s in r.get("per_layer_rate_by_stage", [])
                         if s.get("rate") is not None]
            if per_stage:
                rates.append(f"{k}: " + ", ".join(per_stage))
        if rates:
            st.caption("Growth of the per-element gradient per weight layer, output to input, fitted within each "
                       "stage (Yang et al. 2019 predict about 1.21 for a plain net with BN): " + " · ".join(rates))
        st.caption("Time per net: " + " · ".join(f"{k} {r['seconds']:.2f} s" for k, r in results.items()
                                                  if "seconds" in r))
        return figs

    run_panel(name, requests, draw, problem)


# --- 2. shattered gradients ----------------------------------------------------------------------------

def shattering(name: str) -> None:
    c1, c2, c3 = st.columns([1, 2, 2])
    arch = c1.radio("Nets", ["both", "residual", "plain"], horizontal=True, key="why_sh_arch")
    depths = c2.multiselect("Depths (at initialisation)", ALL_DEPTHS, default=[20, 56], key="why_sh_depths")
    by_id = {r["run_id"]: r for r in RUNS}
    trained = c3.multiselect("Trained runs (each beside itself at initialisation)", list(by_id), key="why_sh_runs",
                             format_func=lambda i: run_choice_label(by_id[i]))
    points = st.slider("Inputs along the line between two test images", 32, 512, 256, 32, key="why_sh_points")
    requests = []
    for depth in sorted(depths):
        # "both": the residual net and its plain twin in one request (the core's ``twin``)
        cfg = ModelConfig(depth=depth, residual=arch != "plain")
        requests.append(view.Request(name, f"depth {depth}" if arch == "both" else cfg.name, config=cfg.to_dict(),
                                     settings={"points": int(points), "twin": arch == "both"},
                                     data=INIT_DATA))
    requests += [view.Request(name, f"{by_id[i]['label']} · {i[-4:]}", run_id=i,
                              settings={"points": int(points), "twin": False}) for i in trained]

    def draw(results):
        curves = {}
        for request_label, r in results.items():
            for m in r["models"]:
                key = f"{m['model']} {m['label']}"
                if key in curves:  # e.g. a trained run's initialisation and the same depth picked above
                    key = f"{key} ({request_label})"
                curves[key] = m
        figs = {"Gradient along the line": charts.line_gradient_figure({k: m["trace"] for k, m in curves.items()}),
                "Autocorrelation along the line": charts.autocorrelation_figure(
                    {k: (list(range(len(m["autocorrelation_along_line"]))), m["autocorrelation_along_line"])
                     for k, m in curves.items()}),
                "Power spectrum": charts.power_spectrum_figure(
                    {k: (m["spectrum_frequency"], m["power_spectrum"], m["spectrum_slope"]) for k, m in curves.items()}),
                "Correlation across pixels": charts.autocorrelation_figure(
                    {k: (list(range(len(m["cross_pixel_correlation"]))), m["cross_pixel_correlation"])
                     for k, m in curves.items()},
                    title="Correlation across pixels of whole gradient maps k inputs apart (a second view)")}
        show(figs, name, {"Gradient along the line": "One pixel's gradient (the centre pixel, first colour "
                                                     "channel) at each input on the line, scaled to unit spread.",
                          "Autocorrelation along the line": "The paper's statistic: each pixel's gradient as a "
                          "series along the line, centred, its autocorrelation by lag, averaged over pixels.",
                          "Correlation across pixels": "Not the paper's statistic: the Pearson correlation over "
                          "pixels between the gradient maps of two inputs k steps apart."})
        st.caption("Autocorrelation at lag 1 along the line (1: smooth, 0: white noise): " + " · ".join(
            f"{k} {m['line_neighbour_correlation']:.3f}" for k, m in curves.items()))
        return figs

    run_panel(name, requests, draw, None if requests else "Pick a depth or a trained run.")


# --- 3. paths ------------------------------------------------------------------------------------------

def paths(name: str) -> None:
    c1, c2 = st.columns([1, 3])
    mode = c1.radio("Paths of", ["a net at initialisation", "a trained run", "a community checkpoint"],
                    key="why_pa_mode")
    c3, c4, c5, c6 = st.columns(4)
    measure = c3.checkbox("Measure the gradient per length (else exact counts only)", True, key="why_pa_measure")
    paper = c3.checkbox("The paper's setting (1,000 draws per length)", False, key="why_pa_paper",
                        disabled=not measure, help="Veit et al. average about 1,000 measurements per length over "
                        "training batches; the default is what fits a 2-core CPU in a minute or so.")
    draws = c4.number_input("Random draws per length", 1, 1000, 8, key="why_pa_draws", disabled=not measure or paper)
    batches = c5.number_input("Random training batches", 1, 1000, 2, key="why_pa_batches", disabled=not measure)
    batch = c6.number_input("Images per batch", 1, 256, 8, key="why_pa_batch", disabled=not measure)
    settings = {"measure": bool(measure), "draws": 1000 if paper else int(draws), "batches": int(batches),
                "batch_size": int(batch)}
    requests, problem = [], None
    if mode == "a net at initialisation":
        depth = c2.selectbox("Depth (n blocks = (depth - 2) / 2)", ALL_DEPTHS, index=ALL_DEPTHS.index(110),
                             key="why_pa_depth", help="ResNet-110 has 54 blocks, the net of Veit et al.'s Fig. 6.")
        cfg = ModelConfig(depth=depth)
        requests = [view.Request(name, cfg.name + " (init)", config=cfg.to_dict(), settings=settings, data=INIT_DATA)]
    elif mode == "a trained run":
        runs = [r for r in RUNS if r["residual"]]
        if not runs:
            problem = "No stored residual run has a checkpoint yet: train one on the Train page."
        else:
            by_id = {r["run_id"]: r for r in runs}
            pick = c2.selectbox("Run", list(by_id), key="why_pa_run", format_func=lambda i: run_choice_label(by_id[i]))
            requests = [view.Request(name, by_id[pick]["label"], run_id=pick, settings=settings)]
    else:
        pick = c2.selectbox("Checkpoint", community.NAMES, key="why_pa_ckpt", format_func=downloads.community_label)
        path = downloads.community_checkpoint(pick, key="why_pa_dl", auto=False)  # a button, then progress
        if path is None:
            problem = f"{pick} is not here yet: it is used once its download ends."
        else:
            if CKPT_DATA is None and measure:
                problem = NO_CIFAR
            requests = [view.Request(name, pick.split(":")[1], checkpoint=str(path), settings=settings,
                                     data=CKPT_DATA)]

    def draw(results):
        (label, r), = results.items()
        figs = {"Paths": charts.paths_figure(r["length_distribution"], r.get("gradient_by_length"),
                                             r.get("lengths"), r.get("paths_95_range"), r.get("gradient_90_range"),
                                             r.get("gradient_energy_share_by_length"), r.get("full_gradient_norm"))}
        show(figs, name)
        lo, hi = r["paths_95_range"]
        text = f"{label}: {r['blocks']} blocks, 2^{r['blocks']} paths; 95% of them pass through {lo} to {hi} blocks."
        if r.get("gradient_90_range"):
            g_lo, g_hi = r["gradient_90_range"]
            text += (f" 90% of the summed C(n,k)·E‖g_k‖² comes from paths of {g_lo} to {g_hi} blocks; the "
                     f"parts add up to {r['gradient_energy_share_total']:.2f} of ‖g‖² (1 if path gradients were "
                     f"orthogonal; less where they reinforce each other). {r['draws']} draws per length over "
                     f"{r['batches']} batches of "
                     f"{r['batch_size']} training images" + (" (the paper's 1,000)." if r["draws"] >= 1000 else
                                                              "; the paper averages about 1,000."))
        st.caption(text)
        return figs

    run_panel(name, requests, draw, problem)


# --- 4. lesions ----------------------------------------------------------------------------------------

def community_request(name: str, spec: str, settings: dict, key: str, problem: str | None):
    """(the request for a community checkpoint by name, or None while it is not downloaded; the
    problem to show): its Download button and progress are drawn here."""
    path = downloads.community_checkpoint(spec, key=key, auto=False)
    if path is None:
        return None, f"{spec} is not here yet: download it above."
    ref = spec.split(":", 1)[1]
    request = view.Request(name, f"{ref} (community)", checkpoint=str(path), settings=settings, data=CKPT_DATA)
    return request, (NO_CIFAR if CKPT_DATA is None else problem)


def lesion(name: str) -> None:
    # Residual runs first (the study's subject), then the community checkpoints, then plain runs.
    ordered = [r for r in RUNS if r["residual"]], [r for r in RUNS if not r["residual"]]
    options = {f"run:{r['run_id']}": run_choice_label(r) for r in ordered[0]}
    options.update({n: downloads.community_label(n) for n in community.NAMES})
    options.update({f"run:{r['run_id']}": run_choice_label(r) for r in ordered[1]})
    labels = {f"run:{r['run_id']}": f"{r['label']} · {r['run_id'][-4:]}" for r in RUNS}
    c1, c2 = st.columns(2)
    pick = c1.selectbox("Net (a stored run with a checkpoint, or a community checkpoint)", list(options),
                        key="why_le_model", format_func=options.get)
    plain_runs = {f"run:{r['run_id']}": run_choice_label(r) for r in ordered[1]}
    beside = c2.selectbox("Plain net beside it (optional)", ["none"] + list(plain_runs), key="why_le_plain",
                          format_func=lambda s: "none" if s == "none" else plain_runs[s],
                          help="Train a plain twin on the Train page (Start twin) to compare: deleting any of "
                               "its layers is catastrophic.")
    c3, c4, c5 = st.columns(3)
    paper = c5.checkbox("The paper's setting (all 10,000 test images)", False, key="why_le_paper",
                        help="Veit et al. score the whole CIFAR-10 test set; the default fits the time budget here.")
    images = c3.number_input("Test images", 50, 10000, 500, 50, key="why_le_images", disabled=paper)
    draws = c4.number_input("Random draws per k and per reordering", 1, 1000, 2, key="why_le_draws")
    settings = {"images": 10000 if paper else int(images), "draws": int(draws)}
    problem = None
    requests = []
    for spec in dict.fromkeys([pick] + ([beside] if beside != "none" else [])):
        kind, ref = spec.split(":", 1)
        if kind == "run":
            requests.append(view.Request(name, labels[spec], run_id=ref, settings=settings))
        else:  # a community checkpoint by name, downloaded on first use
            request, problem = community_request(name, spec, settings, "why_le_dl", problem)
            requests += [request] if request is not None else []

    def draw(results):
        figs = {"Single deletions": charts.lesion_single_figure(
                    {k: ([s["block"] for s in r["single"]], [bool(s["downsampling"]) for s in r["single"]],
                         [s["error"] for s in r["single"]]) for k, r in results.items()},
                    {k: r["base_error"] for k, r in results.items()}),
                "Deleting k blocks": charts.lesion_by_count_figure(
                    {k: ([b["k"] for b in r["by_count"]], [b["error"] for b in r["by_count"]])
                     for k, r in results.items()})}
        reorder = {k: ([p["kendall_tau"] for p in r["reorder"]], [p["error"] for p in r["reorder"]])
                   for k, r in results.items() if r.get("reorder")}
        if reorder:
            figs["Reordering"] = charts.reorder_figure(reorder)
        show(figs, name)
        decomposed = {k: r["decomposition"] for k, r in results.items() if r.get("decomposition")}
        if decomposed:
            st.markdown("**x_L = x_l + Σ F(x_i), literally** (one test image)")
            c1, c2 = st.columns(2)
            who = c1.selectbox("Net", list(decomposed), key="why_le_dec_model")
            stages = {d["stage"]: d for d in decomposed[who]}
            stage = stages[c2.selectbox("Stage", list(stages), index=len(stages) - 1, key="why_le_dec_stage")]
            st.caption("Residual error ‖x_L - x_l - ΣF(x_i)‖/‖x_L‖ with the branches' own outputs, by stage: "
                       + ", ".join(f"{d['stage']} {d['residual_error']:.2g}" for d in decomposed[who]
                                   if "residual_error" in d)
                       + " (zero up to float error only for pre-activation nets; the stack below adds what each "
                         "block changes, x_{i+1} - x_i, which sums to x_L in any net).")
            extra = {"Decomposition": charts.decomposition_figure(
                         stage["blocks"], stage["contribution_norm"], stage["input_norm"], stage["output_norm"],
                         title=f"{who}, {stage['stage']}: its input plus what each block adds"),
                     "Decomposition maps": charts.decomposition_maps_figure(
                         stage["blocks"], stage["input_map"], stage["contribution_maps"], stage["output_map"])}
            show(extra, f"{name}_dec")
            figs.update(extra)
        return figs

    run_panel(name, requests, draw, problem)


# --- 5. layer responses (Fig. 7) ------------------------------------------------------------------------

def responses(name: str) -> None:
    options = {f"run:{r['run_id']}": run_choice_label(r) for r in RUNS}
    # The community CIFAR-10 nets by name, each downloaded on first use (a button, then its progress).
    options.update({n: downloads.community_label(n) for n in community.NAMES})
    if not RUNS:
        st.caption("No stored run has a checkpoint yet: train a plain net and its residual twin on the Train "
                   "page (Start twin) to compare them as the paper does, or pick a community checkpoint.")
    default = [next((k for k, r in zip(options, RUNS) if not r["residual"]), None),
               next((k for k, r in zip(options, RUNS) if r["residual"]), None)]
    picks = st.multiselect("Nets (a plain run and its residual twin compare as in the paper)", list(options),
                           default=[d for d in default if d], key="why_re_models", format_func=options.get)
    c1, c2 = st.columns(2)
    paper = c2.checkbox("The paper's setting (all 10,000 test images)", False, key="why_re_paper")
    images = c1.number_input("Test images", 50, 10000, 1000, 50, key="why_re_images", disabled=paper)
    settings = {"images": 10000 if paper else int(images)}
    requests, problem = [], None
    for spec in picks:
        kind, ref = spec.split(":", 1)
        if kind == "run":
            by_id = {r["run_id"]: r for r in RUNS}
            requests.append(view.Request(name, f"{by_id[ref]['label']} · {ref[-4:]}", run_id=ref, settings=settings))
        else:  # a community checkpoint by name, downloaded on first use
            request, problem = community_request(name, spec, settings, f"why_re_dl_{ref}", problem)
            requests += [request] if request is not None else []

    def draw(results):
        series = {k: (r["layer_response_names"], r["layer_response_std"]) for k, r in results.items()}
        figs = {"Responses": charts.response_std_figure(series)}
        show(figs, name)
        st.caption(" · ".join(f"{k}: {r['note']}, {r['images']} test images" for k, r in results.items()))
        return figs

    run_panel(name, requests, draw, problem or (None if requests else "Pick one or more nets."))


# --- 6. interpolation and landscapes --------------------------------------------------------------------

def interpolate(name: str) -> None:
    runs = RUNS
    if not runs:
        st.info("No stored run has a checkpoint yet: train one on the Train page.")
        return
    by_id = {r["run_id"]: r for r in runs}
    picks = st.multiselect("Runs (a plain net and its residual twin compare well)", list(by_id),
                           default=[r["run_id"] for r in runs][:2], key="why_in_runs",
                           format_func=lambda i: run_choice_label(by_id[i]))
    c1, c2, c3 = st.columns(3)
    points = c1.slider("Points on the line (α from -0.5 to 1.5)", 5, 81, 21, 2, key="why_in_points")
    paper = c3.checkbox("Every training image (the paper's)", False, key="why_in_paper")
    images = c2.number_input("Training images", 50, 50000, 500, 50, key="why_in_images", disabled=paper)
    settings = {"points": int(points), "images": 50000 if paper else int(images)}
    bn = st.radio("BN running statistics along the line", ["interpolate", "recompute"], horizontal=True,
                  key="why_in_bn", format_func=lambda v: {"interpolate": "interpolated with the weights (the paper's)",
                                                          "recompute": "recomputed at each α"}[v])
    settings["bn"] = bn
    lacking = [i for i in picks if not by_id[i]["has_init"]]
    if lacking:
        st.caption(f"{', '.join(by_id[i]['label'] for i in lacking)}: no initial weights saved (checkpoints/init.pt; "
                   "runs trained before runs saved them lack it), so the line cannot start from them: left out. "
                   "Train the run again to draw it.")
    picks = [i for i in picks if i not in lacking]
    requests = [view.Request(name, by_id[i]["label"] + f" · {i[-4:]}", run_id=i, settings=settings) for i in picks]

    def draw(results):
        figs = {"Interpolation": charts.interpolation_figure(
            {k: (r["alphas"], r["loss"], r.get("accuracy")) for k, r in results.items()})}
        show(figs, name)
        st.caption("Initial weights: " + " · ".join(f"{k}: {r.get('init_source', '?')}" for k, r in results.items()))
        return figs

    run_panel(name, requests, draw, None if requests else "Pick one or more runs with saved initial weights.")


def landscape(name: str) -> None:
    runs = RUNS
    if not runs:
        st.info("No stored run has a checkpoint yet: train a plain net and its residual twin on the Train page "
                "(Start twin).")
        return
    by_id = {r["run_id"]: r for r in runs}
    default = [next((r["run_id"] for r in runs if not r["residual"]), None),
               next((r["run_id"] for r in runs if r["residual"]), None)]
    picks = st.multiselect("Runs (a plain net and its residual twin, side by side)", list(by_id),
                           default=[d for d in default if d], max_selections=3, key="why_la_runs",
                           format_func=lambda i: run_choice_label(by_id[i]))
    c1, c2, c3, c4 = st.columns(4)
    paper = c4.checkbox("The paper's setting (51x51 grid, all training images)", False, key="why_la_paper",
                        help="Li et al. evaluate a 51x51 grid on the whole CIFAR-10 training set: hours on a "
                        "2-core CPU. The default grid and images fit a minute or two.")
    grid = c1.slider("Grid (points per side)", 5, 51, 11, 2, key="why_la_grid", disabled=paper)
    span = c2.slider("Span (± along each direction)", 0.1, 2.0, 1.0, 0.1, key="why_la_span")
    images = c3.number_input("Training images", 50, 50000, 500, 50, key="why_la_images", disabled=paper)
    scale = c4.radio("Loss shown as", ["paper", "log10"], key="why_la_scale", horizontal=True,
                     format_func=lambda v: {"paper": "the paper's (raw-loss contours, clipped ln surface)",
                                            "log10": "log₁₀ loss"}[v])
    settings = {"points": 51 if paper else int(grid), "span": float(span), "images": 50000 if paper else int(images)}
    requests = [view.Request(name, by_id[i]["label"] + f" · {i[-4:]}", run_id=i, settings=settings) for i in picks]

    def draw(results):
        surfaces = {k: (r["x"], r["y"], r["loss"]) for k, r in results.items()}
        figs = {"Contours": charts.landscape_contour_figure(surfaces, scale),
                "Surface": charts.landscape_surface_figure(surfaces, scale)}
        figs = show(figs, name)
        notes = [f"{k}: {r['chaos_note']}" for k, r in results.items() if r.get("chaos_note")]
        st.caption(" ".join(notes) + (" " if notes else "") + "The paper's plain-56 chaos needs a trained plain-56 "
                   "(on CIFAR-10) here too: train one on the Train page to see it. "
                   + " · ".join(f"{k}: {r['images']} images, {len(r['x'])}x{len(r['y'])} grid"
                                for k, r in results.items()) + " (the paper: 50,000 images, 51x51).")
        return figs

    run_panel(name, requests, draw, None if requests else "Pick one or more runs.")


SECTIONS = {"gradient-flow": gradient_flow, "shattering": shattering, "paths": paths, "lesion": lesion,
            "responses": responses, "interpolate": interpolate, "landscape": landscape}
for tab, analysis_name in zip(st.tabs([TAB_TITLES[n] for n in ORDER]), ORDER):
    with tab:
        section(analysis_name, SECTIONS[analysis_name])
