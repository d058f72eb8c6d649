"""Kinetics-400, RNL TSM-R50, 8 frames, dense sampling: the original's README command (docs/original.md §5.8).

    python main.py --config=configs/k400_8f.py --workdir=runs/k400_8f \
        --config.data.root=/data --config.init.imagenet=ckpt/r50_imagenet

Data: Kinetics-400 under data.root (the folder holding kinetics/), prepared from the official
download with `python -m rnl_jax.data.prepare kinetics400 --source DIR --out /data` (frame folders;
with --format videos or arrayrecord add the --config.data.* flags it prints), or the original's
frame folders and lists (else override data.train_list / val_list). init.imagenet: a torchvision
ResNet-50 converted with `python convert_torch_weights.py resnet50.pth ckpt/r50_imagenet
--imagenet`. Hardware: a multi-GPU/TPU job (16 clips of 8 x 224 px per forward, 4 forwards per
step, 100 epochs); `--config.mode=test` then runs the test protocol on WORKDIR/best.

lr 0.02 per 64 clips (16 per forward x 4 accumulated), wd 2e-4, dropout 0.5, 5 warmup epochs,
cosine, 100 epochs, flip.
"""

from configs import default


def get_config():
  config = default.get_config()  # the defaults are this recipe
  config.data.name = 'kinetics'
  config.data.num_classes = 400
  config.data.dense_sample = True
  config.data.flip = True
  return config
