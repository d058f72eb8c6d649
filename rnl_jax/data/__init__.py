"""Data pipeline: list files, frame sampling, transforms and loaders (docs/original.md §3-4)."""
