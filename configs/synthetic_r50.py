"""Input check: the full-size RNL TSM-R50 8-frame recipe (k400_8f) on synthetic full-size videos.

    python main.py --config=configs/synthetic_r50.py --workdir=/tmp/r50_input \
        [--config.num_train_steps=10] [--config.batch_size=2] [--config.data.num_workers=4]

Trains the k400_8f network, sampling, augmentation and input size (dense 8 x 224 px crops from
256 px frames) for `num_train_steps` steps on generated videos (64 training, 16 validation clips of
64 frames at 256 x 256, generated once into WORKDIR/data: nothing to prepare) and logs at the end

    input check: the device waited for data X% of S s training over the last N steps (...)

the fraction of training time after compilation that the device sat idle waiting for the input
pipeline (rnl_jax/input_check.py; also in WORKDIR/results.json, key 'input'). Above 10 % the
machine is input-bound at that batch size: raise data.num_workers (decoding processes) or lower the
decode cost (data.decoder). The accuracy of so short a run means nothing.

Hardware: a CPU is enough: batch 2 clips per step keeps a CPU step to seconds, and the whole run
(data generation, compilation and evaluation included) took 5 min 47 s on the project's 2-core
development machine (docs/performance.md#input-pipeline). On an accelerator, set batch_size to the
real one.
"""

from configs import k400_8f


def get_config():
  config = k400_8f.get_config()
  config.data.name = 'synthetic'
  config.data.root = ''  # '' = WORKDIR/data, generated on first use
  config.data.num_classes = 12
  config.data.synthetic.num_train = 64
  config.data.synthetic.num_val = 16
  config.data.synthetic.num_frames = 64  # dense sampling reads 8 frames at stride 8
  config.data.synthetic.size = 256
  config.data.flip = False  # the synthetic classes are direction-sensitive
  config.batch_size = 2
  config.batch_multiplier = 1
  config.eval_batch_size = 4
  config.num_train_steps = 10
  config.num_epochs = 100.0  # the cosine's length: lr stays near base_lr over the steps run
  config.optim.warmup_epochs = 0.0
  config.log_every_steps = 1
  config.eval_every_epochs = 0.0  # evaluate once, at the end
  config.checkpoint_every_steps = 1000
  return config
