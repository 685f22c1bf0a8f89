"""The Streamlit glue of ResNet Lab: the run manager and its training processes, the pages' services,
views and shared widgets.

Only ``state.py``, ``widgets.py``, ``attribution_service.py`` (its caches), ``views/`` and the pages
import Streamlit; ``worker.py``,
``run_process.py``, ``jobs.py`` and ``analysis_service.py`` are plain Python over ``resnet_core``, so
scripts and tests can use them without a server. The charts are the core's (``resnet_core.figures``).
"""
