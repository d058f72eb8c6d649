"""UCF101 split 1, fine-tuned from a Kinetics RNL checkpoint (8 frames, TSN sampling).

    python main.py --config=configs/ucf101_8f.py --workdir=runs/ucf101_8f \
        --config.data.root=/data --config.init.checkpoint=ckpt/k400_rnl_8f

Data: UCF101 split 1 under data.root, prepared from the official download (videos and the
train/test split files) with `python -m rnl_jax.data.prepare ucf101 --source DIR --out /data`
(frame folders; other splits or formats: add the --config.data.* flags it prints). Hardware: a
GPU/TPU job (16 clips of 8 x 224 px per forward, 4 forwards per step, 10 epochs).

Set init.checkpoint to a converted Kinetics RNL checkpoint (`python convert_torch_weights.py
SRC.pth.tar ckpt/k400_rnl_8f`, or WORKDIR/best of a configs/k400_8f.py run). The head is
re-initialised for 101 classes and, as the original does when fine-tuning (`--tune_from`), gets no
x5/x10 learning-rate boost. A short schedule with a lower lr, as is usual for UCF101 fine-tuning.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = 'ucf101'
  config.data.num_classes = 101
  config.data.dense_sample = False
  config.test.twice_sample = True
  config.test.views_per_step = 6
  config.data.flip = True
  config.model.dropout = 0.8
  config.init.checkpoint = ''  # e.g. ckpt/k400_rnl_8f
  config.init.new_head = True
  config.optim.fc_lr5 = False
  config.optim.base_lr = 0.001
  config.optim.weight_decay = 5e-4
  config.optim.warmup_epochs = 0.0
  config.num_epochs = 10.0
  return config
