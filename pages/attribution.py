"""Attribution: Captum saliency maps on uploaded photos or shapes samples, for runs trained here, community
CIFAR-10 checkpoints and ImageNet ResNets, with the checks that tell whether a map means anything. Each
section is a module of ``dashboard/views/attribution/``."""
from __future__ import annotations

import streamlit as st

from dashboard import attribution_service as view
from dashboard.views.attribution.common import Jobs, check_subject
from dashboard.views.attribution.faithfulness import faithfulness_check
from dashboard.views.attribution.images import pick_images
from dashboard.views.attribution.maps import image_maps
from dashboard.views.attribution.methods import pick_methods
from dashboard.views.attribution.models import pick_models
from dashboard.views.attribution.pointing import pointing_game
from dashboard.views.attribution.randomisation import randomisation_check
from resnet_core.nets import community

st.title("Attribution")
st.caption("Which pixels drive a prediction, by eight Captum methods, and whether the maps survive the "
           "sanity checks of Adebayo et al. 2018 and Petsiuk et al. 2018.")
images = pick_images()
model_specs, models = pick_models(view.runs_dir())
methods = pick_methods(models)

if not images:
    st.info("Upload an image or pick shapes samples to begin.")
    st.stop()
if not models:
    if not any(community.is_community(s) for s in model_specs):  # else: its download's progress is shown
        st.info("Pick a model: a stored run, a community CIFAR-10 checkpoint, a checkpoint by path or upload, "
                "or an ImageNet ResNet.")
    st.stop()
if not methods.names:
    st.info("Pick at least one method.")
    st.stop()

status_area = st.container()   # the progress bars and Cancel of the jobs below, above the maps
jobs = Jobs(view.get_service())
prepared = image_maps(images, models, methods, jobs)

st.header("Checks that the maps mean something")
subject = check_subject(prepared)
rand_tab, faith_tab, point_tab = st.tabs(["Model randomisation", "Deletion / insertion", "Pointing game (shapes)"])
with rand_tab:
    randomisation_check(subject, methods, jobs)
with faith_tab:
    faithfulness_check(subject, methods, jobs)
with point_tab:
    pointing_game(models, methods, jobs)
jobs.progress(status_area)
