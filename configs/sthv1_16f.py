"""Something-Something V1, RNL TSM-R50, 16 frames; otherwise as sthv1_8f.

    python main.py --config=configs/sthv1_16f.py --workdir=runs/sthv1_16f \
        --config.data.root=/data --config.init.imagenet=ckpt/r50_imagenet

Data and init as configs/sthv1_8f.py (Something-Something V1 from `python -m
rnl_jax.data.prepare something_v1 --source DIR --out /data`). Hardware: a multi-GPU/TPU job (16
clips of 16 x 224 px per forward, 4 forwards per step). Chunked attention for memory, as
configs/k400_16f.py (docs/performance.md#chunked-attention).
"""

from configs import sthv1_8f


def get_config():
  config = sthv1_8f.get_config()
  config.num_segments = 16
  config.model.query_chunk = 784
  return config
