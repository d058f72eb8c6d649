"""Something-Something V1, RNL TSM-R50, 8 frames, TSN sampling (docs/original.md §5.8).

    python main.py --config=configs/sthv1_8f.py --workdir=runs/sthv1_8f \
        --config.data.root=/data --config.init.imagenet=ckpt/r50_imagenet

Data: Something-Something V1 under data.root, prepared from the official download with
`python -m rnl_jax.data.prepare something_v1 --source DIR --out /data` (frame folders; with
--format videos or arrayrecord add the --config.data.* flags it prints). init.imagenet: a converted
torchvision ResNet-50 (`python convert_torch_weights.py resnet50.pth ckpt/r50_imagenet
--imagenet`). Hardware: a multi-GPU/TPU job (16 clips of 8 x 224 px per forward, 4 forwards per
step, 50 epochs).

wd 1e-3, dropout 0.8, 1 warmup epoch, cosine, 50 epochs, no flip (labels are direction-sensitive).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = 'something'
  config.data.num_classes = 174
  config.data.dense_sample = False
  config.test.twice_sample = True  # the README's Something protocol: 2 clips x 3 full-res crops
  config.test.views_per_step = 6
  config.data.flip = False
  config.model.dropout = 0.8
  config.optim.weight_decay = 1e-3
  config.optim.warmup_epochs = 1.0
  config.num_epochs = 50.0
  return config
