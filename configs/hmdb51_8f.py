"""HMDB51 split 1, fine-tuned from a Kinetics RNL checkpoint: the UCF101 recipe with 51 classes.

    python main.py --config=configs/hmdb51_8f.py --workdir=runs/hmdb51_8f \
        --config.data.root=/data --config.init.checkpoint=ckpt/k400_rnl_8f

Data: HMDB51 split 1 under data.root, prepared from the official download with
`python -m rnl_jax.data.prepare hmdb51 --source DIR --out /data` (frame folders; other splits or
formats: add the --config.data.* flags it prints). init.checkpoint: a converted Kinetics RNL
checkpoint, as configs/ucf101_8f.py. Hardware: a GPU/TPU job (16 clips of 8 x 224 px per forward,
4 forwards per step, 10 epochs).
"""

from configs import ucf101_8f


def get_config():
  config = ucf101_8f.get_config()
  config.data.name = 'hmdb51'
  config.data.num_classes = 51
  return config
