"""Kinetics-400, RNL TSM-R50, 16 frames (the 77.2% row); otherwise as k400_8f.

Chunked attention (784 queries per chunk) keeps the 16-frame layer-2 affinities (12544^2 per clip
and block) out of memory: measured on a 2-core CPU at 2 clips per step (benchmarks/train_step.py),
69.2 s and 7.3 GB peak RSS chunked vs 57.7 s and 16.1 GB plain; the plain attention grows by ~6 GB
per clip, so at this recipe's 16 clips per forward only the chunked one fits an accelerator.
`--config.model.query_chunk=0` trains plain where memory allows (1.2x faster).
"""
from configs import k400_8f


def get_config():
  config = k400_8f.get_config()
  config.num_segments = 16
  config.model.query_chunk = 784
  config.test.views_per_step = 10     # 30 views of 16 x 256 px per video, in 3 forwards
  return config
