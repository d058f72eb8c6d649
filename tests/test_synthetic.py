"""Synthetic time-reversal dataset: layout, determinism, resumability and the time-reversal property."""

import json
import os
import pathlib

import numpy as np
from PIL import Image
import pytest

from rnl_jax.data import synthetic

F, H, W = 16, 48, 64  # non-square, to catch height/width mix-ups
N_TRAIN, N_VAL = 24, 12


def _files(root):
  """{relative path: bytes} of every file under root."""
  root = pathlib.Path(root)
  return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


def _read_list(path):
  return [line.split() for line in pathlib.Path(path).read_text().splitlines()]


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
  out = tmp_path_factory.mktemp('synth')
  summary = synthetic.generate(out, N_TRAIN, N_VAL, num_frames=F, height=H, width=W, seed=3)
  return out, summary


def test_layout_and_list_files(dataset):
  out, summary = dataset
  assert summary['generated'] == N_TRAIN + N_VAL and summary['skipped'] == 0
  classes = (out / 'classes.txt').read_text().splitlines()
  assert classes == list(synthetic.CLASSES) and len(classes) == synthetic.NUM_CLASSES >= 8
  for split, n in (('train', N_TRAIN), ('val', N_VAL)):
    rows = _read_list(out / f'{split}.txt')
    assert len(rows) == n
    labels = []
    for vid, num_frames, label in rows:
      folder = out / 'frames' / vid
      assert sorted(os.listdir(folder)) == [
          f'img_{i:05d}.jpg' for i in range(1, int(num_frames) + 1)
      ]
      assert int(num_frames) == F
      labels.append(int(label))
    assert all(0 <= lab < len(classes) for lab in labels)
    assert np.bincount(labels, minlength=len(classes)).min() == n // len(classes)  # balanced
  assert not [p for p in os.listdir(out / 'frames') if p.startswith('.')]  # no temp folders left


def test_frames_decode_to_the_rendered_clip(dataset):
  out, _ = dataset
  vid, _, label = _read_list(out / 'train.txt')[5]
  frames = []
  for t in range(1, F + 1):
    with Image.open(out / 'frames' / vid / f'img_{t:05d}.jpg') as im:
      assert im.format == 'JPEG' and im.mode == 'RGB' and im.size == (W, H)
      frames.append(np.asarray(im))
  clip = synthetic.render_clip(int(label), synthetic.video_rng(3, 'train', 5), F, H, W)
  assert clip.shape == (F, H, W, 3) and clip.dtype == np.uint8
  assert np.abs(np.stack(frames).astype(np.float32) - clip).mean() < 4.0  # JPEG q90 error only


def test_determinism_and_parallel_workers(dataset, tmp_path):
  out, _ = dataset
  a = synthetic.generate(
      tmp_path / 'a', N_TRAIN, N_VAL, num_frames=F, height=H, width=W, seed=3, workers=2
  )
  assert a['generated'] == N_TRAIN + N_VAL
  reference = _files(out)
  assert (
      _files(tmp_path / 'a') == reference
  )  # same seed: identical bytes, whatever the worker count
  synthetic.generate(tmp_path / 'b', 4, 0, num_frames=F, height=H, width=W, seed=4)
  other = _files(tmp_path / 'b')
  assert (
      other['frames/train_000000/img_00001.jpg'] != reference['frames/train_000000/img_00001.jpg']
  )


def test_rerun_skips_complete_videos(dataset, tmp_path):
  out = tmp_path / 'r'
  kwargs = dict(num_frames=F, height=H, width=W, seed=3)
  synthetic.generate(out, 6, 2, **kwargs)
  before = _files(out)
  stamp = os.stat(out / 'frames' / 'train_000000' / 'img_00001.jpg').st_mtime_ns
  again = synthetic.generate(out, 6, 2, **kwargs)
  assert again['generated'] == 0 and again['skipped'] == 8
  assert os.stat(out / 'frames' / 'train_000000' / 'img_00001.jpg').st_mtime_ns == stamp
  # a lost video and a temp folder from a killed run (pid that cannot exist): only the lost one is rendered
  for p in (out / 'frames' / 'val_000001').iterdir():
    p.unlink()
  (out / 'frames' / 'val_000001').rmdir()
  (out / 'frames' / '.tmp-999999999-train_000003').mkdir()
  again = synthetic.generate(out, 6, 2, **kwargs)
  assert again['generated'] == 1 and again['skipped'] == 7
  assert _files(out) == before
  # a larger split only adds the new videos, identical to a fresh run's
  grown = synthetic.generate(out, 8, 2, **kwargs)
  assert grown['generated'] == 2
  assert (
      _files(out)['frames/train_000007/img_00016.jpg']
      == _files(dataset[0])['frames/train_000007/img_00016.jpg']
  )
  with pytest.raises(ValueError, match=r"other settings.*'seed': \(3, 5\)"):
    synthetic.generate(out, 6, 2, num_frames=F, height=H, width=W, seed=5)


@pytest.mark.parametrize('pair', range(synthetic.PAIRS))
def test_time_reversal_twins(pair):
  """Class 2k+1 is class 2k backwards, so their frame multisets (hence any order-blind feature) match."""
  fwd_frames, rev_frames = [], []
  for seed in range(6):
    fwd = synthetic.render_clip(2 * pair, np.random.default_rng(seed), F, H, W)
    rev = synthetic.render_clip(2 * pair + 1, np.random.default_rng(seed), F, H, W)
    np.testing.assert_array_equal(rev, fwd[::-1])
    assert not np.array_equal(rev, fwd)  # the twin is a different clip (no palindromes)
    # consecutive frames differ (real change, not only pixel noise: see test_motion_is_visible)
    assert np.all(np.abs(np.diff(fwd.astype(np.int16), axis=0)).mean(axis=(1, 2, 3)) > 0)
    fwd_frames += [f.tobytes() for f in fwd]
    rev_frames += [f.tobytes() for f in rev]
  # per-frame marginals of the two classes over the same seeds: identical multisets of frames
  assert sorted(fwd_frames) == sorted(rev_frames)

  # an order-blind (TSN-like) clip feature -- mean of per-frame colour means -- cannot separate them
  def feat(clip):
    return clip.reshape(F, -1, 3).mean(axis=1).mean(axis=0)

  for seed in range(3):
    a = synthetic.render_clip(2 * pair, np.random.default_rng(100 + seed), F, H, W)
    b = synthetic.render_clip(2 * pair + 1, np.random.default_rng(100 + seed), F, H, W)
    np.testing.assert_allclose(feat(a), feat(b), rtol=1e-12)


@pytest.mark.parametrize('num_segments', [8, 24])  # F / T odd (not 4, 16: F / T even)
def test_default_frame_count_keeps_tsn_samplers_symmetric(num_segments):
  """At the default F, the frames TSN samples from a twin are the reversed frames it samples from the
  original (segment centres; and the training offsets' support), so the exact-twin argument holds.
  """
  f = synthetic.DEFAULT_FRAMES
  tick = f / float(num_segments)
  centres = {int(tick / 2.0 + tick * t) for t in range(num_segments)}  # docs/original.md §3.3
  assert {f - 1 - c for c in centres} == centres
  d = f // num_segments
  train = [{t * d + k for k in range(d)} for t in range(num_segments)]  # support of segment t
  assert [{f - 1 - x for x in seg} for seg in train[::-1]] == train


def _rotation_rate(alpha):
  """Least-squares angular velocity (rad/frame, > 0 = clockwise on screen, y down) between frames."""
  rates = []
  ys, xs = np.mgrid[: alpha.shape[1], : alpha.shape[2]].astype(np.float64) + 0.5
  for a0, a1 in zip(alpha[:-1].astype(np.float64), alpha[1:].astype(np.float64)):
    mid = (a0 + a1) / 2
    cy, cx = (mid * ys).sum() / mid.sum(), (mid * xs).sum() / mid.sum()
    gy, gx = np.gradient(mid)
    g = gx * -(ys - cy) + gy * (
        xs - cx
    )  # grad(alpha) . velocity field of a unit clockwise rotation
    rates.append(-((a1 - a0) * g).sum() / (g * g).sum())
  return np.array(rates)


@pytest.mark.parametrize('pair', range(synthetic.PAIRS))
def test_forward_class_semantics_and_visible_motion(pair):
  """The forward class does what its name says, and changes visibly between frames 2 apart (8 of 16)."""
  h, w = 64, 64  # the default size, where learnability matters
  for seed in range(4):
    rng = np.random.default_rng(seed)
    _, alpha, _, _ = synthetic._forward_layers(pair, rng, F, h, w)  # pylint: disable=protected-access
    ys, xs = np.mgrid[:h, :w] + 0.5
    mass = alpha.sum(axis=(1, 2))
    cx, cy = (alpha * xs).sum(axis=(1, 2)) / mass, (alpha * ys).sum(axis=(1, 2)) / mass
    name = synthetic.CLASSES[2 * pair]
    if name == 'moves_right':
      assert np.all(np.diff(cx) > 0.5) and np.ptp(cy) < 0.1
    elif name == 'moves_down':
      assert np.all(np.diff(cy) > 0.5) and np.ptp(cx) < 0.1
    elif name == 'rotates_clockwise':
      assert np.all(_rotation_rate(alpha) > 0.03)
    elif name == 'grows':
      assert np.all(np.diff(mass) > 0)
    elif name == 'fades_in':
      assert np.all(np.diff(alpha.max(axis=(1, 2))) > 0.02)
    elif name == 'fills_up':
      inc = np.clip(
          np.diff(alpha, axis=0), 0, None
      )  # the band added between frames: rises (y down)
      level = (inc * ys).sum(axis=(1, 2)) / inc.sum(axis=(1, 2))
      assert np.all(np.diff(mass) >= 0) and np.all(np.diff(level) < 0)
    else:
      raise AssertionError(f'no semantic check for {name}')
    assert 0.0 <= alpha.min() and alpha.max() <= 1.0
    assert (
        np.abs(alpha[2:] - alpha[:-2]).sum(axis=(1, 2)).min() > 5.0
    )  # pixels of change per 2 frames


def test_render_clip_rejects_bad_arguments():
  with pytest.raises(ValueError, match='label'):
    synthetic.render_clip(synthetic.NUM_CLASSES, np.random.default_rng(0))
  with pytest.raises(ValueError, match='Generator'):
    synthetic.render_clip(0, 0)
  with pytest.raises(ValueError, match='num_frames'):
    synthetic.render_clip(0, np.random.default_rng(0), num_frames=1)


def test_object_centre_keeps_its_reach_inside_the_frame():
  g = synthetic._grid(4, 20, 40)  # H 20, W 40
  assert g.m == 20.0 and g.tc.tolist() == [-1.5, -0.5, 0.5, 1.5]
  o = synthetic._Object(*([0] * 9), u_x=0.25, u_y=1.0, radius=2.0, margin=1.0)
  assert o.centre(g, 4.0, 5.0) == (4.0 + 0.25 * 32.0, 15.0)  # x in [4, 36], y in [5, 15]
  assert o.centre(g, 20.0, 10.0) == (20.0, 10.0)  # no room: the frame centre


def test_forward_layers_rejects_a_bad_pair():
  for pair in (-1, synthetic.PAIRS):
    with pytest.raises(ValueError, match=f'pair must be in \\[0, {synthetic.PAIRS}\\), got {pair}'):
      synthetic._forward_layers(pair, np.random.default_rng(0), 4, 16, 16)


def test_settings_are_recorded_then_checked(tmp_path):
  settings = {'format_version': 1, 'seed': 0, 'num_frames': 4}
  video = {'codec': 'libx264', 'keyframe_interval': 30}
  synthetic._check_settings(str(tmp_path), settings, None)  # first run: recorded
  path = tmp_path / 'synthetic.json'
  assert json.loads(path.read_text()) == settings
  synthetic._check_settings(str(tmp_path), settings, None)  # same settings: fine
  synthetic._check_settings(str(tmp_path), settings, video)  # the first run with videos adds them
  assert json.loads(path.read_text()) == dict(settings, video=video)
  synthetic._check_settings(str(tmp_path), settings, None)  # frames only: mp4 settings not compared
  with pytest.raises(synthetic.SyntheticError, match=r"'keyframe_interval': 5"):
    synthetic._check_settings(str(tmp_path), settings, dict(video, keyframe_interval=5))
  with pytest.raises(synthetic.SyntheticError, match=r"other settings.*'seed': \(0, 1\)"):
    synthetic._check_settings(str(tmp_path), dict(settings, seed=1), None)
  assert json.loads(path.read_text()) == dict(settings, video=video)
