"""Data: list files, frame sampling, transforms and loaders (docs/original.md §3-4), and the
offline commands that write datasets.

Two sides, imported one way (writers may use readers, never the reverse):

  read side, what a running job imports (training, the test protocol, classify):
    datasets      dataset table and list-file parsing (kinetics400_classes: the bundled K400 names)
    sampling      frame indices of a clip (the original's TSN sampling)
    transforms    crops, flips, resizing of the sampled frames
    sources       ClipSource and frame folders (JPEG decoding)
    video         video files (PyAV)
    arrayrecord   packed ArrayRecord shards
    tfds_source   TensorFlow Datasets datasets (imports tensorflow_datasets, only for format tfds)

  write side, offline commands (`python -m rnl_jax.data.<name>`), not imported by a running job
  (the trainer only calls the synthetic generator on first use of data.name='synthetic'):
    prepare/      official downloads -> frame folders, videos or shards, lists and class names
    pack          frame folders or videos -> ArrayRecord shards
    synthetic     the synthetic time-reversal dataset
    tfds_write    frame folders -> a TFDS dataset (its builder: tfds_builder)

Shared file helpers (atomic writes, worker pools) live in rnl_jax.fileio.
"""
