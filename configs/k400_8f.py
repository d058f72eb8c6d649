"""Kinetics-400, RNL TSM-R50, 8 frames, dense sampling: the original's README command (REFERENCE 5.8).

lr 0.02 per 64 clips (16 per forward x 4 accumulated), wd 2e-4, dropout 0.5, 5 warmup epochs, cosine,
100 epochs, flip. Set data.root to the folder holding kinetics/ (or override the list keys), and
init.imagenet to a converted torchvision ResNet-50 (convert_torch_weights.py --imagenet).
"""
from configs import default


def get_config():
  config = default.get_config()        # the defaults are this recipe
  config.data.name = 'kinetics'
  config.data.num_classes = 400
  config.data.dense_sample = True
  config.data.flip = True
  return config
