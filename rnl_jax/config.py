"""From an ml_collections config to model objects, validating every value before anything compiles."""

import jax.numpy as jnp

from rnl_jax.data import datasets, sources, transforms
from rnl_jax.models import TSN, Architecture, build_model
from rnl_jax.models.rnl import EVAL_ATTENTION, TRAIN_ATTENTION
from rnl_jax import optim
from rnl_jax.errors import ConfigError

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
FORMATS = ('frames', 'videos', 'arrayrecord', 'tfds')
DISTRIBUTED = ('auto', 'on', 'off')
MODES = ('train', 'test')


def _fail(key, value, expected):
  raise ConfigError(f'config.{key}={value!r}: expected {expected}')


def architecture_from_config(config) -> Architecture:
  """The Architecture of `config.model` with `config.data.num_classes` classes."""
  m = config.model
  try:
    return Architecture.from_variant(
        m.variant, config.data.num_classes, m.depth, shift_div=m.shift_div, width=m.width
    )
  except ValueError as e:
    raise ConfigError(f'config.model / config.data.num_classes: {e}') from None


def query_chunk_setting(value: int):
  """config.model.query_chunk -> the model's query_chunk: -1 'auto' (rnl.train_query_chunk
  resolves it per backend when the step is traced), 0 None (plain), > 0 rows per tile or chunk."""
  return {-1: 'auto', 0: None}.get(value, value)


def model_from_config(config) -> TSN:
  """The TSN described by `config.model` (classes from `config.data.num_classes`)."""
  m = config.model
  if m.dtype not in DTYPES:
    _fail('model.dtype', m.dtype, f'one of {sorted(DTYPES)}')
  if not 0.0 <= m.dropout < 1.0:
    _fail('model.dropout', m.dropout, '0 <= dropout < 1')
  if m.query_chunk < -1:
    _fail('model.query_chunk', m.query_chunk, '-1 (auto), 0 (plain) or > 0')
  if m.eval_query_chunk < 0:
    _fail('model.eval_query_chunk', m.eval_query_chunk, '0 (plain) or > 0')
  if m.eval_attention not in EVAL_ATTENTION:
    _fail('model.eval_attention', m.eval_attention, f'one of {EVAL_ATTENTION}')
  if m.train_attention not in TRAIN_ATTENTION:
    _fail('model.train_attention', m.train_attention, f'one of {TRAIN_ATTENTION}')
  if m.eval_clips_per_pass < -1:
    _fail('model.eval_clips_per_pass', m.eval_clips_per_pass, '-1 (auto), 0 (all at once) or > 0')
  if config.num_segments < 1:
    _fail('num_segments', config.num_segments, '>= 1')
  return build_model(
      architecture_from_config(config),
      dropout=m.dropout,
      query_chunk=query_chunk_setting(m.query_chunk),
      eval_query_chunk=m.eval_query_chunk or None,
      eval_attention=m.eval_attention,
      train_attention=m.train_attention,
      normalize_input=True,
      dtype=DTYPES[m.dtype],
  )


def validate(config):
  """All value checks of the training config (ValueError naming the key); the model's included."""
  model_from_config(config)
  data, opt = config.data, config.optim
  if data.format not in FORMATS:
    _fail('data.format', data.format, f'one of {FORMATS}')
  if data.format == 'tfds':
    _validate_tfds_data(data)
  elif data.name == 'custom':
    _validate_custom_data(data)
  elif data.name not in datasets.DATASETS:
    _fail('data.name', data.name, f"one of {', '.join(sorted(datasets.DATASETS))} or 'custom'")
  if data.decoder not in sources.DECODERS:
    _fail('data.decoder', data.decoder, f'one of {sources.DECODERS}')
  if data.resize not in transforms.RESIZE_METHODS:
    _fail('data.resize', data.resize, f'one of {transforms.RESIZE_METHODS}')
  for key in ('num_workers', 'prefetch'):
    if data[key] < 0:
      _fail(f'data.{key}', data[key], '>= 0')
  if data.num_threads < 1:
    _fail('data.num_threads', data.num_threads, '>= 1')
  if data.frame_template:
    try:
      sources.check_template(data.frame_template)
    except ValueError:
      _fail(
          'data.frame_template',
          data.frame_template,
          "a template of one integer, e.g. 'img_{:05d}.jpg'",
      )
  if data.num_classes < 1:
    _fail('data.num_classes', data.num_classes, '>= 1')
  for key in ('image_size', 'scale_size', 'batch_size', 'batch_multiplier', 'eval_batch_size'):
    if config[key] < 1:
      _fail(key, config[key], '>= 1')
  if config.image_size > config.scale_size:
    _fail('image_size', config.image_size, f'<= scale_size ({config.scale_size})')
  if opt.base_lr <= 0:
    _fail('optim.base_lr', opt.base_lr, '> 0')
  if opt.reference_batch < 1:
    _fail('optim.reference_batch', opt.reference_batch, '>= 1')
  if opt.schedule not in optim.SCHEDULES:
    _fail('optim.schedule', opt.schedule, f'one of {optim.SCHEDULES}')
  if not 0 <= opt.warmup_epochs < config.num_epochs:
    _fail(
        'optim.warmup_epochs', opt.warmup_epochs, f'0 <= warmup < num_epochs ({config.num_epochs})'
    )
  if not 0 <= opt.momentum < 1:
    _fail('optim.momentum', opt.momentum, '0 <= momentum < 1')
  if opt.weight_decay < 0:
    _fail('optim.weight_decay', opt.weight_decay, '>= 0')
  if opt.clip_grad_norm < 0:
    _fail('optim.clip_grad_norm', opt.clip_grad_norm, '>= 0 (0: off)')
  if opt.grouping not in optim.GROUPINGS:
    _fail('optim.grouping', opt.grouping, f'one of {optim.GROUPINGS}')
  if config.num_epochs <= 0:
    _fail('num_epochs', config.num_epochs, '> 0')
  if config.num_train_steps == 0 or config.num_train_steps < -1:
    _fail('num_train_steps', config.num_train_steps, '-1 (from num_epochs) or > 0')
  for key in ('log_every_steps', 'checkpoint_every_steps', 'keep_checkpoints'):
    if config[key] < 1:
      _fail(key, config[key], '>= 1')
  if config.eval_every_epochs < 0:
    _fail('eval_every_epochs', config.eval_every_epochs, '>= 0 (0: only at the end)')
  if config.distributed not in DISTRIBUTED:
    _fail('distributed', config.distributed, f'one of {DISTRIBUTED}')
  if config.init.imagenet and config.init.checkpoint:
    _fail(
        'init.imagenet', config.init.imagenet, "'' when init.checkpoint is set (one initialisation)"
    )
  if config.seed < 0:
    _fail('seed', config.seed, '>= 0')
  if data.synthetic.seed < 0:
    _fail('data.synthetic.seed', data.synthetic.seed, '>= 0')
  if config.mode not in MODES:
    _fail('mode', config.mode, f'one of {MODES}')
  _validate_test(config)


# What a user's own dataset (data.name='custom') needs, per format: video files have no frame
# template, and an ArrayRecord index holds the frames (neither root nor template).
CUSTOM_KEYS = {
    'frames': ('root', 'train_list', 'val_list', 'frame_template'),
    'videos': ('root', 'train_list', 'val_list'),
    'arrayrecord': ('train_list', 'val_list'),
    'tfds': ('tfds_name', 'tfds_train_split', 'tfds_val_split'),
}


def _validate_custom_data(data):
  needed = CUSTOM_KEYS[data.format]
  for key in needed:
    if not data[key]:
      _fail(
          f'data.{key}',
          data[key],
          f"a value (name='custom' with format={data.format!r} needs "
          f"{', '.join(needed)} and num_classes)",
      )


def _validate_tfds_data(data):
  """format='tfds' (any data.name): the TFDS dataset's name and split names; data_dir '' = TFDS's
  default. Root, lists and template are not read."""
  needed = CUSTOM_KEYS['tfds']
  for key in needed:
    if not isinstance(data[key], str) or not data[key]:
      _fail(
          f'data.{key}',
          data[key],
          f"a value (format='tfds' needs {', '.join(needed)} and "
          "num_classes; e.g. tfds_name='rnl_synthetic', from python -m rnl_jax.data.tfds_write)",
      )
  if not isinstance(data.tfds_data_dir, str):
    _fail('data.tfds_data_dir', data.tfds_data_dir, "a folder ('' = TFDS's default data_dir)")


def _validate_test(config):
  """config.test (the test protocol, rnl_jax.protocol)."""
  t = config.test
  if t.crops not in transforms.TEST_CROPS:
    _fail('test.crops', t.crops, f'one of {transforms.TEST_CROPS}')
  for key in ('views_per_step', 'dense_clips'):
    if t[key] < 1:
      _fail(f'test.{key}', t[key], '>= 1')
  if not t.output or '/' in t.output:
    _fail('test.output', t.output, "a file prefix without '/'")
  if config.mode != 'test':
    return
  if t.twice_sample and config.data.dense_sample:
    _fail(
        'test.twice_sample',
        t.twice_sample,
        'False with data.dense_sample=True (dense sampling has '
        'its own test.dense_clips windows; the original rejects the combination)',
    )
  if config.data.skip_corrupt:
    _fail(
        'data.skip_corrupt',
        config.data.skip_corrupt,
        'False in test mode (a replaced video would be '
        'scored twice; the protocol needs every listed video)',
    )
