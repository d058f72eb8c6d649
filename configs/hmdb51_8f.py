"""HMDB51 split 1, fine-tuned from a Kinetics RNL checkpoint: the UCF101 recipe with 51 classes.

Prepare the data with `python -m rnl_jax.data.prepare hmdb51 --source DIR --out ROOT` and set
data.root=ROOT and init.checkpoint to a converted Kinetics RNL checkpoint.
"""
from configs import ucf101_8f


def get_config():
  config = ucf101_8f.get_config()
  config.data.name = 'hmdb51'
  config.data.num_classes = 51
  return config
