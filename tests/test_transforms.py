"""Clip transforms (docs/original.md §4) against a re-creation of the original's Pillow code.

Validation/test views must equal the original bit for bit; training crops must follow the
GroupMultiScaleCrop rules (sizes, pairs, 13-point grid), apply one crop/flip to the whole clip, and the
OpenCV fast path must stay within a small tolerance of Pillow.
"""

import collections

import numpy as np
import pytest
from PIL import Image, ImageOps

from rnl_jax.data import transforms  # module import: pytest must not collect `transforms.test_views`

# (H, W) of synthetic sources: Kinetics 340x256 landscape and portrait, TSM-extracted 331-high frames,
# Something-V1 100-high frames (both orientations), odd sizes that hit Python's half-to-even rounding
# (341: (341 - 224) / 2 = 58.5 -> 58; 589x331 -> 455 wide: 115.5 -> 116), a square and a 223-high frame.
SHAPES = [
    (256, 340),
    (340, 256),
    (331, 589),
    (589, 331),
    (100, 176),
    (176, 100),
    (256, 341),
    (300, 300),
    (223, 300),
]


def make_clip(h, w, t=3, seed=0):
  """[t, h, w, 3] uint8: smooth pattern + noise, different in every frame."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[:h, :w].astype(np.float32)
  frames = []
  for i in range(t):
    base = np.stack(
        [
            127
            + 60 * np.sin(x / (6 + c + i) + c) * np.cos(y / (9 + c))
            + 40 * np.sin((x + 2 * y) / (29 + i))
            for c in range(3)
        ],
        -1,
    )
    frames.append(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))
  return np.stack(frames)


# ------------------------------------------------------------------------------------------------------
# The original (ops/transforms.py + torchvision on PIL images), re-created with Pillow calls.


def ref_group_scale(imgs, size=256):
  """torchvision Resize(size) / Scale on a PIL image, applied per frame."""
  out = []
  for img in imgs:
    w, h = img.size
    if (w <= h and w == size) or (h <= w and h == size):
      out.append(img)
    elif w < h:
      out.append(img.resize((size, int(size * h / w)), Image.BILINEAR))
    else:
      out.append(img.resize((int(size * w / h), size), Image.BILINEAR))
  return out


def ref_center_crop(imgs, size):
  out = []
  for img in imgs:
    w, h = img.size
    i, j = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    out.append(img.crop((j, i, j + size, i + size)))
  return out


def ref_fill_fix_offset(more_fix_crop, image_w, image_h, crop_w, crop_h):
  w_step = (image_w - crop_w) // 4
  h_step = (image_h - crop_h) // 4
  ret = [
      (0, 0),
      (4 * w_step, 0),
      (0, 4 * h_step),
      (4 * w_step, 4 * h_step),
      (2 * w_step, 2 * h_step),
  ]
  if more_fix_crop:
    ret += [
        (0, 2 * h_step),
        (4 * w_step, 2 * h_step),
        (2 * w_step, 4 * h_step),
        (2 * w_step, 0 * h_step),
        (1 * w_step, 1 * h_step),
        (3 * w_step, 1 * h_step),
        (1 * w_step, 3 * h_step),
        (3 * w_step, 3 * h_step),
    ]
  return ret


def ref_oversample(imgs, crop, scale, flip):
  """GroupOverSample(crop, scale, flip)."""
  imgs = ref_group_scale(imgs, scale)
  image_w, image_h = imgs[0].size
  out = []
  for o_w, o_h in ref_fill_fix_offset(False, image_w, image_h, crop, crop):
    normal, flipped = [], []
    for img in imgs:
      c = img.crop((o_w, o_h, o_w + crop, o_h + crop))
      normal.append(c)
      flipped.append(c.copy().transpose(Image.FLIP_LEFT_RIGHT))
    out.extend(normal)
    if flip:
      out.extend(flipped)
  return out


def ref_full_res(imgs, crop, scale):
  """GroupFullResSample(crop, scale, flip=False)."""
  imgs = ref_group_scale(imgs, scale)
  image_w, image_h = imgs[0].size
  w_step, h_step = (image_w - crop) // 4, (image_h - crop) // 4
  out = []
  for o_w, o_h in [(0 * w_step, 2 * h_step), (4 * w_step, 2 * h_step), (2 * w_step, 2 * h_step)]:
    out.extend(img.crop((o_w, o_h, o_w + crop, o_h + crop)) for img in imgs)
  return out


def ref_test(imgs, num_crops, full_res):
  """test_models.py's crop transform; returns the flat list of PIL views (crop-major)."""
  crop = 256 if full_res else 224
  if num_crops == 1:
    return ref_center_crop(ref_group_scale(imgs, 256), crop)
  if num_crops == 3:
    return ref_full_res(imgs, crop, 256)
  return ref_oversample(imgs, crop, 256, flip=num_crops == 10)


def ref_train(imgs, x, y, cw, ch, flipped, size=224):
  """GroupMultiScaleCrop with a given box, then GroupRandomHorizontalFlip's decision."""
  out = [img.crop((x, y, x + cw, y + ch)).resize((size, size), Image.BILINEAR) for img in imgs]
  return [ImageOps.mirror(img) for img in out] if flipped else out


def to_pil(clip):
  return [Image.fromarray(f) for f in clip]


def to_array(imgs):
  return np.stack([np.asarray(img) for img in imgs])


# ------------------------------------------------------------------------------------------------------
# (a) validation and test views: bit-exact


@pytest.mark.parametrize('shape', SHAPES)
def test_val_view_matches_pillow(shape):
  clip = make_clip(*shape)
  expected = to_array(ref_center_crop(ref_group_scale(to_pil(clip), 256), 224))
  got = transforms.val_view(clip)
  assert got.shape == (3, 224, 224, 3) and got.dtype == np.uint8
  np.testing.assert_array_equal(got, expected)
  np.testing.assert_array_equal(transforms.val_view(list(clip)), expected)  # list of frames


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize(
    'num_crops,full_res',
    [(1, False), (1, True), (3, False), (3, True), (5, False), (5, True), (10, False), (10, True)],
)
def test_test_views_match_pillow(shape, num_crops, full_res):
  clip = make_clip(*shape)
  size = 256 if full_res else 224
  expected = to_array(ref_test(to_pil(clip), num_crops, full_res))  # [crops * T, S, S, 3]
  got = transforms.test_views(list(clip), num_crops=num_crops, full_res=full_res)
  assert got.shape == (num_crops, 3, size, size, 3) and got.dtype == np.uint8
  np.testing.assert_array_equal(got.reshape(expected.shape), expected)


def test_portrait_full_res_three_crop_quirk():
  """docs/original.md §7.12: offsets move only sideways, so a portrait frame gets 3 equal crops."""
  clip = make_clip(340, 256)  # portrait: W = 256, H = 340 (no rescale needed)
  views = transforms.test_views(clip, num_crops=3, full_res=True)
  np.testing.assert_array_equal(views[0], views[1])
  np.testing.assert_array_equal(views[1], views[2])
  h_step = (340 - 256) // 4  # all three at y = 2 * 21 = 42
  np.testing.assert_array_equal(views[0], clip[:, 2 * h_step : 2 * h_step + 256])
  landscape = transforms.test_views(make_clip(256, 340), num_crops=3, full_res=True)
  assert not np.array_equal(landscape[0], landscape[1])


def test_geometry_helpers():
  assert transforms.scaled_size(589, 331) == (455, 256)  # int(256 * 589 / 331) = int(455.54)
  assert transforms.scaled_size(176, 100) == (450, 256)
  assert transforms.scaled_size(100, 176) == (256, 450)
  assert transforms.scaled_size(340, 256) == (340, 256)
  assert transforms.center_crop_offset(341, 256, 224, 224) == (58, 16)  # 58.5 -> 58
  assert transforms.center_crop_offset(455, 256, 224, 224) == (116, 16)  # 115.5 -> 116
  assert transforms.full_res_offsets(455, 256, 256) == [(0, 0), (196, 0), (98, 0)]
  assert transforms.oversample_offsets(340, 256, 224) == [
      (0, 0),
      (116, 0),
      (0, 32),
      (116, 32),
      (58, 16),
  ]
  offsets = transforms.multi_crop_offsets(340, 256, 10, 224)
  assert [o[2] for o in offsets] == [False, True] * 5
  assert [o[:2] for o in offsets[::2]] == transforms.oversample_offsets(340, 256, 224)


def test_scale_short_side_no_op_and_rescale():
  clip = make_clip(256, 340)
  assert transforms.scale_short_side(clip, 256) is clip
  scaled = transforms.scale_short_side(make_clip(331, 589), 256)
  assert scaled.shape == (3, 256, 455, 3)


# ------------------------------------------------------------------------------------------------------
# (b) multi-scale crop parameters


GRID = [
    (0, 0),
    (4, 0),
    (0, 4),
    (4, 4),
    (2, 2),
    (0, 2),
    (4, 2),
    (2, 4),
    (2, 0),
    (1, 1),
    (3, 1),
    (1, 3),
    (3, 3),
]


@pytest.mark.parametrize(
    'width,height,sizes',
    [
        (340, 256, [256, 224, 192, 168]),
        (256, 340, [256, 224, 192, 168]),
        (589, 331, [331, 289, 248, 218]),
        (176, 100, [100, 87, 75, 66]),
    ],
)
def test_multiscale_crop_params_distribution(width, height, sizes):
  assert transforms.multiscale_crop_sizes(min(width, height)) == sizes
  pairs = {(sizes[j], sizes[i]) for i in range(4) for j in range(4) if abs(i - j) <= 1}
  assert len(pairs) == 10
  n = 4000
  seen = collections.Counter()
  for seed in range(n):
    x, y, cw, ch = transforms.multiscale_crop_params(width, height, np.random.default_rng(seed))
    assert (cw, ch) in pairs
    assert 0 <= x and x + cw <= width and 0 <= y and y + ch <= height  # crop inside the frame
    seen[(cw, ch, x, y)] += 1
  per_pair = collections.Counter()
  for (cw, ch, _, _), k in seen.items():
    per_pair[(cw, ch)] += k
  assert set(per_pair) == pairs
  assert all(0.75 * n / 10 < k < 1.25 * n / 10 for k in per_pair.values()), per_pair
  for cw, ch in pairs:  # every one of the 13 grid points is drawn
    dw, dh = (width - cw) // 4, (height - ch) // 4
    expected = {(a * dw, b * dh) for a, b in GRID}
    assert {(x, y) for (w_, h_, x, y) in seen if (w_, h_) == (cw, ch)} == expected
  # Uniform over the 13 points, for a pair whose 13 points are distinct.
  cw, ch = sizes[3], sizes[3]
  counts = [k for (w_, h_, _, _), k in seen.items() if (w_, h_) == (cw, ch)]
  assert len(counts) == 13 and min(counts) > 0.4 * per_pair[(cw, ch)] / 13


def test_multiscale_crop_sizes_snap_to_input_size():
  assert transforms.multiscale_crop_sizes(258) == [
      258,
      224,
      193,
      170,
  ]  # int(258 * .875) = 225 -> 224
  assert transforms.multiscale_crop_sizes(222) == [224, 194, 166, 146]  # 222 -> 224 (> the frame)
  assert transforms.multiscale_crop_pairs(340, 256)[:2] == [(256, 256), (224, 256)]  # (c_j, c_i)
  assert len(transforms.fixed_crop_offsets(340, 256, 224, 224, more_fix_crop=False)) == 5


def test_multiscale_random_offsets_without_fix_crop():
  xs, ys = set(), set()
  for seed in range(400):
    x, y, cw, ch = transforms.multiscale_crop_params(
        340, 256, np.random.default_rng(seed), fix_crop=False
    )
    assert 0 <= x <= 340 - cw and 0 <= y <= 256 - ch
    xs.add(x)
    ys.add(y)
  assert len(xs) > 40 and len(ys) > 20 and max(xs) > 100


# ------------------------------------------------------------------------------------------------------
# (c) one crop and one flip decision per clip


@pytest.mark.parametrize('shape', [(256, 340), (100, 176), (331, 589), (223, 300)])
def test_train_views_pil_path_matches_reference(shape):
  """resize='pil' equals the original pixel for pixel, the same box/flip for every frame."""
  clip = make_clip(*shape, t=4)
  h, w = shape
  flips = set()
  for seed in range(12):
    got = transforms.train_views(list(clip), np.random.default_rng(seed), resize='pil')
    params = transforms.sample_train_params(w, h, np.random.default_rng(seed))
    flips.add(params[4])
    np.testing.assert_array_equal(got, to_array(ref_train(to_pil(clip), *params)))
  assert flips == {True, False}


def test_train_views_same_crop_every_frame_and_no_flip():
  frame = make_clip(256, 340, t=1)[0]
  clip = np.stack([frame] * 4)
  asym = make_clip(256, 340, t=4, seed=3)
  flipped = 0
  for seed in range(40):
    out = transforms.train_views(clip, np.random.default_rng(seed))
    assert out.shape == (4, 224, 224, 3) and out.dtype == np.uint8
    for t in range(1, 4):  # identical frames stay identical: same box and flip
      np.testing.assert_array_equal(out[t], out[0])
    params = transforms.sample_train_params(340, 256, np.random.default_rng(seed))
    flipped += params[4]
    unflipped = transforms.apply_train_params(asym, params[:4] + (False,))
    got = transforms.train_views(asym, np.random.default_rng(seed))
    np.testing.assert_array_equal(got, unflipped[:, :, ::-1] if params[4] else unflipped)
    # flip=False (Something-Something / Jester): never mirrored, crop distribution unchanged.
    no_flip = transforms.train_views(asym, np.random.default_rng(seed), flip=False)
    np.testing.assert_array_equal(no_flip, unflipped)
  assert 8 < flipped < 32


def test_train_crop_outside_frame_is_zero_filled_like_pil():
  clip = make_clip(223, 300, t=1)
  params = (-4, -1, 224, 224, False)  # what a 223-high frame can draw (step -1)
  got = transforms.apply_train_params(clip, params, resize='pil')
  np.testing.assert_array_equal(got, to_array(ref_train(to_pil(clip), *params)))
  crop = transforms.crop_frame(clip[0], -4, -1, 224, 224)
  assert crop[0].max() == 0 and crop[:, :4].max() == 0
  np.testing.assert_array_equal(crop[1:, 4:], clip[0, :223, :220])


# ------------------------------------------------------------------------------------------------------
# (d) OpenCV fast path vs Pillow


@pytest.mark.parametrize('shape', [(256, 340), (331, 589), (100, 176)])
def test_cv2_train_path_close_to_pillow(shape):
  """Textured frames (make_clip adds pixel noise, where aliasing shows). Measured worst mean |diff| over
  the boxes: 'cv2' 0.65 / 1.09 / 0.21 and 'cv2_linear' 1.16 / 2.81 / 0.21 at 340x256 / 589x331 / 176x100.
  """
  h, w = shape
  clip = make_clip(h, w, t=2)
  worst = {'cv2': 0.0, 'cv2_linear': 0.0}
  for cw, ch in transforms.multiscale_crop_pairs(w, h):
    for x, y in transforms.fixed_crop_offsets(w, h, cw, ch)[:5:2]:
      params = (x, y, cw, ch, False)
      ref = transforms.apply_train_params(clip, params, resize='pil').astype(np.int16)
      for method in worst:
        diff = np.abs(transforms.apply_train_params(clip, params, resize=method) - ref)
        worst[method] = max(worst[method], diff.mean())
        if cw * ch <= 224 * 224:  # enlarging: both are bilinear, within 1 grey level
          assert diff.max() <= 1, (method, params, diff.max())
  assert worst['cv2'] < 2.0 and worst['cv2'] <= worst['cv2_linear'], worst


def test_bad_arguments():
  clip = make_clip(256, 340, t=1)
  with pytest.raises(ValueError):
    transforms.test_views(clip, num_crops=4)
  with pytest.raises(ValueError):
    transforms.apply_train_params(clip, (0, 0, 224, 224, False), resize='bicubic')
