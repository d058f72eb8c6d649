"""Trainer: config errors before compiling, gradient accumulation, end to end, NaN stop, resume."""

import functools
import json
import logging
import os
import re
import shutil
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from rnl_jax import load_checkpoint, optim, train
from rnl_jax.data import synthetic

from conftest import REPO, small_config

# ----------------------------------------------------------------------------------------------------
# config errors


@pytest.mark.parametrize(
    'key,value,message',
    [
        ('optim.base_lr', -0.1, 'config.optim.base_lr=-0.1'),
        ('num_segments', 0, 'config.num_segments=0'),
        ('data.format', 'tfrecord', 'config.data.format'),
        ('optim.grouping', 'tidy', 'config.optim.grouping'),
        ('batch_multiplier', 0, 'config.batch_multiplier=0'),
        ('data.frame_template', 'img.jpg', 'config.data.frame_template'),
        ('image_size', 300, 'config.image_size=300'),
    ],
)
def test_bad_values_fail_before_anything_runs(tmp_path, key, value, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    train.train_and_evaluate(small_config(**{key: value}), str(tmp_path))
  assert not os.listdir(tmp_path)  # nothing generated, nothing compiled


def test_steps_past_the_cosine_schedule_fail_before_compiling(tmp_path):
  # 24 videos / 8 clips = 3 steps per epoch: the cosine over 2 epochs reaches lr 0 at step 6.
  assert train.run_plan(small_config(num_train_steps=6), 24).num_train_steps == 6
  with pytest.raises(
      ValueError,
      match=r'config.num_train_steps=7 runs past the cosine .* = 6 steps .* '
      r'raise config.num_epochs to at least 2.33',
  ):
    train.train_and_evaluate(small_config(num_train_steps=7), str(tmp_path))
  assert not (tmp_path / 'checkpoints').exists()
  # the step schedule keeps its last lr: running past num_epochs is allowed there
  assert (
      train.run_plan(
          small_config(num_train_steps=7, **{'optim.schedule': 'step'}), 24
      ).num_train_steps
      == 7
  )


def test_custom_dataset_needs_its_keys_and_matching_classes(tmp_path):
  with pytest.raises(ValueError, match='config.data.root'):
    train.train_and_evaluate(small_config(**{'data.name': 'custom'}), str(tmp_path / 'a'))
  data = tmp_path / 'data'
  synthetic.generate(data, 6, 3, num_frames=6, height=16, width=16)
  config = small_config(
      **{
          'data.name': 'custom',
          'data.root': str(data / 'frames'),
          'data.train_list': str(data / 'train.txt'),
          'data.val_list': str(data / 'val.txt'),
          'data.num_classes': 3,
          'data.frame_template': 'img_{:05d}.jpg',
      }
  )
  with pytest.raises(ValueError, match=r'train\.txt:\d+: label \d+ outside \[0, 3\)'):
    train.train_and_evaluate(config, str(tmp_path / 'b'))
  config.data.num_classes = 12
  config.data.train_list = str(data / 'missing.txt')
  with pytest.raises(FileNotFoundError, match='missing.txt'):
    train.train_and_evaluate(config, str(tmp_path / 'c'))


MISTAKES = [  # (arguments after --workdir, what the one line must say)
    (['--config.optim.lr=0.1'], '--config.optim.lr: no such config key; nearest: optim.'),
    (['--config.optim.base_lrr=0.1'], 'nearest: optim.base_lr'),
    (['--config=configs/nope.py'], '--config=configs/nope.py: no such config file'),
    (['--config.num_epochs=abc'], '--config.num_epochs=abc'),
    (['--workdri=x'], "Unknown command line flag 'workdri'"),
    (['--config.optim.base-lr=-1'], 'config.optim.base_lr=-1.0: expected > 0'),  # dashes accepted
    (['--config.num_segments=0'], 'config.num_segments=0: expected >= 1'),
    (['--config.data.format=video'], "config.data.format='video': expected one of"),
    (['--config.data.name=kinetic'], "config.data.name='kinetic': expected one of"),
    (['--config=configs/k400_8f.py'], 'config.data.root is empty: set it to the folder holding'),
    (['--config.mode=test'], 'best does not exist (train first'),
    (
        [
            '--config.data.name=custom',
            '--config.data.format=videos',
            '--config.data.train_list={bad}',
            '--config.data.val_list={bad}',
            '--config.data.root={tmp}',
            '--config.data.num_classes=3',
        ],
        't.txt:2: label 5 outside [0, 3)',
    ),
    (
        [
            '--config.data.name=custom',
            '--config.data.train_list={bad}',
            '--config.data.val_list={bad}',
            '--config.data.root={tmp}',
            '--config.data.num_classes=6',
            '--config.data.frame_template=img_{{:05d}}.jpg',
        ],
        't.txt:1: video folder {tmp}/a does not exist (2 of 2 listed videos are missing',
    ),
]


@pytest.mark.parametrize('args,expected', MISTAKES, ids=[' '.join(a)[:40] for a, _ in MISTAKES])
def test_main_answers_a_mistake_in_one_line(tmp_path, args, expected):
  """A config key or value, a flag, a list line or a missing checkpoint: one line on stderr that
  names it, exit 2, no traceback (each would be a 20-55 line traceback without rnl_jax.cli)."""
  bad = tmp_path / 't.txt'
  bad.write_text('a 10 1\nb 10 5\n')  # line 2: label 5 of 3 classes
  args = [a.format(bad=bad, tmp=tmp_path) for a in args]
  expected = expected.format(tmp=tmp_path)
  proc = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/tiny.py', f'--workdir={tmp_path / "w"}', *args],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=300,
  )
  errors = [line for line in proc.stderr.splitlines() if line.startswith('error: ')]
  assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  assert len(errors) == 1 and expected in errors[0], proc.stderr[-3000:]
  assert proc.stderr.rstrip().splitlines()[-1] == errors[0]


def test_main_debug_shows_the_traceback(tmp_path):
  proc = subprocess.run(
      [
          sys.executable,
          'main.py',
          '--config=configs/tiny.py',
          f'--workdir={tmp_path}',
          '--config.num_segments=0',
          '--debug',
      ],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert proc.returncode != 0 and 'Traceback' in proc.stderr
  assert 'ConfigError: config.num_segments=0: expected >= 1' in proc.stderr


# ----------------------------------------------------------------------------------------------------
# the step


class _Linear(nn.Module):
  """A per-example model (no cross-example statistics) with a batch_stats counter."""

  @nn.compact
  def __call__(self, x, train=False):
    count = self.variable('batch_stats', 'count', jnp.zeros, ())
    if train:
      count.value += 1
    x = x.reshape(x.shape[0], -1).astype(jnp.float32) / 255.0
    x = nn.Dropout(0.0, deterministic=not train)(x)
    return nn.Dense(5, name='new_fc')(nn.relu(nn.Dense(16, name='hidden')(x)))


def test_accumulated_micro_batches_equal_one_large_batch():
  """M=4 micro-batches of 2 clips: loss, gradient norm and update equal one 8-clip step."""
  model = _Linear()
  rng = np.random.default_rng(0)
  frames = jnp.asarray(rng.integers(0, 256, (8, 2, 4, 4, 3), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 5, 8), jnp.int32)
  variables = model.init(jax.random.PRNGKey(0), frames)
  params = {
      'base_model': {'hidden': variables['params']['hidden']},
      'new_fc': variables['params']['new_fc'],
  }
  apply_model = _Rename(model)
  tx = optim.sgd(params, 0.1, weight_decay=1e-2, clip_grad_norm=1.0)
  state = train.TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=variables['batch_stats'],
      opt_state=tx.init(params),
      rng=jax.random.PRNGKey(1),
  )
  step = jax.jit(functools.partial(train.train_step, model=apply_model, tx=tx, lr_fn=lambda s: 0.1))
  big, m_big = step(state, {'frames': frames[None], 'label': labels[None]})
  small, m_small = step(
      state, {'frames': frames.reshape(4, 2, *frames.shape[1:]), 'label': labels.reshape(4, 2)}
  )
  np.testing.assert_allclose(m_small['loss'], m_big['loss'], rtol=1e-6)
  np.testing.assert_allclose(m_small['grad_norm'], m_big['grad_norm'], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(small.params), jax.tree.leaves(big.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  assert int(small.batch_stats['count']) == 4 and int(big.batch_stats['count']) == 1
  assert int(small.step) == 1
  assert m_big['grad_norm'] > 1.0  # the clip was active


class _Rename:
  """`_Linear` with its params under base_model/ (the layout optim.param_groups expects)."""

  def __init__(self, model):
    self.model = model

  def apply(self, variables, x, **kw):
    p = variables['params']
    v = {
        'params': {'hidden': p['base_model']['hidden'], 'new_fc': p['new_fc']},
        'batch_stats': variables['batch_stats'],
    }
    return self.model.apply(v, x, **kw)


def test_non_finite_step_is_not_applied():
  model = _Rename(_Linear())
  frames = jnp.zeros((1, 2, 2, 4, 4, 3), jnp.uint8)
  variables = model.model.init(jax.random.PRNGKey(0), frames[0])
  params = {
      'base_model': {'hidden': variables['params']['hidden']},
      'new_fc': variables['params']['new_fc'],
  }
  params['new_fc']['bias'] = params['new_fc']['bias'].at[0].set(jnp.nan)
  tx = optim.sgd(params, 0.1)
  state = train.TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=variables['batch_stats'],
      opt_state=tx.init(params),
      rng=jax.random.PRNGKey(1),
  )
  new, metrics = train.train_step(
      state,
      {'frames': frames, 'label': jnp.zeros((1, 2), jnp.int32)},
      model=model,
      tx=tx,
      lr_fn=lambda s: 0.1,
  )
  assert not bool(metrics['finite'])
  assert int(new.step) == 0
  np.testing.assert_array_equal(
      new.params['base_model']['hidden']['kernel'], state.params['base_model']['hidden']['kernel']
  )


def test_itstime_every_n_steps_and_at_the_end():
  assert [s for s in range(1, 11) if train.itstime(s, 3, 10)] == [3, 6, 9, 10]
  assert [s for s in range(1, 11) if train.itstime(s, 3, 0)] == [3, 6, 9]  # no last step
  assert [s for s in range(1, 5) if train.itstime(s, 0, 4)] == [4]  # 0: only the end


def test_validation_clock_fractional_epochs_and_resume():
  """Every 2.5 steps: due at 3, 5, 8, 10 (the first step at or past each multiple) and the end."""
  clock, due = train.ValidationClock(2.5, 0), []
  for step in range(1, 12):
    if clock.due(step, 11):
      due.append(step)
      clock.passed(step)
  assert due == [3, 5, 8, 10, 11]
  resumed = train.ValidationClock(2.5, 5)  # restarted at step 5: next at 7.5
  assert not resumed.due(7, 11) and resumed.due(8, 11)
  assert train.ValidationClock(0, 0).due(11, 11) and not train.ValidationClock(0, 0).due(10, 11)


def test_replaced_videos_are_named_and_counted_as_logged(tmp_path, caplog):
  """skip_corrupt: every unreadable video a step used is named in the step log's warning, and the
  warnings' counts add up to results.json's replaced_videos (each bad video once per epoch)."""
  data = tmp_path / 'data'
  synthetic.generate(data, 24, 12, num_frames=12, height=40, width=40)
  bad = ['train_000003', 'train_000007']
  for name in bad:
    for frame in (data / 'frames' / name).iterdir():
      frame.write_bytes(b'not a jpeg')
  with caplog.at_level(logging.INFO):
    train.train_and_evaluate(
        small_config(**{'data.root': str(data), 'data.skip_corrupt': True}), str(tmp_path / 'run')
    )
  pattern = re.compile(r'(\d+) unreadable videos replaced in the last \d+ steps: (.*)')
  logged = [m for m in (pattern.match(r.getMessage()) for r in caplog.records) if m]
  named = [path for m in logged for path in m.group(2).split(', ')]
  results = json.loads((tmp_path / 'run' / 'results.json').read_text())
  assert sum(int(m.group(1)) for m in logged) == len(named) == results['replaced_videos'] == 4
  assert sorted(os.path.basename(p) for p in named) == sorted(bad * 2)


# ----------------------------------------------------------------------------------------------------
# end to end (in process)


def _final_state(workdir, step):
  with ocp.StandardCheckpointer() as ckptr:
    return ckptr.restore(os.path.join(workdir, 'checkpoints', str(step), 'state'))


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """One tiny run: 2 epochs of 3 steps, evaluated at the end."""
  workdir = tmp_path_factory.mktemp('run')
  metrics = train.train_and_evaluate(small_config(), str(workdir))
  return workdir, metrics


def test_end_to_end_outputs(trained):
  workdir, metrics = trained
  assert metrics['step'] == 6 and metrics['num_videos'] == 12
  with open(workdir / 'results.json') as f:
    results = json.load(f)
  for key in ('step', 'epoch', 'top1', 'top5', 'mean_class_acc', 'num_videos', 'wall_time_s'):
    assert key in results
  assert results['step'] == 6 and results['epoch'] == pytest.approx(2.0)
  assert 0 <= results['top1'] <= results['top5'] <= 1
  # The input check: steps 2..6 (after the first step's compilation), fractions of their time; the
  # device idles on input only during part of the host's wait.
  assert results['input']['steps'] == 5
  assert 0 <= results['input']['device_idle'] <= results['input']['host_wait'] < 1
  assert results['input']['clips_per_s'] == pytest.approx(5 * 8 / results['input']['seconds'])
  with open(workdir / 'config.json') as f:
    saved = json.load(f)
  assert saved['derived']['clips_per_step'] == 8 and saved['derived']['num_train_steps'] == 6
  assert saved['config']['model']['width'] == 8
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2', '4', '6']  # every 2 steps, keep 3
  assert any(f.startswith('events') for f in os.listdir(workdir / 'tensorboard'))
  model, variables = load_checkpoint(str(workdir / 'best'))  # the best model, loadable
  clips = np.zeros((1, 4, 32, 32, 3), np.uint8)
  assert model.apply(variables, clips, train=False).shape == (1, 12)


def test_test_protocol_on_the_trained_run(trained):
  """Train briefly (the fixture), then the test protocol on WORKDIR/best: 2 clips x 3 crops."""
  workdir, _ = trained
  from rnl_jax import checkpoint, protocol  # pylint: disable=import-outside-toplevel

  meta = checkpoint.read_metadata(str(workdir / 'best'))
  assert meta['inputs'] == {
      'num_segments': 4,
      'image_size': 32,
      'scale_size': 36,
      'dense_sample': False,
  }
  assert meta['classes'][:2] == ['moves_right', 'moves_left'] and len(meta['classes']) == 12
  config = small_config(
      mode='test',
      **{
          'test.crops': 3,
          'test.twice_sample': True,
          'test.full_res': False,
          'test.views_per_step': 16,
      },
  )
  result = protocol.test(config, str(workdir))
  assert result['checkpoint'] == str(workdir / 'best') and result['num_videos'] == 12
  assert result['protocol']['views_per_video'] == 6 and 0 <= result['top1'] <= result['top5'] <= 1
  scores = np.load(workdir / 'test_scores.npz')
  assert scores['logits'].shape == (12, 12)


def test_restart_of_a_finished_run_does_nothing(trained):
  workdir, metrics = trained
  before = os.path.getmtime(workdir / 'results.json')
  again = train.train_and_evaluate(small_config(), str(workdir))
  assert again == metrics
  assert os.path.getmtime(workdir / 'results.json') == before


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(trained, tmp_path):
  """Resume the finished run for 2 more epochs at an absurd lr: it blows up; checkpoints survive."""
  workdir = tmp_path / 'run'
  shutil.copytree(trained[0], workdir)
  config = small_config(**{'optim.base_lr': 1e15, 'optim.clip_grad_norm': 0.0, 'num_epochs': 4.0})
  with pytest.raises(train.TrainingError, match=r'non-finite loss .* at step \d+') as err:
    train.train_and_evaluate(config, str(workdir))
  bad = int(re.search(r'at step (\d+)', str(err.value)).group(1))
  assert bad > 6
  steps = sorted(int(s) for s in os.listdir(workdir / 'checkpoints'))
  assert steps[-1] >= 6 and all(s < bad for s in steps)
  for leaf in jax.tree.leaves(_final_state(workdir, steps[-1])['params']):
    assert np.isfinite(leaf).all()


def _flat(tree):
  return {
      jax.tree_util.keystr(p): np.asarray(v)
      for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]
  }


def test_initialisation_from_imagenet_backbone_and_fine_tuning(trained, tmp_path):
  """init.imagenet overlays a backbone-only checkpoint (head, shift-free RNL parts stay fresh);
  init.checkpoint + new_head takes a trained model's backbone and a fresh head for other classes."""
  from rnl_jax import checkpoint as checkpoint_lib
  from rnl_jax import config as config_lib
  from rnl_jax.models.resnet import ResNet

  config = small_config()
  model = config_lib.model_from_config(config)
  sample = jnp.zeros((1, 4, 32, 32, 3), jnp.uint8)
  backbone = ResNet(18, num_segments=1, shift_place=None, non_local=False, width=8)
  imagenet = jax.jit(lambda x: backbone.init(jax.random.PRNGKey(7), x, train=False))(
      jnp.zeros((1, 32, 32, 3))
  )  # jitted: op-by-op init compiles every op of the network separately
  imagenet = {col: {'base_model': imagenet[col]} for col in ('params', 'batch_stats')}
  checkpoint_lib.save_checkpoint(
      str(tmp_path / 'imagenet'), imagenet, kind='imagenet_backbone', depth=18, width=8
  )
  config.init.imagenet = str(tmp_path / 'imagenet')
  variables = train.initial_variables(model, config, sample)
  fresh = train.initial_variables(model, small_config(), sample)  # the same compiled init
  got, pre, new = _flat(variables), _flat(imagenet), _flat(fresh)
  for k, v in got.items():
    np.testing.assert_array_equal(v, pre[k] if k in pre else new[k], err_msg=k)
  assert any('nl' in k for k in got if k not in pre)  # RNL parts are not in ImageNet weights

  config = small_config(
      **{'data.num_classes': 5, 'init.checkpoint': str(trained[0] / 'best'), 'init.new_head': True}
  )
  model = config_lib.model_from_config(config)
  variables = _flat(train.initial_variables(model, config, sample))
  best, _ = checkpoint_lib.restore_variables(str(trained[0] / 'best'))
  best = _flat(best)
  assert variables["['params']['new_fc']['kernel']"].shape[-1] == 5
  for k, v in variables.items():
    if 'new_fc' not in k:
      np.testing.assert_array_equal(v, best[k], err_msg=k)
