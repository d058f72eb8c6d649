"""Defaults shared by every recipe: the original's Kinetics-400 RNL TSM-R50 8-frame recipe.

    python main.py --config=configs/default.py --workdir=runs/k400_8f --config.data.root=/data \
        --config.init.imagenet=ckpt/r50_imagenet

runs it; configs/k400_8f.py is the same recipe with its dataset keys spelled out (data, init and
hardware as described there: Kinetics-400 from `python -m rnl_jax.data.prepare kinetics400`, a
multi-GPU/TPU job).

Recipe files override `get_config()` of this module; any key can be overridden on the command line
(`--config.optim.base_lr=0.01`). `rnl_jax.config.validate` checks every value before anything compiles.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.mode = 'train'  # 'train' (train + validate) | 'test' (the test protocol, `test`)

  config.model = ml_collections.ConfigDict()
  config.model.variant = 'rnl'  # 'tsn' (no shift) | 'tsm' | 'rnl' (TSM + region non-local)
  config.model.depth = 50  # ResNet 18 | 34 | 50 | 101
  config.model.shift_div = 8
  config.model.width = 64  # stem / first-stage channels (64 = the released models)
  config.model.dropout = 0.5
  # RNL attention in training / in evaluation: 0 = plain [M, M] (symmetric affinity), > 0 = at
  # most that many rows per tile or chunk ([chunk, M] memory or less); for training -1 = auto:
  # tiles of 784 rows on CPU (faster than plain there), plain on accelerators. Evaluation with
  # eval_query_chunk > 0 runs as `eval_attention` says: 'streamed' (tiles of that many rows, each
  # affinity tile used twice, running softmax: fastest on CPU, with less memory than chunks or
  # plain), 'chunked' (queries per chunk: faster than plain on a GPU), 'auto' = streamed on CPU,
  # chunked on accelerators (docs/performance.md#streamed-eval-attention).
  # Training with query_chunk > 0 runs as `train_attention` says: 'tiled' (tiles of that many rows,
  # a flash-attention-style backward: memory linear in M), 'chunked' (queries per chunk, each
  # rematerialised), 'auto' = tiled on CPU, chunked on accelerators.
  config.model.query_chunk = -1
  config.model.eval_query_chunk = 784
  config.model.eval_attention = 'auto'
  config.model.train_attention = 'auto'
  # Evaluation forwards over this many views per device at a time (rnl_jax/models/clip_groups.py;
  # same logits): 0 = all at once, -1 = auto (CPU: one full-size clip per pass, whole batches of
  # small ones; accelerators: all at once).
  config.model.eval_clips_per_pass = -1
  config.model.dtype = 'float32'  # compute dtype: 'float32' | 'bfloat16' (params, BN stats f32)

  config.num_segments = 8  # T, frames per clip
  config.image_size = 224  # training / validation crop
  config.scale_size = 256  # validation / test short side

  # Data (docs/original.md §3). A table dataset (kinetics, something, somethingv2, ucf101, hmdb51,
  # jester, synthetic) takes its list files, frame template and class count from
  # rnl_jax.data.datasets; name='custom' needs root, train_list, val_list, num_classes and
  # frame_template.
  config.data = ml_collections.ConfigDict()
  config.data.name = 'kinetics'
  config.data.root = ''  # dataset root (custom: the frame root); synthetic: '' = WORKDIR/data
  config.data.format = 'frames'  # 'frames' | 'videos' | 'arrayrecord' | 'tfds'
  config.data.train_list = ''  # '' = the table's; else a path (absolute or relative to cwd)
  config.data.val_list = ''
  config.data.num_classes = 400
  config.data.frame_template = ''  # '' = the table's, e.g. 'img_{:05d}.jpg'
  config.data.flip = True  # horizontal flip in training (False for Something-Something)
  config.data.dense_sample = True  # I3D-style dense sampling (Kinetics) instead of TSN segments
  config.data.skip_corrupt = False  # replace unreadable videos (logged, counted) instead of failing
  # format 'tfds': a TensorFlow Datasets dataset read through grain without TensorFlow (from
  # `python -m rnl_jax.data.tfds_write`, or a catalog dataset built as ArrayRecord; docs/data.md).
  # It needs only these keys and num_classes (not root, the lists or the template).
  config.data.tfds_name = ''  # e.g. 'rnl_synthetic' (as tfds.data_source takes it)
  config.data.tfds_data_dir = ''  # '' = TFDS's default (TFDS_DATA_DIR or ~/tensorflow_datasets)
  config.data.tfds_train_split = 'train'
  config.data.tfds_val_split = 'validation'  # validation and the test protocol
  # Training decode / resize: fast approximations by default (the crop, scale and flip distribution is
  # the original's; several times the original loader's speed: docs/performance.md#input-decoding).
  # 'simplejpeg' + 'cv2' (area filter) are closer, 'pil' + 'pil' give the original's pixels.
  # Validation and test are always exact.
  config.data.decoder = (
      'simplejpeg_fast'  # 'simplejpeg_fast' | 'simplejpeg' (Pillow's pixels) | 'pil'
  )
  config.data.resize = 'cv2_linear'  # 'cv2_linear' | 'cv2' (area filter when shrinking) | 'pil'
  config.data.num_workers = 4  # grain worker processes per host (0: decode in the main process)
  config.data.num_threads = 2  # decoding threads per worker
  config.data.prefetch = 8
  config.data.synthetic = ml_collections.ConfigDict()
  config.data.synthetic.num_train = 2400
  config.data.synthetic.num_val = 480
  config.data.synthetic.num_frames = 24
  config.data.synthetic.size = 64
  config.data.synthetic.seed = 0  # the dataset's seed (independent of `seed`, the training seed)

  # Batch (docs/original.md §5.1): `batch_size` clips per forward (global, the BatchNorm batch), and
  # `batch_multiplier` forwards accumulated per optimizer step: 16 x 4 = the original's 64 clips.
  config.batch_size = 16
  config.batch_multiplier = 4
  config.eval_batch_size = 16  # views per eval forward (global)

  # Optimiser (docs/original.md §5.2-5.4):
  # lr = base_lr * (batch_size * batch_multiplier) / reference_batch.
  config.optim = ml_collections.ConfigDict()
  config.optim.base_lr = 0.02
  config.optim.reference_batch = 64
  config.optim.schedule = 'cos'  # 'cos' (with warmup) | 'step'
  config.optim.warmup_epochs = 5.0
  config.optim.lr_steps = (20, 40)  # 'step' schedule: epochs after which lr x 0.1
  config.optim.momentum = 0.9
  config.optim.weight_decay = 2e-4
  config.optim.clip_grad_norm = 20.0  # 0: off
  config.optim.grouping = 'original'  # 'original' (upstream's NL grouping accident) | 'clean'
  config.optim.fc_lr5 = True  # head lr x5 / x10 (the original turns it off when fine-tuning)

  config.num_epochs = 100.0
  config.num_train_steps = -1  # > 0 overrides num_epochs (the lr schedule still spans num_epochs;
  # the cosine, which ends at lr 0, refuses steps past it)

  # Initialisation: '' = from scratch (original init), or a converted checkpoint directory.
  config.init = ml_collections.ConfigDict()
  config.init.imagenet = ''  # convert_torch_weights.py --imagenet output (backbone only)
  config.init.checkpoint = ''  # a converted/trained RNL checkpoint (fine-tuning)
  config.init.new_head = False  # re-initialise new_fc (different classes)

  # Test protocol (docs/original.md §6; mode='test', rnl_jax.protocol): the val list, clips x crops
  # views per video, raw logits averaged per video. Clips: `test.dense_clips` with data.dense_sample,
  # 2 with `twice_sample`, else 1. Writes WORKDIR/{output}.json, {output}_per_class.csv and
  # {output}_scores.npz (for `python -m rnl_jax.ensemble`).
  config.test = ml_collections.ConfigDict()
  config.test.checkpoint = ''  # '' = WORKDIR/best; or a checkpoint directory / original .pth.tar
  config.test.crops = 3  # 1 (centre) | 3 (full-res strip) | 5 | 10 (over-sample)
  config.test.full_res = True  # crops of scale_size (256) instead of image_size (224)
  config.test.dense_clips = 10  # clips per video with data.dense_sample
  config.test.twice_sample = False  # TSN sampling + the segment-start clip (2 clips; Something)
  config.test.views_per_step = 30  # global views per forward: bounds memory, not the result
  config.test.output = 'test'  # file prefix in WORKDIR

  # Loop, logging, checkpoints.
  config.log_every_steps = 50
  config.eval_every_epochs = 1.0  # 0: only at the end
  config.checkpoint_every_steps = 1000  # plus one at every evaluation and at the end
  config.keep_checkpoints = 3
  config.distributed = 'auto'  # jax.distributed.initialize: 'auto' | 'on' | 'off'
  return config
