"""Frame-index sampling of the original `ops/dataset.py` (docs/original.md §3.3), in pure NumPy.

Every function maps (num_frames F, num_segments T[, rng]) to **1-based** frame indices (int64), in the
original's clip-major order `[clip0: t0 .. t_{T-1}, clip1: ...]`. The expressions are the original's
(Python-float `tick = F / float(T)`, `int()` truncation, `np.linspace` for the dense test starts), so the
deterministic samplers agree with upstream for every F, quirks included (docs/original.md §7.9,
7.10, 7.19):

* uniform validation returns T copies of frame 1 when F <= T (the test sampler does not) -- reproduced
  by default, `fix_short=True` uses the test formula instead;
* the dense training/validation start never draws the last valid start F - 64 (`randint(0, P - 1)`)
  -- reproduced by default, `include_last_start=True` draws from all P starts;
* dense training-time *validation* is random (one random 64-frame window), exactly like training;
* `twice_sample` combined with dense sampling is rejected (upstream crashes later with a reshape error).

Randomness comes only from the `np.random.Generator` passed in (the caller derives one per example, e.g.
from (seed, epoch, index)), so indices are a pure function of (F, T, generator state). The exact random
streams of the original (global NumPy RNG in loader workers, docs/original.md §7.20) are not reproducible and are
not attempted; only the distributions are.

Frame-count filter (docs/original.md §3.1): upstream drops records with F < 3 for training/validation and for
single-model testing; `keep_record` expresses that rule. The samplers themselves accept any F >= 1
(ensemble testing keeps the short records).
"""

import operator

import numpy as np

MODES = ('train', 'val', 'test')
DENSE_WINDOW = 64  # frames covered by one dense (I3D-style) clip
DENSE_TEST_CLIPS = 10  # clips per video in the dense test protocol
MIN_NUM_FRAMES = 3  # records with fewer frames are dropped (docs/original.md §3.1)


# ----------------------------------------------------------------------------------------------------
# argument checks


def _check_count(value, name):
  """`value` as a Python int >= 1, else ValueError naming the argument."""
  if isinstance(value, (bool, np.bool_)):
    raise ValueError(f'{name} must be an integer >= 1, got {value!r}')
  try:
    value = operator.index(value)
  except TypeError:
    raise ValueError(f'{name} must be an integer >= 1, got {value!r}') from None
  if value < 1:
    raise ValueError(f'{name} must be >= 1, got {value}')
  return value


def _check_rng(rng):
  """Random samplers need an explicit per-example generator (no global NumPy state)."""
  if not isinstance(rng, np.random.Generator):
    raise ValueError(
        f'rng must be a numpy.random.Generator (one per example, derived by the caller), '
        f'got {type(rng).__name__}'
    )
  return rng


def _one_based(offsets):
  """0-based offsets -> 1-based int64 frame indices."""
  return np.asarray(offsets, dtype=np.int64) + 1


def keep_record(num_frames, mode='train', remove_missing=True):
  """Whether upstream keeps a record: F >= 3, except at test time with `remove_missing=False` (ensembles)."""
  if mode not in MODES:
    raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
  if mode == 'test' and not remove_missing:
    return True
  return int(num_frames) >= MIN_NUM_FRAMES


# ----------------------------------------------------------------------------------------------------
# uniform (TSN) sampling: one frame per segment


def _tsn_centres(num_frames, num_segments):
  """0-based segment centres `int(tick/2 + tick*t)`, tick = F / float(T) (Python floats, as upstream)."""
  tick = num_frames / float(num_segments)
  return [int(tick / 2.0 + tick * t) for t in range(num_segments)]


def _tsn_starts(num_frames, num_segments):
  """0-based segment starts `int(tick*t)` (the second `twice_sample` clip)."""
  tick = num_frames / float(num_segments)
  return [int(tick * t) for t in range(num_segments)]


def tsn_train(num_frames, num_segments, rng):
  """Training: frame t uniform in segment t, `t*d + U{0..d-1}` with d = F // T; all frame 1 if F < T.

  Returns [T] int64, 1-based.
  """
  f = _check_count(num_frames, 'num_frames')
  t = _check_count(num_segments, 'num_segments')
  rng = _check_rng(rng)
  d = f // t
  if d > 0:
    offsets = np.arange(t, dtype=np.int64) * d + rng.integers(0, d, size=t)  # [T]
  else:  # F < T (upstream's "sorted random" middle branch is unreachable for RGB, new_length = 1)
    offsets = np.zeros(t, dtype=np.int64)
  return _one_based(offsets)


def tsn_val(num_frames, num_segments, fix_short=False):
  """Training-time validation: segment centres if F > T, else T copies of frame 1.

  Upstream quirk (docs/original.md §7.10): F == T (and F < T) gives frame 1 only, while the test sampler gives
  the centres. `fix_short=True` always uses the centres (= `tsn_test`). Returns [T] int64, 1-based.
  """
  f = _check_count(num_frames, 'num_frames')
  t = _check_count(num_segments, 'num_segments')
  if f > t or fix_short:
    return _one_based(_tsn_centres(f, t))
  return _one_based(np.zeros(t, dtype=np.int64))


def tsn_test(num_frames, num_segments, twice_sample=False):
  """Test: segment centres with no short-video guard (F <= T repeats frames, never collapses to frame 1).

  `twice_sample` appends a second clip of segment starts `int(tick*t)`.
  Returns [T] int64 (or [2T], centres clip first), 1-based.
  """
  f = _check_count(num_frames, 'num_frames')
  t = _check_count(num_segments, 'num_segments')
  offsets = _tsn_centres(f, t)
  if twice_sample:
    offsets = offsets + _tsn_starts(f, t)
  return _one_based(offsets)


# ----------------------------------------------------------------------------------------------------
# dense (I3D-style) sampling: T frames with stride 64 // T inside a 64-frame window


def dense_num_starts(num_frames):
  """P = max(1, F - 63): number of 64-frame window starts (1 when F <= 64)."""
  return max(1, 1 + _check_count(num_frames, 'num_frames') - DENSE_WINDOW)


def _dense_clip(num_frames, num_segments, start):
  """0-based offsets `(start + s*t) mod F`, s = 64 // T; [T]. Wraps around for F <= 64."""
  stride = DENSE_WINDOW // num_segments
  return (start + stride * np.arange(num_segments, dtype=np.int64)) % num_frames


def dense_train(num_frames, num_segments, rng, include_last_start=False):
  """Training: one window at a random start; start = 0 if P == 1 else U{0..P-2}.

  Upstream's `randint(0, P - 1)` never draws the last valid start F - 64 (docs/original.md §7.10); reproduced by
  default, `include_last_start=True` draws from U{0..P-1}. Returns [T] int64, 1-based.
  """
  f = _check_count(num_frames, 'num_frames')
  t = _check_count(num_segments, 'num_segments')
  rng = _check_rng(rng)
  p = dense_num_starts(f)
  if p == 1:
    start = 0
  else:
    start = int(rng.integers(0, p if include_last_start else p - 1))
  return _one_based(_dense_clip(f, t, start))


def dense_val(num_frames, num_segments, rng, include_last_start=False):
  """Training-time validation with dense sampling: the *same random rule* as training (docs/original.md §7.9).

  Upstream validates on one random 64-frame window, so validation curves are noisy; reported numbers use
  the deterministic 10-clip `dense_test`. Returns [T] int64, 1-based.
  """
  return dense_train(num_frames, num_segments, rng, include_last_start=include_last_start)


def dense_test_starts(num_frames, num_clips=DENSE_TEST_CLIPS):
  """0-based window starts `linspace(0, P - 1, num_clips)` truncated to int; [num_clips]."""
  n = _check_count(num_clips, 'num_clips')
  p = dense_num_starts(num_frames)
  # Upstream: np.linspace(0, P - 1, num=10, dtype=int); values are >= 0, so truncation == floor.
  return np.linspace(0, p - 1, num=n, dtype=np.int64)


def dense_test(num_frames, num_segments, num_clips=DENSE_TEST_CLIPS):
  """Test: `num_clips` evenly spaced windows (identical clips when F <= 64).

  Returns [num_clips * T] int64, clip-major, 1-based.
  """
  f = _check_count(num_frames, 'num_frames')
  t = _check_count(num_segments, 'num_segments')
  starts = dense_test_starts(f, num_clips)  # [num_clips]
  return _one_based(np.concatenate([_dense_clip(f, t, int(s)) for s in starts]))


# ----------------------------------------------------------------------------------------------------
# front door


def _check_options(mode, dense, twice_sample):
  """Mode is known; twice_sample is test-only and never combined with dense sampling."""
  if mode not in MODES:
    raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
  if twice_sample and dense:
    raise ValueError(
        'twice_sample and dense sampling cannot be combined (upstream would sample 10 clips '
        'but expect 20 views; docs/original.md §7.19): choose one of them'
    )
  if twice_sample and mode != 'test':
    raise ValueError(f'twice_sample exists only at test time (mode="test"), got mode={mode!r}')


def num_clips_per_video(mode, *, dense, twice_sample=False, num_clips=DENSE_TEST_CLIPS):
  """Clips `sample_indices` returns per video: 10 (dense test), 2 (twice_sample), else 1."""
  _check_options(mode, dense, twice_sample)
  if mode == 'test' and dense:
    return _check_count(num_clips, 'num_clips')
  return 2 if (mode == 'test' and twice_sample) else 1


def sample_indices(
    num_frames,
    num_segments,
    mode,
    *,
    dense,
    rng=None,
    twice_sample=False,
    num_clips=DENSE_TEST_CLIPS,
    fix_short=False,
    include_last_start=False,
):
  """1-based frame indices of one video as `[clips, T]` int64 (docs/original.md §3.3).

  Args:
    num_frames: F >= 1, frames in the video folder (the list file's count).
    num_segments: T >= 1, frames per clip.
    mode: 'train' (random), 'val' (training-time validation) or 'test' (`test_mode`).
    dense: I3D-style dense sampling (64-frame windows) instead of uniform TSN segments.
    rng: `np.random.Generator`, required for 'train' and for dense 'val' (random there too).
    twice_sample: test only, uniform only; adds the segment-start clip (2 clips).
    num_clips: clips of the dense test protocol (10 upstream).
    fix_short: uniform 'val' only; F <= T uses the segment centres instead of frame 1 (upstream quirk off).
    include_last_start: dense 'train'/'val' only; allow the last window start F - 64 (upstream never
      draws it).
  Returns:
    `[clips, T]` int64: clips = 1, or 2 (twice_sample), or num_clips (dense test).
  """
  f = _check_count(num_frames, 'num_frames')
  t = _check_count(num_segments, 'num_segments')
  _check_options(mode, dense, twice_sample)
  if dense:
    if mode == 'test':
      flat = dense_test(f, t, num_clips)
    else:  # train and val share the random rule
      flat = dense_train(f, t, rng, include_last_start=include_last_start)
  elif mode == 'train':
    flat = tsn_train(f, t, rng)
  elif mode == 'val':
    flat = tsn_val(f, t, fix_short=fix_short)
  else:
    flat = tsn_test(f, t, twice_sample=twice_sample)
  return flat.reshape(-1, t)  # [clips, T]
