"""Smallest useful config (tests, smoke runs): ResNet-18 RNL, 4 frames of 32 px, synthetic data."""
from configs import synthetic


def get_config():
  config = synthetic.get_config()
  config.image_size = 32
  config.scale_size = 36
  config.data.synthetic.num_train = 48
  config.data.synthetic.num_val = 24
  config.data.synthetic.num_frames = 12
  config.data.synthetic.size = 40
  config.batch_size = 8
  config.eval_batch_size = 8
  config.num_epochs = 1.0
  config.optim.warmup_epochs = 0.0
  config.log_every_steps = 2
  config.eval_every_epochs = 0.0
  return config
