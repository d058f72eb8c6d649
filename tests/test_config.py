"""Config -> model: bad values fail with the key's name before anything compiles."""

import pytest

import importlib
import re

from configs import default, tiny
from rnl_jax import config as config_lib
from rnl_jax.models import rnl


@pytest.mark.parametrize(
    'key,value,message',
    [
        ('model.dtype', 'fp8', 'config.model.dtype'),
        ('model.dropout', 1.5, 'config.model.dropout'),
        ('model.query_chunk', -2, 'config.model.query_chunk=-2'),
        ('model.eval_query_chunk', -1, 'config.model.eval_query_chunk'),
        ('model.eval_attention', 'flash', "config.model.eval_attention='flash'"),
        ('model.train_attention', 'flash', "config.model.train_attention='flash'"),
        ('model.eval_clips_per_pass', -2, 'config.model.eval_clips_per_pass=-2'),
        ('model.variant', 'i3d', "variant='i3d'"),
        ('model.depth', 42, 'depth=42'),
        ('data.num_classes', 0, 'num_classes=0'),
        ('num_segments', 0, 'config.num_segments'),
    ],
)
def test_bad_values_name_the_key(key, value, message):
  config = tiny.get_config()
  section, _, name = key.rpartition('.')
  setattr(config[section] if section else config, name, value)
  with pytest.raises(ValueError, match=message):
    config_lib.model_from_config(config)


def test_default_is_the_original_rnl_r50():
  model = config_lib.model_from_config(default.get_config())
  assert (model.depth, model.shift_place, model.non_local, model.num_classes) == (
      50,
      'blockres',
      True,
      400,
  )
  assert model.normalize_input  # the host ships uint8 pixels


def test_default_trains_in_tiles_on_cpu_and_plain_on_accelerators():
  # model.query_chunk = -1 (auto): the tiled attention's 784-row tiles where it was measured
  # faster than plain (CPU), the plain attention elsewhere; evaluation keeps its own setting.
  config = default.get_config()
  assert config.model.query_chunk == -1
  attention = config_lib.model_from_config(config).attention
  assert (attention.query_chunk, attention.eval_query_chunk) == ('auto', 784)
  assert rnl.train_query_chunk(attention.query_chunk, 'cpu') == 784
  assert rnl.train_query_chunk(attention.query_chunk, 'gpu') is None
  config.model.query_chunk = 0
  assert config_lib.model_from_config(config).attention.query_chunk is None


RECIPES = [
    'k400_8f',
    'k400_16f',
    'sthv1_8f',
    'sthv1_16f',
    'sthv2_8f',
    'ucf101_8f',
    'hmdb51_8f',
    'synthetic',
    'synthetic_r50',
    'tiny',
]


@pytest.mark.parametrize('name', RECIPES)
def test_recipes_validate(name):
  config = importlib.import_module(f'configs.{name}').get_config()
  config_lib.validate(config)


@pytest.mark.parametrize(
    'name,clips,crops',
    [
        ('k400_8f', 10, 3),
        ('k400_16f', 10, 3),
        ('sthv1_8f', 2, 3),
        ('sthv1_16f', 2, 3),
        ('sthv2_8f', 2, 3),
    ],
)
def test_recipes_hold_the_readme_test_protocol(name, clips, crops):
  """docs/original.md §6: Kinetics 10 dense clips x 3 full-res crops, Something 2 (twice) x 3."""
  c = importlib.import_module(f'configs.{name}').get_config()
  got = c.test.dense_clips if c.data.dense_sample else (2 if c.test.twice_sample else 1)
  assert (got, c.test.crops, c.test.full_res) == (clips, crops, True)


@pytest.mark.parametrize(
    'name,frames,dense,flip,wd,dropout,warmup,epochs,classes',
    [
        ('k400_8f', 8, True, True, 2e-4, 0.5, 5, 100, 400),
        ('k400_16f', 16, True, True, 2e-4, 0.5, 5, 100, 400),
        ('sthv1_8f', 8, False, False, 1e-3, 0.8, 1, 50, 174),
        ('sthv1_16f', 16, False, False, 1e-3, 0.8, 1, 50, 174),
        ('sthv2_8f', 8, False, False, 1e-3, 0.8, 1, 50, 174),
    ],
)
def test_recipes_are_the_original_commands(
    name, frames, dense, flip, wd, dropout, warmup, epochs, classes
):
  """docs/original.md §5.8: 16 clips per forward x 4 accumulated = 64 per step at lr 0.02, cosine, clip 20."""
  c = importlib.import_module(f'configs.{name}').get_config()
  assert (c.num_segments, c.data.dense_sample, c.data.flip) == (frames, dense, flip)
  assert (c.optim.weight_decay, c.model.dropout, c.optim.warmup_epochs, c.num_epochs) == (
      wd,
      dropout,
      warmup,
      epochs,
  )
  assert c.data.num_classes == classes
  assert (c.batch_size, c.batch_multiplier, c.optim.base_lr, c.optim.reference_batch) == (
      16,
      4,
      0.02,
      64,
  )
  assert (c.optim.schedule, c.optim.momentum, c.optim.clip_grad_norm) == ('cos', 0.9, 20.0)
  assert (c.model.variant, c.model.depth, c.model.width, c.optim.grouping) == (
      'rnl',
      50,
      64,
      'original',
  )


@pytest.mark.parametrize(
    'overrides,message',
    [
        ({'mode': 'predict'}, "config.mode='predict'"),
        (
            {'mode': 'test', 'test.twice_sample': True},
            'config.test.twice_sample=True',
        ),  # k400: dense
        ({'mode': 'test', 'data.skip_corrupt': True}, 'config.data.skip_corrupt=True'),
        ({'test.crops': 2}, 'config.test.crops=2'),
        ({'test.output': 'a/b'}, "config.test.output='a/b'"),
    ],
)
def test_test_protocol_values_fail_naming_the_key(overrides, message):
  config = importlib.import_module('configs.k400_8f').get_config()
  for key, value in overrides.items():
    section, _, name = key.rpartition('.')
    (config[section] if section else config)[name] = value
  with pytest.raises(ValueError, match=re.escape(message)):
    config_lib.validate(config)


@pytest.mark.parametrize(
    'fmt,given',
    [
        (
            'frames',
            {'root': '/d', 'train_list': 't', 'val_list': 'v', 'frame_template': 'img_{:05d}.jpg'},
        ),
        ('videos', {'root': '/d', 'train_list': 't', 'val_list': 'v'}),  # no frame template
        ('arrayrecord', {'train_list': 't.json', 'val_list': 'v.json'}),  # no root, no template
    ],
)
def test_custom_data_needs_only_the_keys_its_format_reads(fmt, given):
  config = tiny.get_config()
  config.data.name, config.data.format, config.data.num_classes = 'custom', fmt, 3
  for key, value in given.items():
    config.data[key] = value
  config_lib.validate(config)
  for key in given:  # each needed key, when missing, is named with what the format needs
    config.data[key] = ''
    with pytest.raises(
        ValueError,
        match=rf"config.data.{key}='': .*format='{fmt}' needs " + re.escape(', '.join(given)),
    ):
      config_lib.validate(config)
    config.data[key] = given[key]


@pytest.mark.parametrize('name', ['kinetics400', 'something_v1', 'something_v2'])
def test_prepare_names_of_datasets_are_accepted(name):
  config = default.get_config()
  config.data.name = name
  if name != 'kinetics400':
    config.data.num_classes = 174
  config_lib.validate(config)
