"""Synthetic temporal video dataset whose classes can only be told apart by the ORDER of their frames.

    python -m rnl_jax.data.synthetic --out /tmp/synth [--num_train 2400 --num_val 600 --frames 24
                                     --height 64 --width 64 --seed 0 --workers 4
                                     --mp4 --keyframe_interval 30]

writes the TSM frame-folder layout (docs/original.md §3.1):

    DIR/frames/<video_id>/img_00001.jpg ... img_{F:05d}.jpg   (1-based, JPEG quality 90)
    DIR/train.txt, DIR/val.txt                                 lines `<video_id> <num_frames> <label>`
    DIR/classes.txt                                            line i = name of label i
    DIR/synthetic.json                                         the generator settings (checked on re-runs)

and with --mp4 (`generate(videos=True)`) also the same clips as raw videos, for `video.VideoFileSource`:

    DIR/videos/<video_id>.mp4                  H.264 (libx264, yuv420p, B-frames, crf 15), 25 fps, a
                                               keyframe every --keyframe_interval frames
    DIR/train_videos.txt, DIR/val_videos.txt   lines `videos/<video_id>.mp4 <num_frames> <label>`

The mp4 encodes the rendered clip (not the JPEGs); its decoded frames differ from the JPEG frames by
~3 grey levels on average (4:2:0 chroma of the pixel noise, in both).

Classes come in time-reversed pairs (CLASSES): class 2k+1 is class 2k played backwards, exactly --
`render_clip(2k + 1, rng) == render_clip(2k, rng)[::-1]` for two generators in the same state, because the
forward clip (nuisances and pixel noise included) is rendered first and then reversed. Every nuisance
(shape, colours, size, position, background texture, distractor, noise level, speed/amount of change) is
drawn before, and independently of, the direction, and each motion is parametrised symmetrically about the
clip centre (`p(t) = p_mid + rate * (t - (F - 1) / 2)`), so a clip and its reversed twin hold the same
multiset of frames. A model blind to frame order (TSN's average of per-frame scores) therefore sees the same
distribution for both classes of a pair and is capped at chance within a pair (~50 % overall, it can still
tell the pairs apart); a temporal model (TSM) can learn all of them.

Why 24 frames by default: a model sees a SUBSET of the frames, and the argument above needs that subset to
be symmetric under t -> F-1-t. With T segments and F / T = d an integer, TSN's training offsets
t*d + U{0..d-1} always are, its test/validation centres int(d/2 + d*t) only for odd d (docs/original.md
§3.3). F = 24, T = 8 (d = 3) is exact for both; with F = 16 (d = 2) the centres are frames 2, 4, .., 16
(1-based) and the twin shows frames 15, .., 1 of the forward clip, every trajectory shifted by one frame
step, which leaks direction through absolute position/size/opacity near the edges of their ranges
(several % above chance for an order-blind model at evaluation). Motion amounts are set per clip, not per
frame, so F changes only the frame rate.

Each video is a pure function of (seed, split, index): its generator is
`np.random.default_rng([seed, split_id, index])` and its label is `index % NUM_CLASSES` (balanced), so
generation is reproducible, resumable and order-free across worker processes (multiprocessing 'spawn').
Frames are rendered into `frames/.tmp-<pid>-<video_id>` and renamed into place when complete; a re-run
skips videos whose folder exists. Rendering is vectorised NumPy on [F, H, W] arrays; JPEG encoding uses
Pillow. Bytes are reproducible for the same NumPy/Pillow/libjpeg build (transcendental functions may
round differently on other builds).
"""

import collections
import io
import json
import os
import shutil
import time

import numpy as np
from PIL import Image

from rnl_jax import cli
from rnl_jax import fileio
from rnl_jax.errors import UserError

# Line 2k is the forward class, line 2k + 1 its exact time reversal.
CLASSES = (
    'moves_right',
    'moves_left',
    'moves_down',
    'moves_up',
    'rotates_clockwise',
    'rotates_counterclockwise',
    'grows',
    'shrinks',
    'fades_in',
    'fades_out',
    'fills_up',
    'empties',
)
NUM_CLASSES = len(CLASSES)
PAIRS = NUM_CLASSES // 2
SPLITS = {'train': 0, 'val': 1}
FRAME_TEMPLATE = 'img_{:05d}.jpg'
DEFAULT_FRAMES = 24  # = 8 segments x 3: see the module docstring
JPEG_QUALITY = 90
FORMAT_VERSION = 1
_SETTINGS_FILE = 'synthetic.json'
VIDEO_DIR = 'videos'
VIDEO_KEYFRAME_INTERVAL = 30
VIDEO_FPS = 25
VIDEO_CRF = 15  # decoded mp4 frames stay within ~3 grey levels of the JPEG frames on average
VIDEO_PRESET = 'veryfast'  # faster than 'medium', same error (docs/performance.md#synthetic-recipe)

# No shape is rotation-invariant; the largest turn between frames 1/8 of a clip apart (160/8 = 20 degrees)
# stays far below the smallest symmetry angle (90 degrees, the cross).
_SHAPES = ('rectangle', 'ellipse', 'triangle', 'cross')


# ----------------------------------------------------------------------------------------------------
# rendering


def video_rng(seed, split, index):
  """The generator of one video: a pure function of (seed, split, index), independent across videos."""
  return np.random.default_rng([int(seed), SPLITS[split], int(index)])


def video_label(index):
  """Labels cycle through the classes (balanced splits; every pair's twins equally frequent)."""
  return int(index) % NUM_CLASSES


def video_id(split, index):
  return f'{split}_{int(index):06d}'


def _shape_sdf(kind, u, v, a, aspect):
  """Approximate signed distance (pixels, < 0 inside) to a shape of half-length a in local coords u, v."""
  if kind == 0:  # rectangle a x a/aspect
    return np.maximum(np.abs(u) - a, np.abs(v) - a / aspect)
  if kind == 1:  # ellipse: first-order distance (q - 1) / |grad q|
    b = a / aspect
    q = (u / a) ** 2 + (v / b) ** 2
    return (q - 1.0) / (2.0 * np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2) + 1e-6)
  if kind == 2:  # equilateral triangle, circumradius a (inradius a/2), apex along -v
    d = -v - a / 2
    for c, s in ((0.8660254, 0.5), (-0.8660254, 0.5)):
      d = np.maximum(d, c * u + s * v - a / 2)
    return d
  w = a / 3.5  # cross (plus sign) with arms of half-width a/3.5
  au, av = np.abs(u), np.abs(v)
  return np.minimum(np.maximum(au - a, av - w), np.maximum(au - w, av - a))


def _bounding_radius(kind, a, aspect):
  """Radius of a disc around the shape's centre that contains it at every rotation."""
  if kind == 0:
    return a * float(np.hypot(1.0, 1.0 / aspect))
  if kind == 3:
    return a * float(np.hypot(1.0, 1.0 / 3.5))
  return a


def _local(cx, cy, theta, xs, ys):
  """Image coordinates -> the local (u, v) of a shape centred at (cx, cy), rotated by theta (float32)."""
  f32 = lambda x: np.asarray(x, np.float32)  # keeps float64 scalars from promoting the arrays
  dx, dy = xs - f32(cx), ys - f32(cy)
  c, s = f32(np.cos(theta)), f32(np.sin(theta))
  return c * dx + s * dy, c * dy - s * dx


def _shape_alpha(kind, a, aspect, cx, cy, theta, scale, xs, ys):
  """Anti-aliased coverage of a shape; cx, cy, theta, scale broadcast against xs [1, W], ys [H, 1].

  theta rotates the shape's local axes into the image, with image y pointing DOWN, so increasing theta
  turns the shape clockwise on screen.
  """
  u, v = _local(cx, cy, theta, xs, ys)
  u, v = u / scale, v / scale
  return np.clip(0.5 - _shape_sdf(kind, u, v, a, aspect) * scale, 0.0, 1.0)


def _colour_far_from(rng, ref, min_dist):
  """A random RGB colour at least `min_dist` (Euclidean, 0-255) from `ref` (rejection sampling)."""
  for _ in range(64):
    colour = rng.uniform(0.0, 255.0, 3)
    if np.linalg.norm(colour - ref) >= min_dist:
      return colour
  return 255.0 - ref


class _Grid(collections.namedtuple('_Grid', 'f h w m xs ys tc')):
  """A clip's sampling grid: sizes F, H, W and m = min(H, W) (float), pixel centres xs [1, W] and
  ys [H, 1], and time tc [F] centred on the clip middle (float32), so every motion is symmetric."""


def _grid(num_frames, height, width):
  """The `_Grid` of a clip of the given sizes."""
  f, h, w = num_frames, height, width
  ys = np.arange(h, dtype=np.float32)[:, None] + 0.5
  xs = np.arange(w, dtype=np.float32)[None, :] + 0.5
  tc = np.arange(f, dtype=np.float32) - (f - 1) / 2.0  # time centred on the clip middle
  return _Grid(f, h, w, float(min(h, w)), xs, ys, tc)


def _background(rng, g):
  """(background [H, W, 3] float32, its flat colour [3]): a flat colour + a static sum of three
  random gratings + maybe a static distractor shape. The distractor is drawn whether shown or not,
  so the draws that follow do not depend on it."""
  bg_colour = rng.uniform(0.0, 255.0, 3)
  texture = np.zeros((g.h, g.w), np.float32)
  xs, ys, m = g.xs, g.ys, g.m
  for amp, freq, angle, phase in zip(
      rng.uniform(0.0, 1.0, 3),
      rng.uniform(0.05, 0.35, 3) * 64.0 / m,
      rng.uniform(0.0, np.pi, 3),
      rng.uniform(0.0, 2 * np.pi, 3),
  ):
    texture += np.float32(amp) * np.sin(freq * (np.cos(angle) * xs + np.sin(angle) * ys) + phase)
  texture *= np.float32(rng.uniform(0.0, 30.0) / 1.5)
  tint = rng.uniform(0.5, 1.0, 3).astype(np.float32)
  bg = bg_colour.astype(np.float32) + texture[:, :, None] * tint
  has_distractor = rng.uniform() < 0.5
  d_kind, d_size, d_aspect = (
      int(rng.integers(4)),
      rng.uniform(0.06, 0.10) * m,
      rng.uniform(1.0, 2.0),
  )
  d_x, d_y = rng.uniform(0.1, 0.9) * g.w, rng.uniform(0.1, 0.9) * g.h
  d_theta = rng.uniform(0.0, 2 * np.pi)
  d_colour = _colour_far_from(rng, bg_colour, 60.0)
  if has_distractor:
    d_alpha = _shape_alpha(d_kind, d_size, d_aspect, d_x, d_y, d_theta, 1.0, xs, ys)[:, :, None]
    bg = bg * (1.0 - d_alpha) + d_colour.astype(np.float32) * d_alpha
  return bg, bg_colour


class _Object(
    collections.namedtuple(
        '_Object', 'kind a aspect theta0 colour sigma amount lo hi u_x u_y radius margin'
    )
):
  """The object's nuisances, drawn identically for every pair: shape kind, half-length a and aspect,
  rotation theta0, colour, pixel-noise sigma, the amount of change (speed) in [0, 1), the opacity
  / fill-level range lo..hi, the centre as quantiles u_x, u_y of its allowed range, its bounding
  radius and the margin that keeps it inside a centre crop."""

  def centre(self, g, reach_x, reach_y):
    """Object centre keeping a disc of the given reach inside the frame (else the frame centre)."""
    lo_x, hi_x = reach_x, g.w - reach_x
    lo_y, hi_y = reach_y, g.h - reach_y
    cx = lo_x + self.u_x * (hi_x - lo_x) if hi_x > lo_x else g.w / 2.0
    cy = lo_y + self.u_y * (hi_y - lo_y) if hi_y > lo_y else g.h / 2.0
    return cx, cy


def _draw_object(rng, g, bg_colour):
  """The `_Object` of a clip; its colour is kept far from the background's."""
  kind = int(rng.integers(len(_SHAPES)))
  a = rng.uniform(0.11, 0.16) * g.m
  aspect = rng.uniform(1.4, 2.2)
  theta0 = rng.uniform(0.0, 2 * np.pi)
  colour = _colour_far_from(rng, bg_colour, 110.0)
  sigma = rng.uniform(0.0, 6.0)
  amount = rng.uniform()  # how much change over the clip (speed), mapped into each pair's range
  lo, hi = rng.uniform(0.0, 0.1), rng.uniform(0.9, 1.0)  # opacity / fill-level range (pairs 4, 5)
  u_x, u_y = rng.uniform(), rng.uniform()  # centre, as a quantile of the allowed range
  return _Object(
      kind,
      a,
      aspect,
      theta0,
      colour,
      sigma,
      amount,
      lo,
      hi,
      u_x,
      u_y,
      radius=_bounding_radius(kind, a, aspect),
      margin=0.06 * g.m,
  )  # keeps the object inside a centre crop of ~88 % of the frame


def _alpha_moves(pair, o, g):
  """[F, H, W] alpha of pairs 0 and 1: moves right / moves down (reversed: left / up)."""
  travel = (0.30 + 0.18 * o.amount) * g.m
  along = np.float32(travel / (g.f - 1)) * g.tc  # [F], symmetric about 0
  if pair == 0:
    cx, cy = o.centre(g, o.radius + o.margin + travel / 2, o.radius + o.margin)
    px, py = cx + along, np.full(g.f, cy, np.float32)
  else:
    cx, cy = o.centre(g, o.radius + o.margin, o.radius + o.margin + travel / 2)
    px, py = np.full(g.f, cx, np.float32), cy + along
  return _shape_alpha(
      o.kind, o.a, o.aspect, px[:, None, None], py[:, None, None], o.theta0, 1.0, g.xs, g.ys
  )


def _alpha_rotates(pair, o, g):
  """[F, H, W] alpha of pair 2: rotates clockwise (reversed: counterclockwise)."""
  del pair
  total = np.deg2rad(100.0 + 60.0 * o.amount)
  theta = (o.theta0 + np.float32(total / (g.f - 1)) * g.tc).astype(np.float32)[:, None, None]
  cx, cy = o.centre(g, o.radius + o.margin, o.radius + o.margin)
  return _shape_alpha(o.kind, o.a, o.aspect, cx, cy, theta, 1.0, g.xs, g.ys)


def _alpha_grows(pair, o, g):
  """[F, H, W] alpha of pair 3: grows (reversed: shrinks), scale log-linear in time, 1 at the clip
  middle."""
  del pair
  ratio = 2.0 + o.amount
  scale = np.exp(np.float32(np.log(ratio) / (g.f - 1)) * g.tc).astype(np.float32)[:, None, None]
  reach = o.radius * np.sqrt(ratio) + o.margin
  cx, cy = o.centre(g, reach, reach)
  return _shape_alpha(o.kind, o.a, o.aspect, cx, cy, o.theta0, scale, g.xs, g.ys)


def _alpha_fades(pair, o, g):
  """[F, H, W] alpha of pair 4: fades in (reversed: fades out), opacity linear from lo to hi."""
  del pair
  cx, cy = o.centre(g, o.radius + o.margin, o.radius + o.margin)
  opacity = ((o.lo + o.hi) / 2 + np.float32((o.hi - o.lo) / (g.f - 1)) * g.tc).astype(np.float32)
  alpha = _shape_alpha(o.kind, o.a, o.aspect, cx, cy, o.theta0, 1.0, g.xs, g.ys)
  return alpha[None] * opacity[:, None, None]


def _alpha_fills(pair, o, g):
  """[F, H, W] alpha of pair 5: fills up (reversed: empties), a 1.25x larger shape's outline and its
  interior filled below a surface line placed so that the filled AREA grows linearly in time."""
  del pair
  a, radius = o.a * 1.25, o.radius * 1.25
  cx, cy = o.centre(g, radius + o.margin, radius + o.margin)
  dist = _shape_sdf(o.kind, *_local(cx, cy, o.theta0, g.xs, g.ys), a, o.aspect)  # [H, W]
  ring = np.clip(1.0 - np.abs(dist), 0.0, 1.0)  # 1-px outline, always visible
  inside = np.clip(0.5 - dist, 0.0, 1.0) * (1.0 - ring)  # the interior the fill shows in
  # The surface line L fills rows below it, row y (centre y + 0.5) by clip(y + 1 - L, 0, 1), so the
  # filled area A(L) is piecewise linear with A(k) = area of rows >= k; invert it so that the filled
  # AREA (not height) grows linearly: a constant visible change per frame whatever the shape.
  row_area = inside.sum(axis=1, dtype=np.float64)  # [H]
  area_below = np.cumsum(row_area[::-1])[::-1]  # A(k), k = 0 .. H-1
  area_below = np.append(area_below, 0.0)  # A(H) = 0
  level = (o.lo + o.hi) / 2 + (o.hi - o.lo) / (g.f - 1) * g.tc.astype(np.float64)  # filled fraction
  line = np.interp(level * area_below[0], area_below[::-1], np.arange(g.h + 1.0)[::-1])  # [F] rows
  below = np.clip(g.ys[None] + 0.5 - line[:, None, None].astype(np.float32), 0.0, 1.0)  # [F, H, 1]
  return ring[None] + inside[None] * below


# The object's alpha of each pair's forward class.
_PAIR_ALPHA = (_alpha_moves, _alpha_moves, _alpha_rotates, _alpha_grows, _alpha_fades, _alpha_fills)


def _forward_layers(pair, rng, num_frames, height, width):
  """Layers of the forward clip of a pair (class 2*pair): background [H, W, 3], object alpha
  [F, H, W], object colour [3] and pixel-noise sigma. Nuisances are drawn first, identically for
  every pair (background, then the object), then the pair's motion renders the alpha.
  """
  g = _grid(num_frames, height, width)
  bg, bg_colour = _background(rng, g)
  o = _draw_object(rng, g, bg_colour)
  if pair not in range(len(_PAIR_ALPHA)):
    raise ValueError(f'pair must be in [0, {PAIRS}), got {pair}')
  alpha = _PAIR_ALPHA[pair](pair, o, g)
  return bg.astype(np.float32), alpha.astype(np.float32), o.colour.astype(np.float32), o.sigma


def render_clip(label, rng, num_frames=DEFAULT_FRAMES, height=64, width=64):
  """uint8 [F, H, W, 3] clip of class `label`, a pure function of (label, generator state, sizes).

  Odd labels are the forward clip of their pair reversed in time, so for two generators in the same state
  `render_clip(2k + 1, rng_a) == render_clip(2k, rng_b)[::-1]` exactly.
  """
  label = int(label)
  if not 0 <= label < NUM_CLASSES:
    raise ValueError(f'label must be in [0, {NUM_CLASSES}), got {label}')
  if num_frames < 2 or height < 16 or width < 16:
    raise ValueError(
        f'need num_frames >= 2 and height, width >= 16, got {num_frames}, {height}, {width}'
    )
  if not isinstance(rng, np.random.Generator):
    raise ValueError(f'rng must be a numpy.random.Generator, got {type(rng).__name__}')
  pair, reverse = divmod(label, 2)
  bg, alpha, colour, sigma = _forward_layers(pair, rng, num_frames, height, width)
  alpha = alpha[..., None]
  clip = bg[None] + alpha * (colour - bg[None])  # [F, H, W, 3]
  # pixel noise: sum of two uniform bytes (triangular, std 104.5 -> sigma), cheaper than Gaussian
  pair_bytes = np.frombuffer(rng.bytes(2 * clip.size), np.uint8).reshape((2,) + clip.shape)
  noise = pair_bytes[0].astype(np.float32) + pair_bytes[1]
  k = np.float32(sigma / 104.5)
  clip += noise * k - 255.0 * k
  clip = (np.clip(clip, 0.0, 255.0) + 0.5).astype(np.uint8)
  return np.ascontiguousarray(clip[::-1]) if reverse else clip


# ----------------------------------------------------------------------------------------------------
# writing


def encode_jpeg(frame, quality=JPEG_QUALITY):
  """JPEG bytes of a uint8 [H, W, 3] frame (Pillow, default 4:2:0 chroma subsampling)."""
  buf = io.BytesIO()
  Image.fromarray(frame).save(buf, format='JPEG', quality=quality)
  return buf.getvalue()


def _is_complete(folder, num_frames):
  """Whether the frame folder is complete: its last frame is written last (see _write_frames)."""
  return fileio.isfile(os.path.join(folder, FRAME_TEMPLATE.format(num_frames)))


def _video_path(videos_dir, vid):
  return os.path.join(videos_dir, f'{vid}.mp4')


def _write_mp4(videos_dir, vid, clip, keyframe_interval):
  """Encodes one clip to videos/<vid>.mp4 atomically (temp file + os.replace)."""
  from rnl_jax.data import video  # pylint: disable=g-import-not-at-top  (PyAV only when asked for)

  final = _video_path(videos_dir, vid)
  with fileio.atomic_path(final, fileio.temp_sibling(final)) as tmp:  # .tmp-<pid>-<vid>.mp4
    video.write_video(
        tmp,
        clip,
        fps=VIDEO_FPS,
        keyframe_interval=keyframe_interval,
        crf=VIDEO_CRF,
        preset=VIDEO_PRESET,
    )


def _make_video(task):
  """Renders and writes one video atomically; returns True if written, False if it already existed.

  task = (frames_dir, split, index, seed, num_frames, height, width, quality[, videos_dir,
  keyframe_interval]): with the last two, the clip is also written as an mp4 (if missing). Module-level
  and argument-only so that 'spawn' workers can run it.
  """
  frames_dir, split, index, seed, num_frames, height, width, quality = task[:8]
  videos_dir, keyframe_interval = task[8:] if len(task) > 8 else (None, None)
  vid = video_id(split, index)
  final = os.path.join(frames_dir, vid)
  need_mp4 = videos_dir is not None and not fileio.isfile(_video_path(videos_dir, vid))
  frames_done = _is_complete(final, num_frames)
  if frames_done and not need_mp4:
    return False
  clip = render_clip(video_label(index), video_rng(seed, split, index), num_frames, height, width)
  if need_mp4:
    _write_mp4(videos_dir, vid, clip, keyframe_interval)
  if frames_done:
    return True
  return _write_frames(final, clip, quality)


def _write_frames(final, clip, quality):
  """Writes the frame folder `final` of `clip`; returns False if another process finished it first.

  Locally: a temporary folder renamed into place, so a folder is complete or absent. In a bucket
  (no rename): the frames uploaded in order into `final`, the last one last, so `_is_complete`
  (the last frame exists) still means complete; an interrupted folder is rewritten on a re-run.
  """
  num_frames = len(clip)
  if fileio.is_remote(final):
    for t in range(num_frames):
      with fileio.open(os.path.join(final, FRAME_TEMPLATE.format(t + 1)), 'wb') as f:
        f.write(encode_jpeg(clip[t], quality))
    return True
  tmp = fileio.temp_sibling(final)  # frames/.tmp-<pid>-<vid>
  os.makedirs(tmp)
  for t in range(num_frames):
    with open(os.path.join(tmp, FRAME_TEMPLATE.format(t + 1)), 'wb') as f:
      f.write(encode_jpeg(clip[t], quality))
  if os.path.isdir(final):
    if _is_complete(final, num_frames):  # another process finished it meanwhile
      shutil.rmtree(tmp)
      return False
    shutil.rmtree(final)  # an incomplete folder not written by this module (e.g. a partial copy)
  try:
    os.rename(tmp, final)
  except OSError:  # another process finished the same video first
    shutil.rmtree(tmp, ignore_errors=True)
    if not _is_complete(final, num_frames):
      raise
    return False
  return True


class SyntheticError(UserError, ValueError):
  """Settings `generate` cannot use, or an output folder generated with other settings."""


def generate(
    out_dir,
    num_train,
    num_val,
    num_frames=DEFAULT_FRAMES,
    height=64,
    width=64,
    seed=0,
    workers=1,
    quality=JPEG_QUALITY,
    verbose=False,
    videos=False,
    keyframe_interval=VIDEO_KEYFRAME_INTERVAL,
):
  """Writes (or completes) the dataset in `out_dir`; returns a summary dict.

  Videos `train_000000 ..` and `val_000000 ..` with balanced labels; existing complete videos are kept, so
  a re-run (or a larger num_train) only renders what is missing. Raises ValueError if `out_dir` holds a
  dataset generated with other settings (seed, sizes, quality, and the video settings). workers > 1 uses
  'spawn' processes: call it from under `if __name__ == '__main__':` in scripts.

  videos=True also writes `videos/<video_id>.mp4` (a keyframe every `keyframe_interval` frames; needs
  even height and width) and `{split}_videos.txt` (see the module docstring); a re-run with videos=True
  on a frames-only dataset adds the mp4s.

  Phases: check the arguments, check (or record) the settings, render what is missing, write the
  lists.
  """
  _check_generate_args(num_train, num_val, num_frames, height, width, videos, keyframe_interval)
  start = time.perf_counter()
  out_dir = fileio.absolute(out_dir)  # a local folder or a bucket URL
  frames_dir = os.path.join(out_dir, 'frames')
  fileio.makedirs(frames_dir)
  settings, video_settings = _settings(
      seed, num_frames, height, width, quality, videos, keyframe_interval
  )
  _check_settings(out_dir, settings, video_settings)
  fileio.remove_stale_temps(frames_dir)
  videos_dir = os.path.join(out_dir, VIDEO_DIR)
  if videos:
    fileio.makedirs(videos_dir)
    fileio.remove_stale_temps(videos_dir)

  splits = {'train': int(num_train), 'val': int(num_val)}
  extra = (videos_dir, int(keyframe_interval)) if videos else ()
  common = (int(seed), int(num_frames), int(height), int(width), int(quality))
  tasks = [(frames_dir, split, i) + common + extra for split, n in splits.items() for i in range(n)]
  generated = _render_missing(
      tasks, frames_dir, videos_dir if videos else None, num_frames, workers, verbose
  )
  _write_lists(out_dir, splits, num_frames, videos)
  seconds = time.perf_counter() - start
  summary = {
      'out_dir': out_dir,
      'num_classes': NUM_CLASSES,
      'classes': list(CLASSES),
      'num_train': splits['train'],
      'num_val': splits['val'],
      'num_frames': int(num_frames),
      'height': int(height),
      'width': int(width),
      'generated': generated,
      'skipped': len(tasks) - generated,
      'seconds': round(seconds, 3),
      'clips_per_minute': round(60.0 * generated / seconds, 1) if generated else None,
  }
  if videos:
    summary['videos'] = videos_dir
  return summary


def _settings(seed, num_frames, height, width, quality, videos, keyframe_interval):
  """(settings, video settings or None): what decides the dataset's bytes, recorded in
  synthetic.json and checked on a re-run (`_check_settings`); the mp4 settings only if `videos`."""
  settings = {
      'format_version': FORMAT_VERSION,
      'seed': int(seed),
      'num_frames': int(num_frames),
      'height': int(height),
      'width': int(width),
      'quality': int(quality),
      'classes': list(CLASSES),
  }
  # The mp4 settings live under 'video', added by the first run that writes videos.
  video_settings = (
      {
          'codec': 'libx264',
          'fps': VIDEO_FPS,
          'crf': VIDEO_CRF,
          'preset': VIDEO_PRESET,
          'keyframe_interval': int(keyframe_interval),
      }
      if videos
      else None
  )
  return settings, video_settings


def _check_generate_args(num_train, num_val, num_frames, height, width, videos, keyframe_interval):
  """SyntheticError for settings `generate` cannot use, before anything is written."""
  for name, value in (('num_train', num_train), ('num_val', num_val)):
    if int(value) < 0:
      raise SyntheticError(f'{name} must be >= 0, got {value}')
  if num_frames < 2 or height < 16 or width < 16:
    raise SyntheticError(
        f'need num_frames >= 2 and height, width >= 16, got {num_frames}, ' f'{height}, {width}'
    )
  if videos and (height % 2 or width % 2):
    raise SyntheticError(f'mp4 videos (4:2:0) need an even height and width, got {height}x{width}')
  if videos and int(keyframe_interval) < 1:
    raise SyntheticError(f'keyframe_interval must be >= 1, got {keyframe_interval}')


def _check_settings(out_dir, settings, video_settings):
  """Records the settings in out_dir/synthetic.json, or checks them against the recorded ones.

  A folder generated with other settings is a SyntheticError listing (existing, requested) per key,
  so videos of two settings never mix. The mp4 settings (`video_settings`, None without videos) are
  compared only where recorded: the first run that writes videos adds them.
  """
  settings_path = os.path.join(out_dir, _SETTINGS_FILE)
  videos = video_settings is not None
  if fileio.isfile(settings_path):
    old = json.loads(fileio.read_text(settings_path))
    changed = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
    if videos and 'video' in old and old['video'] != video_settings:
      changed['video'] = (old['video'], video_settings)
    if changed:
      raise SyntheticError(
          f'{out_dir} holds a dataset generated with other settings (key: '
          f'(existing, requested)) {changed}; use a new directory'
      )
    if videos and 'video' not in old:
      fileio.write_text(settings_path, json.dumps(dict(old, video=video_settings), indent=1) + '\n')
  else:
    fileio.write_text(
        settings_path,
        json.dumps(dict(settings, video=video_settings) if videos else settings, indent=1) + '\n',
    )


def _render_missing(tasks, frames_dir, videos_dir, num_frames, workers, verbose):
  """Renders the videos of `tasks` whose frames (or, with a videos_dir, mp4) are missing, in
  `workers` processes; returns how many were written (a line every 1000 with verbose)."""

  def missing(t):
    vid = video_id(t[1], t[2])
    return not _is_complete(os.path.join(frames_dir, vid), num_frames) or (
        videos_dir is not None and not fileio.isfile(_video_path(videos_dir, vid))
    )

  todo = [t for t in tasks if missing(t)]
  generated = 0
  results = fileio.map_unordered(_make_video, todo, int(workers), tasks_per_worker=4, max_chunk=32)
  for i, written in enumerate(results):
    generated += written
    if verbose and (i + 1) % 1000 == 0:
      print(f'{i + 1}/{len(todo)} videos', flush=True)
  return generated


def _write_lists(out_dir, splits, num_frames, videos):
  """Writes {split}.txt (and with videos {split}_videos.txt) for every split, and classes.txt."""
  for split, n in splits.items():
    lines = ''.join(f'{video_id(split, i)} {num_frames} {video_label(i)}\n' for i in range(n))
    fileio.write_text(os.path.join(out_dir, f'{split}.txt'), lines)
    if videos:
      lines = ''.join(
          f'{VIDEO_DIR}/{video_id(split, i)}.mp4 {num_frames} {video_label(i)}\n' for i in range(n)
      )
      fileio.write_text(os.path.join(out_dir, f'{split}_videos.txt'), lines)
  fileio.write_text(os.path.join(out_dir, 'classes.txt'), ''.join(c + '\n' for c in CLASSES))


def main(argv=None):
  parser = cli.ArgumentParser(
      prog='python -m rnl_jax.data.synthetic', description=__doc__.split('\n', 1)[0]
  )
  parser.add_argument('--out', required=True, help='output directory')
  parser.add_argument('--num_train', type=int, default=2400)
  parser.add_argument('--num_val', type=int, default=600)
  parser.add_argument(
      '--frames',
      type=int,
      default=DEFAULT_FRAMES,
      help='frames per video (an odd multiple of the segment count keeps twins exact)',
  )
  parser.add_argument('--height', type=int, default=64)
  parser.add_argument('--width', type=int, default=64)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--workers', type=int, default=1, help='processes (multiprocessing, spawn)')
  parser.add_argument('--quality', type=int, default=JPEG_QUALITY, help='JPEG quality')
  parser.add_argument(
      '--mp4',
      action='store_true',
      help='also write videos/<id>.mp4 and {train,val}_videos.txt (H.264)',
  )
  parser.add_argument(
      '--keyframe_interval',
      type=int,
      default=VIDEO_KEYFRAME_INTERVAL,
      help='frames between mp4 keyframes (with --mp4)',
  )
  args = parser.parse_args(argv)
  # Import ourselves by name: run as `-m`, this file is `__main__`, and spawn workers must find
  # `_make_video` under the package path.
  from rnl_jax.data import synthetic  # pylint: disable=g-import-not-at-top,import-self

  with cli.user_errors(args.debug):  # SyntheticError: exit 2
    summary = synthetic.generate(
        args.out,
        args.num_train,
        args.num_val,
        num_frames=args.frames,
        height=args.height,
        width=args.width,
        seed=args.seed,
        workers=args.workers,
        quality=args.quality,
        verbose=True,
        videos=args.mp4,
        keyframe_interval=args.keyframe_interval,
    )
  print(json.dumps({k: v for k, v in summary.items() if k != 'classes'}))


if __name__ == '__main__':
  main()
