"""Something-Something V2, RNL TSM-R50, 8 frames: the V1 recipe on the V2 dataset table entry.

    python main.py --config=configs/sthv2_8f.py --workdir=runs/sthv2_8f \
        --config.data.root=/data --config.init.imagenet=ckpt/r50_imagenet

Data: Something-Something V2 under data.root, prepared from the official download (webm videos and
json annotations) with `python -m rnl_jax.data.prepare something_v2 --source DIR --out /data`
(frame folders; with --format videos or arrayrecord add the --config.data.* flags it prints).
init.imagenet as configs/sthv1_8f.py. Hardware: a multi-GPU/TPU job (16 clips of 8 x 224 px per
forward, 4 forwards per step, 50 epochs).
"""

from configs import sthv1_8f


def get_config():
  config = sthv1_8f.get_config()
  config.data.name = 'somethingv2'
  return config
