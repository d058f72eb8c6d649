"""Data pipeline: list files, frame sampling, transforms and loaders (REFERENCE 3-4)."""
