"""ResNet Lab: the entry point only builds the page list (Streamlit's ``hello`` app shape)."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run dashboard/app.py` puts dashboard/, not the repo, on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard.access import gate  # noqa: E402

st.set_page_config(page_title="ResNet Lab", page_icon="🧱", layout="wide")

if not gate():  # without the token (a shared server): the sign-in field and nothing else
    st.stop()

from dashboard.processes import prestart  # noqa: E402 - torch-free: the training processes start now,

prestart()  # while this server imports torch and renders its first page, not after

TRAIN = ROOT / "pages" / "train.py"
pages = [
    # The default page answers at "/" (its url_path only keys it inside Streamlit).
    st.Page(TRAIN, title="Train", icon=":material/model_training:", url_path="home", default=True),
    st.Page(ROOT / "pages" / "compare.py", title="Compare", icon=":material/stacked_line_chart:", url_path="compare"),
    st.Page(ROOT / "pages" / "why.py", title="Why it works", icon=":material/science:", url_path="why"),
    st.Page(ROOT / "pages" / "attribution.py", title="Attribution", icon=":material/image_search:",
            url_path="attribution"),
    # Streamlit serves the default page at "/" only; this hidden twin answers a link or bookmark to /train.
    st.Page(TRAIN, title="Train", icon=":material/model_training:", url_path="train", visibility="hidden"),
]

st.navigation(pages).run()
