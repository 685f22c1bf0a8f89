"""The Attribution page: one module per section (images, models, methods, maps, and the three checks),
the job handling they share in ``common``."""
