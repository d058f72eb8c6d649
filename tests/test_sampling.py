"""Frame sampling (rnl_jax.data.sampling) against docs/original.md §3.3 / 7.9, 7.10, 7.19.

The deterministic samplers are compared, for every F in 1..300, with plain-loop re-implementations that
read like the original `ops/dataset.py` (new_length = 1), plus §3.3's worked examples. The random
samplers are checked for range, determinism per seed and coverage of exactly the allowed values.
"""

import numpy as np
import pytest

from rnl_jax.data import sampling

FRAMES = range(1, 301)
SEGMENTS = (1, 2, 3, 5, 7, 8, 16, 32)


# ----------------------------------------------------------------------------------------------------
# straightforward re-implementations (plain Python, as the original reads; 1-based lists)


def ref_val(num_frames, num_segments):
  if num_frames > num_segments + 1 - 1:
    tick = (num_frames - 1 + 1) / float(num_segments)
    offsets = [int(tick / 2.0 + tick * x) for x in range(num_segments)]
  else:
    offsets = [0] * num_segments
  return [o + 1 for o in offsets]


def ref_test(num_frames, num_segments, twice_sample=False):
  tick = (num_frames - 1 + 1) / float(num_segments)
  offsets = [int(tick / 2.0 + tick * x) for x in range(num_segments)]
  if twice_sample:
    offsets = offsets + [int(tick * x) for x in range(num_segments)]
  return [o + 1 for o in offsets]


def ref_dense_test(num_frames, num_segments, num_clips=10):
  sample_pos = max(1, 1 + num_frames - 64)
  t_stride = 64 // num_segments
  # Exact rational floor of linspace(0, P-1, num_clips); equal to numpy's float linspace for these F
  # (also cross-checked against the literal upstream expression below).
  if num_clips == 1:
    starts = [0]
  else:
    starts = [(i * (sample_pos - 1)) // (num_clips - 1) for i in range(num_clips)]
  offsets = []
  for start_idx in starts:
    offsets += [(idx * t_stride + start_idx) % num_frames for idx in range(num_segments)]
  return [o + 1 for o in offsets]


def as_list(a):
  assert isinstance(a, np.ndarray) and a.dtype == np.int64 and a.ndim == 1
  return a.tolist()


# ----------------------------------------------------------------------------------------------------
# deterministic samplers vs. reference, every F


@pytest.mark.parametrize('num_segments', SEGMENTS)
def test_val_and_test_match_reference_every_f(num_segments):
  for f in FRAMES:
    assert as_list(sampling.tsn_val(f, num_segments)) == ref_val(f, num_segments), f
    assert as_list(sampling.tsn_test(f, num_segments)) == ref_test(f, num_segments), f
    assert as_list(sampling.tsn_test(f, num_segments, twice_sample=True)) == ref_test(
        f, num_segments, twice_sample=True
    ), f
    # fix_short: val == test for every F.
    assert as_list(sampling.tsn_val(f, num_segments, fix_short=True)) == ref_test(
        f, num_segments
    ), f


@pytest.mark.parametrize('num_segments', SEGMENTS)
def test_dense_test_matches_reference_every_f(num_segments):
  for f in FRAMES:
    assert as_list(sampling.dense_test(f, num_segments)) == ref_dense_test(f, num_segments), f
    # The literal upstream start expression.
    starts = np.linspace(0, max(1, 1 + f - 64) - 1, num=10, dtype=int).tolist()
    assert sampling.dense_test_starts(f).tolist() == starts, f
  for clips in (1, 2, 3, 7):
    for f in (1, 40, 64, 65, 66, 100, 300):
      assert as_list(sampling.dense_test(f, num_segments, num_clips=clips)) == ref_dense_test(
          f, num_segments, clips
      )


def test_indices_always_within_video():
  for t in SEGMENTS:
    for f in FRAMES:
      for a in (
          sampling.tsn_val(f, t),
          sampling.tsn_test(f, t, twice_sample=True),
          sampling.dense_test(f, t),
      ):
        assert a.min() >= 1 and a.max() <= f, (f, t)


# ----------------------------------------------------------------------------------------------------
# docs/original.md's worked examples (§3.3) and quirks (§7)


def test_reference_examples_uniform():
  assert as_list(sampling.tsn_test(300, 8)) == [19, 57, 94, 132, 169, 207, 244, 282]
  assert as_list(sampling.tsn_test(300, 8, twice_sample=True)) == [
      19,
      57,
      94,
      132,
      169,
      207,
      244,
      282,
      1,
      38,
      76,
      113,
      151,
      188,
      226,
      263,
  ]
  assert as_list(sampling.tsn_val(300, 8)) == [19, 57, 94, 132, 169, 207, 244, 282]


def test_val_short_video_quirk():
  # F == T and F < T: validation collapses to frame 1, the test sampler does not.
  assert as_list(sampling.tsn_val(8, 8)) == [1] * 8
  assert as_list(sampling.tsn_test(8, 8)) == [1, 2, 3, 4, 5, 6, 7, 8]
  assert as_list(sampling.tsn_val(8, 8, fix_short=True)) == [1, 2, 3, 4, 5, 6, 7, 8]
  assert as_list(sampling.tsn_val(5, 8)) == [1] * 8
  assert as_list(sampling.tsn_test(5, 8)) == [1, 1, 2, 3, 3, 4, 5, 5]
  assert as_list(sampling.tsn_val(9, 8)) == [1, 2, 3, 4, 6, 7, 8, 9]


def test_python_float_rounding_is_kept():
  # 6/7 * 3.5 is exactly 3 in rationals but 2.999... in floats; upstream's int() gives 2 (frame 3).
  assert as_list(sampling.tsn_test(6, 7)) == [1, 2, 3, 3, 4, 5, 6]


def test_reference_examples_dense():
  assert sampling.dense_test_starts(300).tolist() == [0, 26, 52, 78, 104, 131, 157, 183, 209, 236]
  clips = sampling.dense_test(300, 8).reshape(10, 8)
  assert clips[0].tolist() == [1, 9, 17, 25, 33, 41, 49, 57]
  assert clips[-1].tolist() == [237 + 8 * t for t in range(8)]
  assert sampling.dense_test(300, 16).reshape(10, 16)[1].tolist() == [27 + 4 * t for t in range(16)]
  # F <= 64: start 0, wrap modulo F, all 10 test clips identical.
  wrap = [1, 9, 17, 25, 33, 1, 9, 17]
  assert sampling.dense_test(40, 8).reshape(10, 8).tolist() == [wrap] * 10
  rng = np.random.default_rng(0)
  assert as_list(sampling.dense_train(40, 8, rng)) == wrap
  assert as_list(sampling.dense_val(40, 8, rng)) == wrap
  assert as_list(sampling.dense_train(64, 8, rng)) == [1, 9, 17, 25, 33, 41, 49, 57]


# ----------------------------------------------------------------------------------------------------
# random samplers


def test_tsn_train_within_segments_and_coverage():
  for t in (1, 3, 8, 16):
    for f in range(1, 130):
      d = f // t
      seen = [set() for _ in range(t)]
      for seed in range(12 if d > 3 else 40):
        a = as_list(sampling.tsn_train(f, t, np.random.default_rng(seed)))
        assert len(a) == t
        if d == 0:
          assert a == [1] * t, (f, t)
          continue
        for i, frame in enumerate(a):
          assert i * d <= frame - 1 < (i + 1) * d, (f, t, i, frame)
          seen[i].add(frame - 1 - i * d)
      if 0 < d <= 3:  # small d: every allowed offset shows up in every segment
        assert all(s == set(range(d)) for s in seen), (f, t, seen)


def test_tsn_train_independent_draws_and_full_range():
  # d = 10: over many seeds each segment takes all 10 offsets, and segments are not locked together.
  draws = np.stack(
      [sampling.tsn_train(80, 8, np.random.default_rng(s)) for s in range(400)]
  )  # [400, 8]
  u = draws - 1 - 10 * np.arange(8)
  assert u.min() == 0 and u.max() == 9
  assert all(len(set(u[:, i].tolist())) == 10 for i in range(8))
  assert (u[:, 0] != u[:, 1]).any()
  # 300 frames, T = 8: d = 37 and segment t covers [37t, 37t + 36].
  a = sampling.tsn_train(300, 8, np.random.default_rng(1)) - 1
  assert np.all((a >= 37 * np.arange(8)) & (a < 37 * np.arange(1, 9)))


def test_train_deterministic_per_seed():
  for fn in (sampling.tsn_train, sampling.dense_train, sampling.dense_val):
    a = fn(300, 8, np.random.default_rng(123))
    b = fn(300, 8, np.random.default_rng(123))
    np.testing.assert_array_equal(a, b)
    outs = {tuple(fn(300, 8, np.random.default_rng(s)).tolist()) for s in range(20)}
    assert len(outs) > 1


def _dense_start(a, f, t):
  """Start of a dense clip, after checking that the clip is (start + s*t) mod F."""
  start = int(a[0]) - 1
  assert a.tolist() == [(start + (64 // t) * i) % f + 1 for i in range(t)]
  return start


@pytest.mark.parametrize('num_segments', (8, 16))
def test_dense_train_start_range(num_segments):
  for f in (65, 66, 70, 100):
    p = f - 63
    for include_last, allowed in ((False, set(range(max(1, p - 1)))), (True, set(range(p)))):
      starts = set()
      for seed in range(300):
        rng = np.random.default_rng(seed)
        a = sampling.dense_train(f, num_segments, rng, include_last_start=include_last)
        assert a.min() >= 1 and a.max() <= f
        starts.add(_dense_start(a, f, num_segments))
      assert starts == allowed, (f, include_last, sorted(starts))
  # The last valid start F - 64 is never drawn by default (P = 2 -> always 0).
  for f in (1, 2, 40, 64, 65):
    for seed in range(30):
      assert (
          _dense_start(
              sampling.dense_train(f, num_segments, np.random.default_rng(seed)), f, num_segments
          )
          == 0
      )


def test_dense_val_is_random_like_train():
  for seed in range(10):
    np.testing.assert_array_equal(
        sampling.dense_val(300, 8, np.random.default_rng(seed)),
        sampling.dense_train(300, 8, np.random.default_rng(seed)),
    )
  starts = {
      _dense_start(sampling.dense_val(300, 8, np.random.default_rng(s)), 300, 8) for s in range(50)
  }
  assert len(starts) > 10 and max(starts) <= 235


# ----------------------------------------------------------------------------------------------------
# front door and errors


def test_sample_indices_shapes_and_dispatch():
  rng = lambda: np.random.default_rng(7)  # noqa: E731
  cases = [
      (dict(mode='train', dense=False, rng=rng()), sampling.tsn_train(300, 8, rng()), 1),
      (dict(mode='val', dense=False), sampling.tsn_val(300, 8), 1),
      (dict(mode='test', dense=False), sampling.tsn_test(300, 8), 1),
      (dict(mode='test', dense=False, twice_sample=True), sampling.tsn_test(300, 8, True), 2),
      (dict(mode='train', dense=True, rng=rng()), sampling.dense_train(300, 8, rng()), 1),
      (dict(mode='val', dense=True, rng=rng()), sampling.dense_val(300, 8, rng()), 1),
      (dict(mode='test', dense=True), sampling.dense_test(300, 8), 10),
      (dict(mode='test', dense=True, num_clips=3), sampling.dense_test(300, 8, 3), 3),
  ]
  for kwargs, flat, clips in cases:
    out = sampling.sample_indices(300, 8, **kwargs)
    assert out.shape == (clips, 8) and out.dtype == np.int64
    np.testing.assert_array_equal(out.reshape(-1), flat)
    opts = {k: v for k, v in kwargs.items() if k in ('mode', 'dense', 'twice_sample', 'num_clips')}
    assert sampling.num_clips_per_video(opts.pop('mode'), **opts) == clips
  assert sampling.sample_indices(8, 8, 'val', dense=False).tolist() == [[1] * 8]
  assert sampling.sample_indices(8, 8, 'val', dense=False, fix_short=True).tolist() == [
      list(range(1, 9))
  ]
  assert sampling.sample_indices(np.int64(300), np.int32(8), 'test', dense=False).shape == (1, 8)


def test_twice_sample_with_dense_rejected():
  with pytest.raises(ValueError, match='twice_sample'):
    sampling.sample_indices(300, 8, 'test', dense=True, twice_sample=True)
  with pytest.raises(ValueError, match='twice_sample'):
    sampling.num_clips_per_video('test', dense=True, twice_sample=True)
  with pytest.raises(ValueError, match='twice_sample'):
    sampling.sample_indices(
        300, 8, 'train', dense=False, twice_sample=True, rng=np.random.default_rng(0)
    )


@pytest.mark.parametrize('bad', [0, -3, 2.5, None, True, '10'])
def test_bad_counts_rejected(bad):
  with pytest.raises(ValueError, match='num_frames'):
    sampling.sample_indices(bad, 8, 'test', dense=False)
  with pytest.raises(ValueError, match='num_segments'):
    sampling.sample_indices(300, bad, 'test', dense=False)
  with pytest.raises(ValueError, match='num_clips'):
    sampling.sample_indices(300, 8, 'test', dense=True, num_clips=bad)
  with pytest.raises(ValueError, match='num_frames'):
    sampling.tsn_train(bad, 8, np.random.default_rng(0))


def test_bad_mode_and_missing_rng_rejected():
  with pytest.raises(ValueError, match='mode'):
    sampling.sample_indices(300, 8, 'eval', dense=False)
  for dense in (False, True):
    with pytest.raises(ValueError, match='rng'):
      sampling.sample_indices(300, 8, 'train', dense=dense)
  with pytest.raises(ValueError, match='rng'):
    sampling.sample_indices(300, 8, 'val', dense=True)
  with pytest.raises(ValueError, match='rng'):
    sampling.tsn_train(300, 8, 0)
  # Deterministic modes do not need a generator.
  sampling.sample_indices(300, 8, 'val', dense=False)
  sampling.sample_indices(300, 8, 'test', dense=True)


def test_keep_record():
  assert not sampling.keep_record(2, 'train') and sampling.keep_record(3, 'train')
  assert not sampling.keep_record(2, 'val', remove_missing=False)
  assert not sampling.keep_record(2, 'test') and sampling.keep_record(3, 'test')
  assert sampling.keep_record(1, 'test', remove_missing=False)  # ensembles keep short records
