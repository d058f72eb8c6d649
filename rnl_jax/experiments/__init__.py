"""Experiments built on the trainer: `python -m rnl_jax.experiments.temporal` (TSN vs TSM vs RNL)."""
