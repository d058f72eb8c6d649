"""Kinetics-400, RNL TSM-R50, 16 frames (the 77.2% row); otherwise as k400_8f.

Chunked attention keeps the 16-frame layer2 affinity (12544^2 per clip and block) within memory.
"""
from configs import k400_8f


def get_config():
  config = k400_8f.get_config()
  config.num_segments = 16
  config.model.query_chunk = 3136
  config.test.views_per_step = 10     # 30 views of 16 x 256 px per video, in 3 forwards
  return config
