"""From an ml_collections config to model objects, validating every value before anything compiles."""
import jax.numpy as jnp

from rnl_jax.data import datasets, sources, transforms
from rnl_jax.models import TSN, Architecture, build_model
from rnl_jax.models.rnl import EVAL_ATTENTION
from rnl_jax import optim
from rnl_jax.errors import ConfigError

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
FORMATS = ('frames', 'videos', 'arrayrecord')
DISTRIBUTED = ('auto', 'on', 'off')
MODES = ('train', 'test')


def _fail(key, value, expected):
  raise ConfigError(f'config.{key}={value!r}: expected {expected}')


def architecture_from_config(config) -> Architecture:
  """The Architecture of `config.model` with `config.data.num_classes` classes."""
  m = config.model
  try:
    return Architecture.from_variant(m.variant, config.data.num_classes, m.depth, shift_div=m.shift_div,
                                     width=m.width)
  except ValueError as e:
    raise ConfigError(f'config.model / config.data.num_classes: {e}') from None


def model_from_config(config) -> TSN:
  """The TSN described by `config.model` (classes from `config.data.num_classes`)."""
  m = config.model
  if m.dtype not in DTYPES:
    _fail('model.dtype', m.dtype, f'one of {sorted(DTYPES)}')
  if not 0.0 <= m.dropout < 1.0:
    _fail('model.dropout', m.dropout, '0 <= dropout < 1')
  if m.query_chunk < 0:
    _fail('model.query_chunk', m.query_chunk, '0 (plain) or > 0')
  if m.eval_query_chunk < 0:
    _fail('model.eval_query_chunk', m.eval_query_chunk, '0 (plain) or > 0')
  if m.eval_attention not in EVAL_ATTENTION:
    _fail('model.eval_attention', m.eval_attention, f'one of {EVAL_ATTENTION}')
  if m.eval_clips_per_pass < -1:
    _fail('model.eval_clips_per_pass', m.eval_clips_per_pass, '-1 (auto), 0 (all at once) or > 0')
  if config.num_segments < 1:
    _fail('num_segments', config.num_segments, '>= 1')
  return build_model(architecture_from_config(config), dropout=m.dropout, query_chunk=m.query_chunk or None,
                     eval_query_chunk=m.eval_query_chunk or None, eval_attention=m.eval_attention,
                     normalize_input=True, dtype=DTYPES[m.dtype])


def validate(config):
  """All value checks of the training config (ValueError naming the key); the model's included."""
  model_from_config(config)
  d, o = config.data, config.optim
  if d.format not in FORMATS:
    _fail('data.format', d.format, f'one of {FORMATS}')
  if d.name == 'custom':
    _validate_custom_data(d)
  elif d.name not in datasets.DATASETS:
    _fail('data.name', d.name, f"one of {', '.join(sorted(datasets.DATASETS))} or 'custom'")
  if d.decoder not in sources.DECODERS:
    _fail('data.decoder', d.decoder, f'one of {sources.DECODERS}')
  if d.resize not in transforms.RESIZE_METHODS:
    _fail('data.resize', d.resize, f'one of {transforms.RESIZE_METHODS}')
  for key in ('num_workers', 'prefetch'):
    if d[key] < 0:
      _fail(f'data.{key}', d[key], '>= 0')
  if d.num_threads < 1:
    _fail('data.num_threads', d.num_threads, '>= 1')
  if d.frame_template:
    try:
      sources.check_template(d.frame_template)
    except ValueError:
      _fail('data.frame_template', d.frame_template, "a template of one integer, e.g. 'img_{:05d}.jpg'")
  if d.num_classes < 1:
    _fail('data.num_classes', d.num_classes, '>= 1')
  for key in ('image_size', 'scale_size', 'batch_size', 'batch_multiplier', 'eval_batch_size'):
    if config[key] < 1:
      _fail(key, config[key], '>= 1')
  if config.image_size > config.scale_size:
    _fail('image_size', config.image_size, f'<= scale_size ({config.scale_size})')
  if o.base_lr <= 0:
    _fail('optim.base_lr', o.base_lr, '> 0')
  if o.reference_batch < 1:
    _fail('optim.reference_batch', o.reference_batch, '>= 1')
  if o.schedule not in optim.SCHEDULES:
    _fail('optim.schedule', o.schedule, f'one of {optim.SCHEDULES}')
  if not 0 <= o.warmup_epochs < config.num_epochs:
    _fail('optim.warmup_epochs', o.warmup_epochs, f'0 <= warmup < num_epochs ({config.num_epochs})')
  if not 0 <= o.momentum < 1:
    _fail('optim.momentum', o.momentum, '0 <= momentum < 1')
  if o.weight_decay < 0:
    _fail('optim.weight_decay', o.weight_decay, '>= 0')
  if o.clip_grad_norm < 0:
    _fail('optim.clip_grad_norm', o.clip_grad_norm, '>= 0 (0: off)')
  if o.grouping not in optim.GROUPINGS:
    _fail('optim.grouping', o.grouping, f'one of {optim.GROUPINGS}')
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
    _fail('init.imagenet', config.init.imagenet, "'' when init.checkpoint is set (one initialisation)")
  if config.seed < 0:
    _fail('seed', config.seed, '>= 0')
  if d.synthetic.seed < 0:
    _fail('data.synthetic.seed', d.synthetic.seed, '>= 0')
  if config.mode not in MODES:
    _fail('mode', config.mode, f'one of {MODES}')
  _validate_test(config)


# What a user's own dataset (data.name='custom') needs, per format: video files have no frame
# template, and an ArrayRecord index holds the frames (neither root nor template).
CUSTOM_KEYS = {'frames': ('root', 'train_list', 'val_list', 'frame_template'),
               'videos': ('root', 'train_list', 'val_list'),
               'arrayrecord': ('train_list', 'val_list')}


def _validate_custom_data(d):
  needed = CUSTOM_KEYS[d.format]
  for key in needed:
    if not d[key]:
      _fail(f'data.{key}', d[key], f"a value (name='custom' with format={d.format!r} needs "
            f"{', '.join(needed)} and num_classes)")


def _validate_test(config):
  """config.test (the test protocol, rnl_jax.evaluate)."""
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
    _fail('test.twice_sample', t.twice_sample, 'False with data.dense_sample=True (dense sampling has '
          'its own test.dense_clips windows; the original rejects the combination)')
  if config.data.skip_corrupt:
    _fail('data.skip_corrupt', config.data.skip_corrupt, 'False in test mode (a replaced video would be '
          'scored twice; the protocol needs every listed video)')
