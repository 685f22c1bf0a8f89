"""The Streamlit glue of ResNet Lab: the run manager (worker threads), chart builders, shared widgets.

Only ``state.py``, ``widgets.py`` and the pages import Streamlit; ``worker.py``, ``series.py`` and
``charts.py`` are plain Python over ``resnet_core`` so scripts and tests can use them without a server.
"""
