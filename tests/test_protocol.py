"""Test protocol (rnl_jax.protocol), score files (rnl_jax.scores), ensembles (rnl_jax.ensemble)."""

import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs import tiny
from rnl_jax import checkpoint as checkpoint_lib
from rnl_jax import config as config_lib
from rnl_jax import ensemble
from rnl_jax import input_pipeline
from rnl_jax import metrics as metrics_lib
from rnl_jax import protocol
from rnl_jax import scores as scores_lib
from rnl_jax import sharding
from rnl_jax.data import sampling, sources

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K = 4


# ----------------------------------------------------------------------------------------------------
# exact fusion arithmetic with a fake model (scenic's trick): known pixels -> known logits


def frame_value(video, frame):
  """The grey level of every pixel of frame `frame` (1-based) of video `video`."""
  return (37 * video + 11 * frame) % 200 + 20


class FakeModel(nn.Module):
  """Per-view logits from the pixel of each frame: -(mean_t v_t / 20 - 2k)^2, k = 0..K-1."""

  @nn.compact
  def __call__(self, x, train=False):  # [N, T, S, S, 3] uint8 -> [N, K]
    v = x[:, :, 0, 0, 0].astype(jnp.float32).mean(axis=1)  # [N]
    return -jnp.square(v[:, None] / 20.0 - 2.0 * jnp.arange(K, dtype=jnp.float32))


def fake_logits(values):
  return -np.square(np.mean(values) / 20.0 - 2.0 * np.arange(K))


@pytest.fixture(scope='module')
def flat_videos(tmp_path_factory):
  """7 videos of 9-20 constant-grey 24x32 JPEG frames (flat JPEGs decode exactly)."""
  root = tmp_path_factory.mktemp('flat')
  records = []
  for v in range(7):
    n = 9 + 2 * v
    os.makedirs(root / f'v{v}')
    for f in range(1, n + 1):
      Image.new('RGB', (32, 24), (frame_value(v, f),) * 3).save(
          root / f'v{v}' / f'img_{f:05d}.jpg', quality=95
      )
    records.append((f'v{v}', n, v % K))
  return str(root), records


@pytest.mark.parametrize('twice_sample,crops,batch', [(True, 3, 5), (False, 1, 4), (True, 10, 7)])
def test_fusion_is_mean_of_view_logits(flat_videos, twice_sample, crops, batch):
  root, records = flat_videos
  source = sources.FrameFolderSource(
      root, records, 'img_{:05d}.jpg', mode='test', num_segments=3, twice_sample=twice_sample
  )
  views = input_pipeline.EvalViews(num_crops=crops, scale_size=20, input_size=16)
  batches = input_pipeline.EvalBatches(source, views, batch)
  scores = protocol.video_scores(FakeModel(), {}, batches, sharding.make_mesh(), K)
  assert (scores.counts == (2 if twice_sample else 1) * crops).all()  # every view once, no padding
  expected = []
  for v, (_, n, _) in enumerate(records):
    clips = sampling.sample_indices(n, 3, 'test', dense=False, twice_sample=twice_sample)  # [C, T]
    per_clip = [fake_logits([frame_value(v, f) for f in clip]) for clip in clips]
    expected.append(np.mean(per_clip, axis=0))  # crops of a flat frame are identical views
  expected = np.array(expected)
  np.testing.assert_allclose(scores.scores(), expected, rtol=1e-6, atol=1e-5)
  labels = np.array([r[2] for r in records])
  m = scores.metrics()
  top1 = expected.argmax(1) == labels
  assert m['top1'] == pytest.approx(top1.mean()) and m['num_videos'] == 7
  per_class = [top1[labels == c].mean() for c in range(K)]
  assert m['mean_class_acc'] == pytest.approx(np.mean(per_class))


def test_metrics_and_per_class_rows_by_hand():
  scores = np.array([[3.0, 1, 0], [0, 2, 1], [0, 2, 1], [1, 0, 0.5], [0, 0, 1]])
  labels = np.array([0, 1, 2, 2, 2])
  m = metrics_lib.classification_metrics(scores, labels)
  assert m['top1'] == pytest.approx(3 / 5)
  assert m['mean_class_acc'] == pytest.approx((1 + 1 + 1 / 3) / 3)
  rows = protocol.per_class_rows(scores, labels, ['a', 'b', 'c'])
  assert rows == [(0, 'a', 1, 1, 1.0), (1, 'b', 1, 1, 1.0), (2, 'c', 3, 1, 1 / 3)]
  np.testing.assert_array_equal(
      scores_lib.confusion_matrix(scores, labels), [[1, 0, 0], [0, 1, 0], [1, 1, 1]]
  )


# ----------------------------------------------------------------------------------------------------
# end to end: a tiny RNL checkpoint, the protocol through main.py's config, ensembles


def small_test_config(workdir, **test):
  config = tiny.get_config()
  config.model.width = 8
  config.data.synthetic.num_train = 12
  config.data.synthetic.num_val = 13  # 13 videos x 6 views: partial last batches
  config.mode = 'test'
  config.test.checkpoint = os.path.join(workdir, 'ckpt')
  config.test.crops = 3
  config.test.full_res = False
  config.test.twice_sample = True
  config.test.views_per_step = 8
  for k, v in test.items():
    config.test[k] = v
  return config


@pytest.fixture(scope='module')
def checkpointed(tmp_path_factory):
  """A workdir with a random-weight tiny RNL checkpoint (BN running stats perturbed) and its data."""
  workdir = str(tmp_path_factory.mktemp('eval'))
  config = small_test_config(workdir)
  model = config_lib.model_from_config(config)
  init = jax.jit(lambda x: model.init(jax.random.PRNGKey(3), x, train=False))
  variables = init(jnp.zeros((1, 4, 32, 32, 3), jnp.uint8))
  variables = jax.tree.map(
      lambda x: x + 0.05 * jnp.sin(jnp.arange(x.size).reshape(x.shape)), variables
  )
  checkpoint_lib.save_checkpoint(
      config.test.checkpoint, variables, architecture=config_lib.architecture_from_config(config)
  )
  return workdir


def test_protocol_outputs(checkpointed):
  workdir = checkpointed
  result = protocol.test(small_test_config(workdir), workdir)
  assert result['protocol']['views_per_video'] == 6 and result['num_videos'] == 13
  with open(os.path.join(workdir, 'test.json')) as f:
    saved = json.load(f)
  for key in (
      'top1',
      'top5',
      'mean_class_acc',
      'num_videos',
      'protocol',
      'checkpoint',
      'views_per_s',
  ):
    assert key in saved
  s = np.load(os.path.join(workdir, 'test_scores.npz'))
  assert s['logits'].shape == (13, 12) and list(s['video_ids'][:2]) == ['val_000000', 'val_000001']
  np.testing.assert_array_equal(s['labels'], np.arange(13) % 12)
  assert s['class_names'][0] == 'moves_right'  # the dataset's classes.txt
  m = metrics_lib.classification_metrics(s['logits'], s['labels'])
  assert m['top1'] == pytest.approx(saved['top1'])
  with open(os.path.join(workdir, 'test_per_class.csv')) as f:
    lines = f.read().splitlines()
  assert lines[0] == 'label,name,videos,correct,accuracy' and len(lines) == 13
  assert lines[1].startswith('0,moves_right,2,')  # val_000000 and val_000012


def test_protocol_independent_of_batch_and_devices(checkpointed):
  """views_per_step 8 on 1 device in one pass vs 24 on 8 fake devices (one process, a subprocess) in
  passes of 2 views per device (3 per device: the second pass padded), the latter with the streamed
  attention in tiles of 24 rows (layer 2's M = 64: 3 tiles of 22, 2 padded keys; 784 is plain here).
  """
  workdir = checkpointed
  protocol.test(small_test_config(workdir, output='one'), workdir)
  code = (
      'import sys; sys.path.insert(0, %r); from tests.test_protocol import small_test_config; '
      'from rnl_jax import protocol; import jax; assert jax.device_count() == 8; '
      'c = small_test_config(%r, output="eight", views_per_step=24); '
      'c.model.eval_clips_per_pass = 2; c.model.eval_query_chunk = 24; '
      'c.model.eval_attention = "streamed"; protocol.test(c, %r)' % (REPO, workdir, workdir)
  )
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8', JAX_PLATFORMS='cpu')
  subprocess.run([sys.executable, '-c', code], check=True, cwd=REPO, env=env, capture_output=True)
  one = np.load(os.path.join(workdir, 'one_scores.npz'))
  eight = np.load(os.path.join(workdir, 'eight_scores.npz'))
  np.testing.assert_array_equal(one['video_ids'], eight['video_ids'])
  np.testing.assert_allclose(one['logits'], eight['logits'], rtol=1e-5, atol=1e-5)
  with open(os.path.join(workdir, 'eight.json')) as f:
    assert json.load(f)['devices'] == 8


def test_test_mode_config_errors(checkpointed):
  workdir = checkpointed
  for key, value, message in [
      ('crops', 4, 'config.test.crops=4'),
      ('views_per_step', 0, 'config.test.views_per_step=0'),
  ]:
    config = small_test_config(workdir, **{key: value})
    with pytest.raises(ValueError, match=message):
      protocol.test(config, workdir)
  config = small_test_config(workdir, checkpoint=os.path.join(workdir, 'nope'))
  with pytest.raises(FileNotFoundError, match='config.test.checkpoint'):
    protocol.test(config, workdir)
  config = small_test_config(workdir)
  config.data.num_classes = 11
  with pytest.raises(ValueError, match='num_classes'):
    protocol.test(config, workdir)


def test_ensemble_cli(checkpointed, tmp_path, capsys):
  workdir = checkpointed
  protocol.test(small_test_config(workdir, output='a'), workdir)
  protocol.test(small_test_config(workdir, output='b', crops=1, twice_sample=False), workdir)
  a, b = (os.path.join(workdir, f'{x}_scores.npz') for x in 'ab')
  out, scores_out = tmp_path / 'ens.json', tmp_path / 'ens.npz'
  assert (
      ensemble.main(
          [
              a,
              b,
              '--coeff',
              '1',
              '3',
              '--out',
              str(out),  # or --coeff 1,3
              '--scores_out',
              str(scores_out),
          ]
      )
      == 0
  )
  sa, sb = np.load(a), np.load(b)
  expected = (sa['logits'].astype(np.float64) + 3 * sb['logits']) / 2  # coeff-weighted, / #models
  m = metrics_lib.classification_metrics(expected, sa['labels'])
  with open(out) as f:
    result = json.load(f)
  assert result['top1'] == pytest.approx(m['top1']) and result['num_videos'] == 13
  np.testing.assert_allclose(np.load(scores_out)['logits'], expected, rtol=1e-6)
  assert 'ensemble of 2 over 13 videos' in capsys.readouterr().out

  # Video order does not matter; different videos or labels are refused, naming the file.
  perm = np.random.default_rng(0).permutation(13)
  shuffled = tmp_path / 'shuffled.npz'
  scores_lib.save_scores(
      str(shuffled),
      sb['video_ids'][perm],
      sb['labels'][perm],
      sb['logits'][perm],
      sb['class_names'],
  )
  ids, _, logits, _ = ensemble.combine(
      [(a, scores_lib.load_scores(a)), (str(shuffled), scores_lib.load_scores(str(shuffled)))]
  )
  np.testing.assert_allclose(
      logits, (sa['logits'].astype(np.float64) + sb['logits']) / 2, rtol=1e-6
  )
  short = tmp_path / 'short.npz'
  scores_lib.save_scores(
      str(short), sb['video_ids'][1:], sb['labels'][1:], sb['logits'][1:], sb['class_names']
  )
  with pytest.raises(SystemExit) as e:  # a user's mistake: `error: ...`, exit status 2
    ensemble.main([a, str(short)])
  assert e.value.code == 2
  assert "short.npz lacks 'val_000000'" in capsys.readouterr().err
  relabelled = tmp_path / 'relabelled.npz'
  scores_lib.save_scores(
      str(relabelled), sb['video_ids'], (sb['labels'] + 1) % 12, sb['logits'], sb['class_names']
  )
  with pytest.raises(SystemExit) as e:
    ensemble.main([a, str(relabelled)])
  assert e.value.code == 2
  assert 'relabelled.npz: video' in capsys.readouterr().err


def test_main_test_mode(checkpointed):
  """`python main.py --config.mode=test` end to end (the documented command)."""
  workdir = checkpointed
  ckpt = os.path.join(workdir, 'ckpt')
  cmd = [
      sys.executable,
      'main.py',
      '--config=configs/tiny.py',
      f'--workdir={workdir}',
      '--config.mode=test',
      f'--config.test.checkpoint={ckpt}',
      '--config.model.width=8',
      '--config.data.synthetic.num_train=12',
      '--config.data.synthetic.num_val=13',
      '--config.test.crops=1',
      '--config.test.full_res=False',
      '--config.test.output=cli',
  ]
  out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True).stdout
  assert 'test (2 clips x 1 crops)' in out and 'over 13 videos' in out
  assert os.path.isfile(os.path.join(workdir, 'cli_scores.npz'))
