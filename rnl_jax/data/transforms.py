"""Clip transforms of the original `ops/transforms.py` (docs/original.md §4), uint8 RGB, NHWC.

A clip is a sequence of frames `[T, H, W, 3]` uint8 (an array, or a list of equally sized
`[H, W, 3]` arrays straight from a JPEG decoder). Every "group" transform draws its random choices
once per clip and applies them to all frames. Outputs stay uint8: ToTorchFormatTensor and
GroupNormalize (docs/original.md §4.4) happen on the device.

* Training (4.1): GroupMultiScaleCrop(224, (1, .875, .75, .66), max_distort=1, fix_crop,
  more_fix_crop) on the frames as stored, then GroupRandomHorizontalFlip (off for
  Something-Something / Jester). `multiscale_crop_params` reproduces the size and offset rules
  exactly; randomness comes from a `np.random.Generator` (the original's Python `random` stream is
  not reproducible anyway, only its distribution is). The default resize='cv2' uses OpenCV
  (INTER_AREA when shrinking, INTER_LINEAR when enlarging; releases the GIL). It is *not*
  pixel-identical to Pillow's antialiased bilinear filter, which training does not need: the crop,
  scale and flip semantics are the same, and the mean |diff| to Pillow is 0.2-1.1 grey levels on
  textured frames. It is faster than Pillow, less so on sources whose shrink ratio is not an
  integer (area filtering is slow there); resize='cv2_linear' skips the antialiasing (faster
  still, mean |diff| up to ~2.8; docs/performance.md#input-decoding). resize='pil' gives the
  original's pixels.
  In loader worker processes call `cv2.setNumThreads(1)` (OpenCV's own pool oversubscribes).
* Validation (4.2) and testing (4.3): GroupScale(256) (torchvision `Resize(256)` on PIL images),
  then a centre crop, the full-res three-crop or the five/ten-crop oversampling. Pixel-identical to
  the original: the rescale is Pillow's own `Image.resize(..., BILINEAR)`, and crops and mirrors
  are exact pixel copies (a PIL crop / FLIP_LEFT_RIGHT moves pixels without touching them).

Crops follow PIL's `Image.crop` semantics: boxes reaching outside the frame are zero-filled (this
only happens in training for a short side of 222 or 223 px, where a 224 crop size is snapped in).
"""

import cv2
import numpy as np
from PIL import Image

SCALES = (1, 0.875, 0.75, 0.66)
INPUT_SIZE = 224
SCALE_SIZE = 256
RESIZE_METHODS = ('cv2', 'cv2_linear', 'pil')

# GroupMultiScaleCrop.fill_fix_offset: (a, b) multipliers of (w_step, h_step), in the original's order.
_FIX_OFFSETS_5 = ((0, 0), (4, 0), (0, 4), (4, 4), (2, 2))  # UL, UR, LL, LR, centre
_FIX_OFFSETS_MORE = (
    (0, 2),
    (4, 2),
    (2, 4),
    (2, 0),  # centre left/right, lower/upper centre
    (1, 1),
    (3, 1),
    (1, 3),
    (3, 3),
)  # quarter points
# GroupFullResSample: left, right, centre (y is always 2 * h_step: portrait frames get 3 equal crops).
_FULL_RES_OFFSETS = ((0, 2), (4, 2), (2, 2))


# ----------------------------------------------------------------------------------------------------
# Geometry (pure integer arithmetic, exactly the original's expressions)


def multiscale_crop_sizes(base_size, input_size=INPUT_SIZE, scales=SCALES):
  """Candidate crop sizes `int(base * r)`, each snapped to `input_size` when within 2 px of it."""
  sizes = [int(base_size * r) for r in scales]
  return [input_size if abs(c - input_size) < 3 else c for c in sizes]


def multiscale_crop_pairs(width, height, input_size=INPUT_SIZE, scales=SCALES, max_distort=1):
  """(crop_w, crop_h) candidates: (c_j, c_i) for |i - j| <= max_distort, in the original's list order.

  Duplicate pairs (possible when snapping merges sizes) are kept, as upstream's `random.choice` weights
  them that way.
  """
  sizes = multiscale_crop_sizes(min(width, height), input_size, scales)
  return [
      (cw, ch)
      for i, ch in enumerate(sizes)
      for j, cw in enumerate(sizes)
      if abs(i - j) <= max_distort
  ]


def fixed_crop_offsets(width, height, crop_w, crop_h, more_fix_crop=True):
  """`fill_fix_offset`: 5 (or 13 with more_fix_crop) (x, y) grid points, steps (size - crop) // 4."""
  w_step = (width - crop_w) // 4
  h_step = (height - crop_h) // 4
  grid = _FIX_OFFSETS_5 + (_FIX_OFFSETS_MORE if more_fix_crop else ())
  return [(a * w_step, b * h_step) for a, b in grid]


def multiscale_crop_params(
    width,
    height,
    rng,
    input_size=INPUT_SIZE,
    scales=SCALES,
    max_distort=1,
    fix_crop=True,
    more_fix_crop=True,
):
  """GroupMultiScaleCrop's random crop box for a `width` x `height` frame: (x, y, crop_w, crop_h).

  Uniform choice of a size pair, then (fix_crop) uniform choice among the fixed grid points, or
  (not fix_crop) uniform integer offsets in [0, size - crop] like Python's `random.randint`.
  """
  pairs = multiscale_crop_pairs(width, height, input_size, scales, max_distort)
  crop_w, crop_h = pairs[rng.integers(len(pairs))]
  if fix_crop:
    offsets = fixed_crop_offsets(width, height, crop_w, crop_h, more_fix_crop)
    x, y = offsets[rng.integers(len(offsets))]
  else:
    x = int(rng.integers(0, width - crop_w + 1))
    y = int(rng.integers(0, height - crop_h + 1))
  return int(x), int(y), int(crop_w), int(crop_h)


def scaled_size(width, height, size=SCALE_SIZE):
  """torchvision `Resize(size)` output (w, h): short side -> size, long side int(size * long / short)."""
  if width <= height:
    return size, int(size * height / width)
  return int(size * width / height), size


def center_crop_offset(width, height, crop_w, crop_h):
  """torchvision CenterCrop's (x, y): int(round((size - crop) / 2.)), Python 3 round (half to even)."""
  return int(round((width - crop_w) / 2.0)), int(round((height - crop_h) / 2.0))


def full_res_offsets(width, height, crop):
  """GroupFullResSample's 3 offsets (left, right, centre); y = 2 * h_step for all three."""
  w_step, h_step = (width - crop) // 4, (height - crop) // 4
  return [(a * w_step, b * h_step) for a, b in _FULL_RES_OFFSETS]


def oversample_offsets(width, height, crop):
  """GroupOverSample's 5 offsets: UL, UR, LL, LR, centre (`fill_fix_offset(False, ...)`)."""
  return fixed_crop_offsets(width, height, crop, crop, more_fix_crop=False)


# ----------------------------------------------------------------------------------------------------
# Pixel operations


def _frame_hw(frames):
  return frames[0].shape[0], frames[0].shape[1]


def crop_frame(frame, x, y, crop_w, crop_h):
  """[H, W, C] -> [crop_h, crop_w, C]: PIL `crop((x, y, x + w, y + h))`, zero-filled outside the frame.

  A view of the input when the box lies inside the frame.
  """
  h, w = frame.shape[:2]
  if x >= 0 and y >= 0 and x + crop_w <= w and y + crop_h <= h:
    return frame[y : y + crop_h, x : x + crop_w]
  out = np.zeros((crop_h, crop_w) + frame.shape[2:], frame.dtype)
  x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + crop_w, w), min(y + crop_h, h)
  if x1 > x0 and y1 > y0:
    out[y0 - y : y1 - y, x0 - x : x1 - x] = frame[y0:y1, x0:x1]
  return out


def crop_frames(frames, x, y, crop_w, crop_h):
  """[T, H, W, C] (array or list) -> [T, crop_h, crop_w, C] uint8, same box for every frame."""
  if isinstance(frames, np.ndarray):
    h, w = frames.shape[1:3]
    if x >= 0 and y >= 0 and x + crop_w <= w and y + crop_h <= h:
      return frames[:, y : y + crop_h, x : x + crop_w]
  return np.stack([crop_frame(f, x, y, crop_w, crop_h) for f in frames])


def mirror(frame, out=None):
  """[H, W, C] -> [H, W, C] left-right mirror (PIL FLIP_LEFT_RIGHT / ImageOps.mirror).

  cv2.flip: an exact pixel permutation, far faster than copying a `[:, ::-1]` view of RGB data.
  """
  return cv2.flip(frame, 1, dst=out)


def pil_resize(frame, width, height):
  """[H, W, 3] uint8 -> [height, width, 3]: Pillow `Image.resize((w, h), BILINEAR)` (antialiased).

  Pillow releases the GIL while resampling, so threads parallelise it.
  """
  img = Image.fromarray(np.ascontiguousarray(frame))
  return np.asarray(img.resize((width, height), Image.Resampling.BILINEAR))


def cv2_resize(frame, width, height, out=None, antialias=True):
  """[H, W, 3] uint8 -> [height, width, 3]: fast approximation of Pillow's bilinear resize.

  antialias=True: INTER_AREA (box filtering, the closest match to Pillow's antialiased filter) when the
  crop has more pixels than the output, else INTER_LINEAR (for enlargement Pillow's triangle filter is
  half-pixel bilinear interpolation, which INTER_LINEAR matches to within 1 grey level). antialias=False:
  always INTER_LINEAR (much faster when shrinking, but aliased). Views with a row stride are fine.
  """
  h, w = frame.shape[:2]
  shrink = antialias and h * w > width * height
  interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
  return cv2.resize(frame, (width, height), dst=out, interpolation=interp)


def scale_short_side(frames, size=SCALE_SIZE):
  """GroupScale(size): [T, H, W, 3] -> [T, H', W', 3] with Pillow bilinear, short side -> size.

  A no-op (returns the frames as given) when the short side already equals size, like torchvision.
  """
  h, w = _frame_hw(frames)
  new_w, new_h = scaled_size(w, h, size)
  if (new_w, new_h) == (w, h):
    return frames
  return np.stack([pil_resize(f, new_w, new_h) for f in frames])


# ----------------------------------------------------------------------------------------------------
# Training


def sample_train_params(
    width,
    height,
    rng,
    flip=True,
    input_size=INPUT_SIZE,
    scales=SCALES,
    max_distort=1,
    fix_crop=True,
    more_fix_crop=True,
):
  """Random choices of one training clip: (x, y, crop_w, crop_h, flipped).

  Draw order: size pair, offset, then flip (`rng.random() < 0.5`, only drawn when flip is enabled).
  """
  x, y, cw, ch = multiscale_crop_params(
      width, height, rng, input_size, scales, max_distort, fix_crop, more_fix_crop
  )
  flipped = bool(flip and rng.random() < 0.5)
  return x, y, cw, ch, flipped


def apply_train_params(frames, params, input_size=INPUT_SIZE, resize='cv2'):
  """[T, H, W, 3] -> [T, input_size, input_size, 3] uint8: crop, resize, optional mirror of all frames.

  resize: 'cv2' (OpenCV, area filter when shrinking), 'cv2_linear' (OpenCV bilinear only, fastest,
  aliased when shrinking) or 'pil' (the original's pixels).
  """
  x, y, cw, ch, flipped = params
  if resize not in RESIZE_METHODS:
    raise ValueError(f'resize must be one of {RESIZE_METHODS}, got {resize!r}')
  out = np.empty((len(frames), input_size, input_size, 3), np.uint8)
  tmp = np.empty((input_size, input_size, 3), np.uint8) if flipped else None
  for t, frame in enumerate(frames):
    crop = crop_frame(frame, x, y, cw, ch)
    dst = tmp if flipped else out[t]
    if resize == 'pil':
      dst[...] = pil_resize(crop, input_size, input_size)
    else:
      cv2_resize(crop, input_size, input_size, out=dst, antialias=resize == 'cv2')
    if flipped:
      mirror(dst, out=out[t])
  return out


def train_views(
    frames,
    rng,
    flip=True,
    input_size=INPUT_SIZE,
    scales=SCALES,
    max_distort=1,
    fix_crop=True,
    more_fix_crop=True,
    resize='cv2',
):
  """Training augmentation of one clip: [T, H, W, 3] -> [T, input_size, input_size, 3] uint8.

  GroupMultiScaleCrop on the frames as stored, then GroupRandomHorizontalFlip (p = 0.5) unless
  flip=False (Something-Something, Jester). One crop box and one flip decision for the whole clip.
  The default resize='cv2' matches Pillow only approximately (mean |diff| <= ~1 grey level, see the
  module docstring); the crop, scale and flip distribution is the original's.
  """
  h, w = _frame_hw(frames)
  params = sample_train_params(
      w, h, rng, flip, input_size, scales, max_distort, fix_crop, more_fix_crop
  )
  return apply_train_params(frames, params, input_size, resize)


# ----------------------------------------------------------------------------------------------------
# Validation and test (pixel-identical to the original)


def val_view(frames, scale=SCALE_SIZE, crop=INPUT_SIZE):
  """GroupScale(scale) + GroupCenterCrop(crop): [T, H, W, 3] -> [T, crop, crop, 3] uint8."""
  scaled = scale_short_side(frames, scale)
  h, w = _frame_hw(scaled)
  x, y = center_crop_offset(w, h, crop, crop)
  return np.ascontiguousarray(crop_frames(scaled, x, y, crop, crop))


TEST_CROPS = (1, 3, 5, 10)  # the original's --test_crops: centre, full-res strip, over-sampling


def multi_crop_offsets(width, height, num_crops, crop):
  """Offsets (x, y) of the test crops on a rescaled frame, and whether each is mirrored.

  1: centre crop; 3: GroupFullResSample (left, right, centre); 5: GroupOverSample without flip;
  10: GroupOverSample with flip (each of the 5 crops immediately followed by its mirror).
  Returns a list of (x, y, mirrored).
  """
  if num_crops == 1:
    return [center_crop_offset(width, height, crop, crop) + (False,)]
  if num_crops == 3:
    return [(x, y, False) for x, y in full_res_offsets(width, height, crop)]
  if num_crops in (5, 10):
    views = []
    for x, y in oversample_offsets(width, height, crop):
      views.append((x, y, False))
      if num_crops == 10:
        views.append((x, y, True))
    return views
  raise ValueError(f'num_crops must be 1, 3, 5 or 10, got {num_crops}')


def test_views(frames, num_crops=1, full_res=False, scale=SCALE_SIZE, crop=INPUT_SIZE):
  """Test views (docs/original.md §4.3): [N, H, W, 3] -> [num_crops, N, S, S, 3] uint8, crop-major.

  S = scale (256) if full_res else crop (224). The frames are first scaled to short side `scale`.
  N may hold several clips (clip-major, then segment, as sampled); reshape the result to
  `[num_crops * clips, T, S, S, 3]` to get the original's view order (crop, then clip, then segment).
  """
  size = scale if full_res else crop
  scaled = scale_short_side(frames, scale)
  h, w = _frame_hw(scaled)
  views = multi_crop_offsets(w, h, num_crops, size)
  out = np.empty((len(views), len(scaled), size, size, 3), np.uint8)
  for v, (x, y, mirrored) in enumerate(views):
    for t, frame in enumerate(scaled):
      if mirrored:
        mirror(crop_frame(frame, x, y, size, size), out=out[v, t])
      else:
        out[v, t] = crop_frame(frame, x, y, size, size)
  return out
