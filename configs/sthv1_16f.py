"""Something-Something V1, RNL TSM-R50, 16 frames; otherwise as sthv1_8f (chunked attention as
configs/k400_16f.py, which gives the measurements)."""
from configs import sthv1_8f


def get_config():
  config = sthv1_8f.get_config()
  config.num_segments = 16
  config.model.query_chunk = 784
  return config
