"""Every chart: the Plotly figures the pages draw, and the files reproduce and analyze write (HTML; PNG via matplotlib)."""
