"""The papers' experiments: scales, presets and their verdicts, curves, the published figures, the cost model, reproduce."""
