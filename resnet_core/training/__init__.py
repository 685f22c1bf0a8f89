"""Training and what it records: the loop, probes, evaluation, the run store, resume, DDP."""
