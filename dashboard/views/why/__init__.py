"""The Why it works page: one module per tab (``tab(ctx)``), the shared run panel and pickers in ``common``."""
from dashboard.views.why import gradient_flow, interpolate, landscape, lesion, paths, responses, shattering

TABS = [gradient_flow, shattering, paths, lesion, responses, interpolate, landscape]
