"""Defaults shared by every recipe; recipe files override `get_config()` of this module.

Only the model section is used so far (the trainer and input pipeline fill in the rest).
"""
import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.model = ml_collections.ConfigDict()
  config.model.variant = 'rnl'        # 'tsn' (no shift) | 'tsm' | 'rnl' (TSM + region non-local)
  config.model.depth = 50             # ResNet 18 | 34 | 50 | 101
  config.model.num_classes = 400
  config.model.shift_div = 8
  config.model.dropout = 0.5
  config.model.query_chunk = 0        # 0: plain [M, M] attention; > 0: queries per chunk
  config.model.dtype = 'float32'      # compute dtype: 'float32' | 'bfloat16'
  config.num_segments = 8             # T, frames per clip
  config.image_size = 224
  return config
