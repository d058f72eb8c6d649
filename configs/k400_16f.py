"""Kinetics-400, RNL TSM-R50, 16 frames (the 77.2% row); otherwise as k400_8f.

    python main.py --config=configs/k400_16f.py --workdir=runs/k400_16f \
        --config.data.root=/data --config.init.imagenet=ckpt/r50_imagenet

Data and init as configs/k400_8f.py (Kinetics-400 from `python -m rnl_jax.data.prepare
kinetics400 --source DIR --out /data`, a converted torchvision ResNet-50). Hardware: a
multi-GPU/TPU job (16 clips of 16 x 224 px per forward, 4 forwards per step).

query_chunk = 784 keeps the 16-frame layer-2 affinities (12544^2 per clip and block) out of
memory: the plain attention's memory grows with every clip, so at 16 clips per forward only a
bounded one fits an accelerator. model.train_attention 'auto' trains in tiles of 784 rows on CPU
(faster than plain there) and in query chunks on accelerators (docs/performance.md#rnl-attention);
`--config.model.query_chunk=0` trains plain, faster on accelerators where memory allows.
"""

from configs import k400_8f


def get_config():
  config = k400_8f.get_config()
  config.num_segments = 16
  config.model.query_chunk = 784
  config.test.views_per_step = 10  # 30 views of 16 x 256 px per video, in 3 forwards
  return config
