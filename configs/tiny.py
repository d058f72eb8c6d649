"""CPU-sized model for smoke runs and tests: ResNet-18, 4 frames of 64 px."""
from configs import default


def get_config():
  config = default.get_config()
  config.model.depth = 18
  config.model.num_classes = 10
  config.num_segments = 4
  config.image_size = 64
  return config
