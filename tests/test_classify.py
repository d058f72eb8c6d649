"""rnl_jax.classify: a tiny random-weight checkpoint, an mp4 and a frame folder made here."""

import io
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from rnl_jax import classify as cl
from rnl_jax import sharding
from rnl_jax.checkpoint import save_checkpoint
from rnl_jax.data import sampling, synthetic, transforms, video
from rnl_jax.models import Architecture, build_model
from rnl_jax.models.tsn import abstract_variables

T, SIZE, SCALE, CROPS = 4, 32, 36, 3
NAMES = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot']
INPUTS = {'num_segments': T, 'image_size': SIZE, 'scale_size': SCALE, 'dense_sample': False}


def random_variables(model, seed=0):
  """He-normal kernels, unit BN (the RNL output BN too, so the blocks act), random biases and head;
  filled in NumPy from the variable shapes (compiling model.init takes ~45 s on a 2-core CPU)."""
  rng = np.random.default_rng(seed)

  def fill(path, x):
    name = jax.tree_util.keystr(path)
    if 'kernel' in name:
      fan_in = np.prod(x.shape[:-1])
      return rng.normal(0, np.sqrt((2 if 'new_fc' not in name else 0.05) / fan_in), x.shape).astype(
          x.dtype
      )
    if 'scale' in name or "'var'" in name:
      return np.ones(x.shape, x.dtype)
    if "'mean'" in name:
      return np.zeros(x.shape, x.dtype)
    return rng.normal(0, 0.1, x.shape).astype(x.dtype)  # biases

  shapes = abstract_variables(model, (1, T, SIZE, SIZE, 3))
  return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  """Checkpoint (RNL ResNet-18, width 8, distinct logits), mp4, frame folder, a text file."""
  root = tmp_path_factory.mktemp('classify')
  arch = Architecture(num_classes=len(NAMES), depth=18, width=8)
  model = build_model(arch, dropout=0.0, normalize_input=True)
  variables = random_variables(model)
  ckpt = save_checkpoint(
      str(root / 'ckpt'), variables, architecture=arch, inputs=INPUTS, classes=NAMES
  )

  mp4_frames = synthetic.render_clip(
      0, np.random.default_rng(0), num_frames=13, height=48, width=64
  )
  mp4 = video.write_video(str(root / 'clip.mp4'), mp4_frames)
  folder = root / 'frames'
  folder.mkdir()
  for k, frame in enumerate(synthetic.render_clip(4, np.random.default_rng(1), num_frames=10), 1):
    Image.fromarray(frame).save(folder / f'{k:06d}.jpg', quality=90)
  text = root / 'notes.txt'
  text.write_text('not a video\n')
  # the compiler options classify's forward uses (they change the CPU kernels, hence the bits)
  apply = jax.jit(
      lambda v, x: model.apply(v, x, train=False, mutable=['intermediates']),
      compiler_options=sharding.compiler_options(),
  )
  return {
      'model': model,
      'variables': variables,
      'apply': apply,
      'ckpt': ckpt,
      'mp4': mp4,
      'folder': str(folder),
      'text': str(text),
  }


def direct_views(frames):
  """The views built here from all decoded frames: test sampling, 3 crops -> [V, T, S, S, 3]."""
  idx = sampling.sample_indices(len(frames), T, 'test', dense=False)  # [1, T], 1-based
  views = transforms.test_views(frames[idx.reshape(-1) - 1], CROPS, False, SCALE, SIZE)
  return views.reshape(-1, T, SIZE, SIZE, 3)


def folder_frames(folder):
  files = sorted(os.listdir(folder))
  return np.stack([np.asarray(Image.open(os.path.join(folder, f)).convert('RGB')) for f in files])


@pytest.fixture(scope='module')
def results(setup, tmp_path_factory):
  png = str(tmp_path_factory.mktemp('png') / 'att.png')
  return (
      cl.classify(
          setup['ckpt'],
          [setup['mp4'], setup['text'], setup['folder']],
          crops=CROPS,
          attention=png,
          query='1,2,3',
      ),
      png,
  )


def test_matches_direct_model_apply(setup, results):
  """Same logits, probabilities and top-5 as model.apply on views built independently here."""
  res, _ = results
  for r, frames in (
      (res[0], video.read_frames(setup['mp4'])),
      (res[2], folder_frames(setup['folder'])),
  ):
    views = direct_views(frames)
    logits, _ = setup['apply'](setup['variables'], views)
    logits = np.asarray(logits).mean(axis=0)
    np.testing.assert_array_equal(r['logits'], logits)  # same jitted program on the same views
    e = np.exp(logits.astype(np.float64) - logits.max())
    probs = e / e.sum()
    np.testing.assert_array_equal(r['probs'], probs)
    order = np.argsort(-probs)[:5]
    assert [t['name'] for t in r['top5']] == [NAMES[k] for k in order]
    assert [t['label'] for t in r['top5']] == list(order)
    assert [t['prob'] for t in r['top5']] == list(probs[order])
    assert r['num_views'] == CROPS and r['num_frames'] == len(frames)
    assert probs.max() > 0.3  # the classes are really separated (a meaningful order)
  assert res[1] == {'video': setup['text'], 'error': res[1]['error']}
  assert 'cannot open as a video' in res[1]['error']


def test_attention_maps(setup, results):
  """Query row = softmax(P P^T)[j] of the sown features; both maps sum to 1; the PNG's layout."""
  res, png = results
  r = res[0]
  views = direct_views(video.read_frames(setup['mp4']))
  _, state = setup['apply'](setup['variables'], views)
  p = np.asarray(state['intermediates']['base_model']['layer2_0']['nl']['region_features'][0][0])
  t, h, w, c = p.shape  # view 0: [T, h, w, C']
  assert (t, h, w) == (T, SIZE // 8, SIZE // 8)
  np.testing.assert_allclose(r['features'], p, rtol=1e-5, atol=1e-5)
  flat = jnp.asarray(p.reshape(-1, c))
  s = np.asarray(jax.nn.softmax(flat @ flat.T, axis=-1))  # [M, M], rows sum to 1
  j = (1 * h + 2) * w + 3
  np.testing.assert_allclose(r['attention_map'].reshape(-1), s[j], rtol=1e-4, atol=1e-7)
  assert r['attention_map'].sum() == pytest.approx(1.0, abs=1e-9)
  mean = cl.attention_map(r['features'])
  assert mean.sum() == pytest.approx(1.0, abs=1e-9)
  np.testing.assert_allclose(mean.reshape(-1), s.mean(axis=0), rtol=1e-4)
  np.testing.assert_allclose(cl.attention_map(r['features'], chunk=7), mean, rtol=1e-12)
  assert np.ptp(s[j]) > 1e-3  # not a uniform map: the query row depends on j
  # One PNG per classified video, suffixed by the video's index; the failed one has none.
  assert r['attention'] == png[:-4] + '_0.png' and res[2]['attention'] == png[:-4] + '_2.png'
  assert not os.path.exists(png[:-4] + '_1.png')
  img = np.asarray(Image.open(r['attention']).convert('RGB'))
  tile = 128  # 32 px frames shown 4x
  assert img.shape == (cl.TITLE_HEIGHT + 2 * tile + 3 * cl.PAD, T * tile + (T + 1) * cl.PAD, 3)
  y0, y1 = cl.TITLE_HEIGHT + cl.PAD, cl.TITLE_HEIGHT + 2 * cl.PAD + tile
  for i in range(T):  # top row: the first view's frames (below the 't=i' label); bottom: blended
    x0 = cl.PAD + i * (tile + cl.PAD)
    shown = np.repeat(np.repeat(views[0, i], 4, axis=0), 4, axis=1)
    if i != 1:
      np.testing.assert_array_equal(img[y0 + 16 : y0 + tile, x0 : x0 + tile], shown[16:])
    assert np.abs(img[y1 : y1 + tile, x0 : x0 + tile].astype(int) - shown).mean() > 10
  x0 = cl.PAD + 1 * (tile + cl.PAD)  # the query cell (t, y, x) = (1, 2, 3) is outlined in white
  assert (img[y0 + 2 * 32, x0 + 3 * 32 : x0 + 4 * 32] == 255).all()


def test_cli_text_json_and_errors(setup, results, tmp_path):
  out, err = io.StringIO(), io.StringIO()
  # 3 views in batches of 2: the padded last batch must not change the result
  rc = cl.main(
      [
          '--checkpoint',
          setup['ckpt'],
          '--crops',
          '3',
          '--batch_views',
          '2',
          setup['mp4'],
          setup['text'],
          setup['folder'],
      ],
      out,
      err,
  )
  assert rc == 1
  assert err.getvalue().splitlines() == [err.getvalue().splitlines()[0]]
  assert err.getvalue().startswith(f'classify: {setup["text"]}: ')
  lines = out.getvalue().splitlines()
  assert (
      lines[0].startswith(setup['mp4'])
      and lines[6].startswith(setup['folder'])
      and len(lines) == 12
  )
  expected = [f'  {t["prob"]:.3f}  {t["name"]}' for r in results[0][::2] for t in r['top5']]
  assert lines[1:6] + lines[7:12] == expected

  out, err = io.StringIO(), io.StringIO()
  rc = cl.main(['--checkpoint', setup['ckpt'], '--json', '--crops', '1', setup['mp4']], out, err)
  assert rc == 0 and err.getvalue() == ''
  doc = json.loads(out.getvalue())
  assert [d['video'] for d in doc] == [setup['mp4']] and doc[0]['num_views'] == 1
  assert doc[0]['num_frames'] == 13
  probs = [e['prob'] for e in doc[0]['top5']]
  assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
  assert {e['name'] for e in doc[0]['top5']} <= set(NAMES)

  err = io.StringIO()
  assert cl.main(['--checkpoint', str(tmp_path / 'nothing'), setup['mp4']], io.StringIO(), err) == 2
  assert str(tmp_path / 'nothing') in err.getvalue()
  err = io.StringIO()
  assert (
      cl.main(
          [
              '--checkpoint',
              setup['ckpt'],
              '--attention',
              'x.png',
              '--attention_block',
              'layer9_0',
              setup['mp4'],
          ],
          io.StringIO(),
          err,
      )
      == 2
  )
  assert 'layer2_0, layer3_0' in err.getvalue()


def test_frame_template(tmp_path):
  for name in ('img_{:05d}.jpg', '{:05d}.jpg', '{:06d}.jpg', 'frame{:d}.jpeg'):
    d = tmp_path / name.replace('{', '').replace('}', '').replace(':', '')
    d.mkdir()
    for k in range(1, 12):
      (d / name.format(k)).write_bytes(b'')
    (d / 'notes.txt').write_text('x')
    assert cl.frame_template(str(d)) == (name.replace('{:d}', '{:01d}'), 11)
  os.remove(d / name.format(5))
  with pytest.raises(cl.ClassifyError, match='frame5.jpeg is missing'):
    cl.frame_template(str(d))
  (tmp_path / 'empty').mkdir()
  with pytest.raises(cl.ClassifyError, match='without JPEG frames'):
    cl.frame_template(str(tmp_path / 'empty'))


def test_view_settings_and_names():
  v = cl.ViewSettings.resolve(INPUTS, crops=10, image_size=None, num_segments=8)
  assert (v.num_segments, v.image_size, v.scale_size, v.crops, v.num_views) == (
      8,
      SIZE,
      SCALE,
      10,
      10,
  )
  v = cl.ViewSettings.resolve(None, image_size=112, dense_sample=True)
  assert (v.num_segments, v.scale_size, v.clips, v.num_views) == (8, 128, 10, 10)
  assert cl.ViewSettings.resolve({'dense_sample': True}, dense_sample=False).clips == 1
  with pytest.raises(cl.ClassifyError, match='--clips 3 needs --dense_sample'):
    cl.ViewSettings.resolve(None, clips=3)
  assert cl.class_names(400)[:2] == ['abseiling', 'air_drumming']
  assert cl.class_names(3) == ['class_0', 'class_1', 'class_2']
  with pytest.raises(cl.ClassifyError, match='2 class names for a 3-class model'):
    cl.class_names(3, {'classes': ['a', 'b']})
