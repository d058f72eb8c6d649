"""Smallest useful config (tests, smoke runs): ResNet-18 RNL, 4 frames of 32 px, synthetic data.

    python main.py --config=configs/tiny.py --workdir=/tmp/rnl_tiny

Data: nothing to prepare: 48 training and 24 validation videos (12 frames of 40x40) are generated
into WORKDIR/data on first use. Hardware: a CPU; one epoch of 6 steps of 8 clips. Its train step
took 0.056 s after a 30 s compile on the project's 2-core development machine
(docs/performance.md#small-models-on-cpu).
"""

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
