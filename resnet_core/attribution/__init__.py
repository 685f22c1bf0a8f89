"""Attribution maps through Captum, behind one registry, and checks that the maps mean something.

One module each: ``methods`` (the registry ``METHODS`` and ``attribute``), ``loading`` (models by
spec and their predictions), ``checks`` (model randomisation, deletion/insertion, pointing game and
mass inside the object mask), ``render`` (overlays and PNGs).
"""
from resnet_core.attribution.checks import (
                     FaithfulnessResult,
                     RandomisationResult,
                     ShapesScore,
                     cascade_steps,
                     deletion_insertion,
                     mass_inside,
                     model_randomisation_check,
                     pointing_game,
                     reinitialise,
                     shapes_evaluation,
                     spearman,
                     top_layers,
)
from resnet_core.attribution.loading import MODEL_SPECS, load_model, predict, probabilities
from resnet_core.attribution.methods import (
                     METHODS,
                     PIXEL_BUDGET,
                     RANDOMISATION_THRESHOLD,
                     AttributionError,
                     AttributionMethod,
                     Cancelled,
                     attribute,
                     chunk_size,
                     default_layer,
                     get_method,
                     layer_choices,
                     method_settings,
                     occlusion_window,
                     resolve_layer,
)
from resnet_core.attribution.render import normalise_map, overlay, png_bytes

__all__ = [
    "METHODS", "MODEL_SPECS", "PIXEL_BUDGET", "RANDOMISATION_THRESHOLD", "AttributionError", "AttributionMethod",
    "Cancelled", "FaithfulnessResult", "RandomisationResult", "ShapesScore", "attribute", "cascade_steps",
    "chunk_size", "default_layer", "deletion_insertion", "get_method", "layer_choices", "load_model",
    "mass_inside", "method_settings", "model_randomisation_check", "normalise_map", "occlusion_window", "overlay",
    "png_bytes", "pointing_game", "predict", "probabilities", "reinitialise", "resolve_layer",
    "shapes_evaluation", "spearman", "top_layers",
]
