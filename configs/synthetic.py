"""The README's main job: RNL on the built-in synthetic time-reversed-pairs dataset, CPU-sized.

The data (12 classes, 24 frames of 64x64 per video) is generated into WORKDIR/data on first use.
A narrow ResNet-18 (width 16: 1/16 of the FLOPs of the standard one) with shift + region non-local,
48 px, 4 frames; TSN sampling, no flip (the classes are direction-sensitive).
"""
from configs import default


def get_config():
  config = default.get_config()
  config.model.depth = 18
  config.model.width = 16
  config.model.dropout = 0.0          # no dropout on the 128-d feature for scratch training
  config.num_segments = 4
  config.image_size = 48
  config.scale_size = 56

  config.data.name = 'synthetic'
  config.data.root = ''               # '' = WORKDIR/data, generated on first use
  config.data.num_classes = 12
  config.data.flip = False
  config.data.dense_sample = False
  config.data.num_workers = 0
  config.data.num_threads = 2

  config.batch_size = 32
  config.batch_multiplier = 1
  config.eval_batch_size = 64
  config.optim.base_lr = 0.004        # per 64 clips -> 0.002 at 32; >= 0.01 at 32 spikes the loss (probes)
  config.optim.weight_decay = 1e-4
  config.optim.warmup_epochs = 0.0
  config.num_epochs = 8.0
  config.log_every_steps = 25
  config.eval_every_epochs = 2.0
  config.checkpoint_every_steps = 100
  return config
