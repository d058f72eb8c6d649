"""Classify video files with a trained checkpoint, and draw its region non-local attention.

    python -m rnl_jax.classify --checkpoint DIR VIDEO [VIDEO ...] [--json] [--crops 3] [--clips 10]
        [--attention out.png [--attention_block layer2_0] [--query mean | t,y,x]]

A VIDEO is a file PyAV decodes (mp4, webm, avi, ..) or a folder of JPEG frames numbered from 1
(img_00001.jpg, 00001.jpg, 000001.jpg, ..: the template is read off the files). Each video is sampled
and cropped with the original's test protocol (docs/original.md §3.3, 4.3, 6): `--num_segments` frames per clip
(uniform segment centres, `--twice_sample`, or `--dense_sample` with `--clips` windows), short side
scaled to `--scale_size`, then `--crops` 1 / 3 (full-res) / 5 / 10 crops of `--image_size` (or of
`--scale_size` with `--full_res`). Views are fused as the original: the raw logits are averaged over
all views, then a softmax gives the printed probabilities. View settings come from the flags, else from
the checkpoint's `inputs`, else the ImageNet defaults (8 segments, 224 px, scale 224 * 256 / 224).
Class names: `--classes FILE`, else the checkpoint's `classes`, else the bundled Kinetics-400 names for
a 400-class model, else `class_<i>`.

A video that cannot be read gets one line on stderr (`classify: <path>: <reason>`) and the others are
still classified; the exit status is 1 if any video failed, 2 for a bad checkpoint or flags, else 0.

`--attention PNG` draws, for one RNL block, the attention S = softmax_i(<P_j, P_i>) of the first view
(docs/original.md §1.6: queries = keys = the region-aggregated P, over all T*H*W positions of the
clip): the row of one query position `--query t,y,x` (feature-grid coordinates), or by default ('mean')
the mean attention each position receives, averaged over all queries. Both maps sum to 1 over the clip.
The picture shows the T sampled frames of that view side by side, and below them the map upsampled and
overlaid as a heat map (blue = the map's minimum .. red = its maximum over the clip; the query cell
is outlined).
With several videos, PNG names get the video's index: out.png -> out_0.png, out_1.png, ...

`--checkpoint`, `--attention` and the VIDEOs may be URLs (`gs://bucket/...`, rnl_jax.fileio).
"""

import dataclasses
import json
import math
import os
import re
import sys
from typing import Optional, Sequence

import jax
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rnl_jax import cli
from rnl_jax import checkpoint as ckpt_lib
from rnl_jax import fileio
from rnl_jax import sharding
from rnl_jax.data import datasets, sampling, transforms
from rnl_jax.data.sources import FrameFolderSource
from rnl_jax.data.video import VideoFileSource
from rnl_jax.errors import UserError
from rnl_jax.models.rnl import EVAL_QUERY_CHUNK

PROG = 'python -m rnl_jax.classify'
DEFAULT_SEGMENTS = 8
TOP_K = 5
MEAN = 'mean'
_FRAME_FILE = re.compile(r'^(.*?)(\d+)\.(jpe?g)$', re.IGNORECASE)  # prefix, number, extension


class ClassifyError(UserError, ValueError):
  """A problem with one video (or with the setup) that is reported in one line."""


# ----------------------------------------------------------------------------------------------------
# settings


@dataclasses.dataclass(frozen=True)
class ViewSettings:
  """How a video becomes model inputs: sampling and test crops (docs/original.md §3.3, 4.3)."""

  num_segments: int = DEFAULT_SEGMENTS
  image_size: int = transforms.INPUT_SIZE
  scale_size: int = transforms.SCALE_SIZE
  crops: int = 1
  full_res: bool = False
  dense_sample: bool = False
  twice_sample: bool = False
  clips: int = 1  # dense clips (dense_sample only)

  def __post_init__(self):
    if self.crops not in transforms.TEST_CROPS:
      raise ClassifyError(f'--crops must be one of {transforms.TEST_CROPS}, got {self.crops}')
    for name in ('num_segments', 'image_size', 'scale_size', 'clips'):
      if getattr(self, name) < 1:
        raise ClassifyError(f'--{name} must be >= 1, got {getattr(self, name)}')
    if self.clips != 1 and not self.dense_sample:
      raise ClassifyError(
          f'--clips {self.clips} needs --dense_sample (uniform sampling takes one clip, '
          f'or two with --twice_sample)'
      )
    if self.twice_sample and self.dense_sample:
      raise ClassifyError('--twice_sample and --dense_sample cannot be combined')
    if self.scale_size < self.image_size and not self.full_res:
      raise ClassifyError(
          f'--scale_size {self.scale_size} is smaller than --image_size {self.image_size}'
      )

  @property
  def size(self):
    """Side of the model input: the crop, or the scaled short side with full_res."""
    return self.scale_size if self.full_res else self.image_size

  @property
  def num_clips(self):
    return sampling.num_clips_per_video(
        'test', dense=self.dense_sample, twice_sample=self.twice_sample, num_clips=self.clips
    )

  @property
  def num_views(self):
    return self.crops * self.num_clips

  @classmethod
  def resolve(cls, inputs: Optional[dict] = None, **flags):
    """Flags that are not None override the checkpoint's `inputs`, which override the defaults.

    scale_size defaults to image_size * 256 // 224 (the original's `scale_size`), clips to 10 for
    dense sampling (the dense test protocol) and 1 otherwise.
    """
    inputs = inputs or {}
    pick = lambda name, default: next(
        v for v in (flags.get(name), inputs.get(name), default) if v is not None
    )
    image_size = int(pick('image_size', transforms.INPUT_SIZE))
    dense = bool(pick('dense_sample', False))
    return cls(
        num_segments=int(pick('num_segments', DEFAULT_SEGMENTS)),
        image_size=image_size,
        scale_size=int(pick('scale_size', image_size * 256 // 224)),
        crops=int(pick('crops', 1)),
        full_res=bool(pick('full_res', False)),
        dense_sample=dense,
        twice_sample=bool(pick('twice_sample', False)),
        clips=int(pick('clips', sampling.DENSE_TEST_CLIPS if dense else 1)),
    )


def class_names(num_classes: int, meta: Optional[dict] = None, classes_file: Optional[str] = None):
  """Names in label order: `classes_file` (one per line), the checkpoint's `classes`, the bundled
  Kinetics-400 names for 400 classes, else `class_<i>` (`datasets.default_class_names`)."""
  if classes_file:
    try:
      names = datasets.read_class_names(classes_file)
    except OSError as e:
      raise ClassifyError(f'{classes_file}: cannot read class names ({e.strerror})') from None
    where = classes_file
  elif meta and meta.get('classes'):
    names, where = list(meta['classes']), 'the checkpoint'
  else:
    return datasets.default_class_names(num_classes)
  if len(names) != num_classes:
    raise ClassifyError(f'{where}: {len(names)} class names for a {num_classes}-class model')
  return names


# ----------------------------------------------------------------------------------------------------
# reading videos


def frame_template(folder: str):
  """(template, num_frames) of a folder of JPEG frames numbered 1..F, e.g. ('img_{:05d}.jpg', 24).

  The template is read off the files: the most common (prefix, extension), zero-padded to the shortest
  number's width. Frames must be numbered 1..F without gaps.
  """
  groups = {}
  for name in fileio.listdir(folder):
    m = _FRAME_FILE.match(name)
    if m:
      groups.setdefault((m[1], m[3]), []).append(m[2])
  if not groups:
    raise ClassifyError(
        'a folder without JPEG frames (expected files like img_00001.jpg or 00001.jpg)'
    )
  (prefix, ext), digits = max(groups.items(), key=lambda kv: len(kv[1]))
  template = prefix + '{:0%dd}' % min(len(d) for d in digits) + '.' + ext
  names = {prefix + d + '.' + ext for d in digits}
  count = len(names)
  expected = {template.format(k) for k in range(1, count + 1)}
  if names != expected:
    missing = sorted(expected - names)
    raise ClassifyError(
        f'frames {template.format(1)} .. {template.format(count)} expected, but '
        f'{missing[0] if missing else "other numbering"} is missing (frames must be '
        f'numbered from 1 without gaps)'
    )
  return template, count


def _source(path: str, views: ViewSettings):
  """A one-video clip source (test sampling) of a video file or a frame folder."""
  kwargs = dict(
      mode='test',
      num_segments=views.num_segments,
      dense=views.dense_sample,
      twice_sample=views.twice_sample,
      num_clips=views.clips,
  )
  if fileio.isdir(path):
    template, count = frame_template(path)
    return FrameFolderSource('', [(path, count, 0)], template, decoder='simplejpeg', **kwargs)
  return VideoFileSource('', [(path, 0)], **kwargs)


def load_views(path: str, views: ViewSettings):
  """(views uint8 [V, T, S, S, 3] in the original's order (crop, then clip), frames in the video).

  Raises ClassifyError / CorruptVideoError (ValueErrors) for anything unreadable.
  """
  if not fileio.exists(path):
    raise ClassifyError('no such file or directory')
  source = _source(path, views)
  video = source.open_video(0)
  try:
    num_frames = video.num_frames
    idx = source.sample(0, num_frames)  # [clips, T], 1-based
    unique, inverse = np.unique(idx.reshape(-1), return_inverse=True)
    frames = video.decode(unique)[inverse.reshape(-1)]  # [clips*T, H, W, 3]
  finally:
    video.close()
  out = transforms.test_views(
      frames, views.crops, views.full_res, views.scale_size, views.image_size
  )
  crops, n, s = out.shape[:3]  # [crops, clips*T, S, S, 3]
  t = views.num_segments
  return out.reshape(crops * (n // t), t, s, s, 3), num_frames  # [V, T, S, S, 3], crop-major


# ----------------------------------------------------------------------------------------------------
# attention


def nonlocal_blocks(model):
  """Names of the model's RNL blocks in network order, e.g. ['layer2_0', 'layer3_0'] (ResNet-18)."""
  from rnl_jax.models.resnet import nonlocal_positions  # pylint: disable=g-import-not-at-top

  if not model.non_local:
    return []
  return [f'layer{stage}_{block}' for stage, block in sorted(nonlocal_positions(model.depth))]


def parse_query(text):
  """'mean' -> None; 't,y,x' -> (t, y, x) feature-grid coordinates."""
  if text is None or text.strip().lower() == MEAN:
    return None
  try:
    query = tuple(int(v) for v in text.split(','))
  except ValueError:
    query = ()
  if len(query) != 3:
    raise ClassifyError(f'--query must be "mean" or "t,y,x" (three integers), got {text!r}')
  return query


def _softmax(logits):
  """Row-wise softmax (float64) of [..., M]."""
  e = np.exp(logits - logits.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def attention_map(p, query=None, chunk=1024):
  """RNL attention of one clip as [T, H, W] (sums to 1), from its region features p [T, H, W, C'].

  query (t, y, x): S[j, :] = softmax_i(<P_j, P_i>) for the query j at that grid position.
  query None: the attention each position receives averaged over all queries, mean_j S[j, :]; computed
  `chunk` queries at a time, so memory is [chunk, M] and not [M, M].
  """
  t, h, w, c = p.shape
  flat = np.asarray(p, np.float64).reshape(-1, c)  # [M, C']
  if query is not None:
    j = np.ravel_multi_index(query, (t, h, w))
    return _softmax(flat @ flat[j]).reshape(t, h, w)
  total = np.zeros(len(flat))
  for start in range(0, len(flat), chunk):
    total += _softmax(flat[start : start + chunk] @ flat.T).sum(axis=0)  # [chunk, M] -> [M]
  return (total / len(flat)).reshape(t, h, w)


# Piecewise-linear 'jet' colormap: (position, RGB).
_JET = np.array(
    [
        (0.0, 0, 0, 128),
        (0.125, 0, 0, 255),
        (0.375, 0, 255, 255),
        (0.625, 255, 255, 0),
        (0.875, 255, 0, 0),
        (1.0, 128, 0, 0),
    ],
    np.float64,
)
MIN_TILE = 128  # frames are shown at least this large (integer upscaling)
PAD = 4  # pixels between and around the tiles
TITLE_HEIGHT = 30  # two lines of Pillow's default font
OVERLAY_ALPHA = 0.5


def colormap(values):
  """[...] values in [0, 1] -> uint8 [..., 3] RGB (jet)."""
  v = np.clip(values, 0.0, 1.0)
  rgb = [np.interp(v, _JET[:, 0], _JET[:, k]) for k in (1, 2, 3)]
  return np.stack(rgb, axis=-1).round().astype(np.uint8)


def tile_size(size):
  """Displayed side of one S x S frame: S upscaled by an integer factor to at least MIN_TILE."""
  return size * max(1, math.ceil(MIN_TILE / size))


def attention_picture_size(num_segments, size):
  """(width, height) of the attention PNG for T frames of S x S pixels."""
  tile = tile_size(size)
  return num_segments * tile + (num_segments + 1) * PAD, TITLE_HEIGHT + 2 * tile + 3 * PAD


def render_attention(frames, amap, title_lines, query=None):
  """PIL image: frames uint8 [T, S, S, 3] in a row, below them `amap` [T, h, w] as a heat map.

  The colours span the map's range over the clip, min (blue) .. max (red), one scale for all frames
  (a near-uniform map is stretched: the title gives the values). The map is upsampled bilinearly to
  the frame and blended over it; the query cell (t, y, x) is outlined on both rows.
  """
  t, s = frames.shape[0], frames.shape[1]
  _, h, w = amap.shape
  tile = tile_size(s)
  width, height = attention_picture_size(t, s)
  canvas = Image.new('RGB', (width, height), (255, 255, 255))
  draw = ImageDraw.Draw(canvas)
  font = ImageFont.load_default()
  for k, line in enumerate(title_lines[:2]):
    draw.text((PAD, 2 + 14 * k), line, fill=(0, 0, 0), font=font)
  low, span = float(amap.min()), float(amap.max() - amap.min()) or 1.0
  y0, y1 = TITLE_HEIGHT + PAD, TITLE_HEIGHT + 2 * PAD + tile
  for i in range(t):
    x0 = PAD + i * (tile + PAD)
    frame = Image.fromarray(frames[i]).resize((tile, tile), Image.Resampling.NEAREST)
    heat = Image.fromarray(((amap[i] - low) / span).astype(np.float32), mode='F')
    heat = np.asarray(heat.resize((tile, tile), Image.Resampling.BILINEAR))  # [tile, tile]
    blend = (1 - OVERLAY_ALPHA) * np.asarray(frame, np.float64) + OVERLAY_ALPHA * colormap(heat)
    canvas.paste(frame, (x0, y0))
    canvas.paste(Image.fromarray(blend.round().astype(np.uint8)), (x0, y1))
    draw.text((x0 + 2, y0 + 1), f't={i}', fill=(255, 255, 255), font=font)
  if query is not None:
    qt, qy, qx = query
    cell_w, cell_h = tile / w, tile / h
    x0 = PAD + qt * (tile + PAD) + qx * cell_w
    for top in (y0, y1):
      box = [x0, top + qy * cell_h, x0 + cell_w - 1, top + (qy + 1) * cell_h - 1]
      draw.rectangle(box, outline=(255, 255, 255), width=2)
      draw.rectangle([box[0] - 1, box[1] - 1, box[2] + 1, box[3] + 1], outline=(0, 0, 0), width=1)
  return canvas


def attention_path(base, index, count):
  """The PNG of video `index` of `count`: `base` itself for one video, else `<stem>_<index><ext>`."""
  if count == 1:
    return base
  stem, ext = os.path.splitext(base)
  return f'{stem}_{index}{ext or ".png"}'


# ----------------------------------------------------------------------------------------------------
# the classifier


class Classifier:
  """A checkpoint ready to classify videos: model, variables, view settings, class names.

  Args:
    checkpoint: checkpoint directory, or an original `.pth.tar` (converted in memory; needs torch).
    classes_file: class names, one per line (overrides the checkpoint's).
    attention: also return the region features of the first view's `attention_block` (default: the
      model's first RNL block).
    batch_views: views per forward pass (the last batch is padded, so one compile per view shape).
    **flags: ViewSettings fields; None keeps the checkpoint's / the default value.
  """

  def __init__(
      self,
      checkpoint: str,
      *,
      classes_file=None,
      attention=False,
      attention_block=None,
      batch_views=8,
      **flags,
  ):
    if not fileio.exists(checkpoint):
      raise ClassifyError(f'checkpoint {checkpoint}: no such file or directory')
    meta = {} if fileio.isfile(checkpoint) else ckpt_lib.read_metadata(checkpoint)
    self.model, self.variables = ckpt_lib.load_checkpoint(
        checkpoint, dropout=0.0, normalize_input=True, eval_query_chunk=EVAL_QUERY_CHUNK
    )
    self.views = ViewSettings.resolve(meta.get('inputs'), **flags)
    self.names = class_names(self.model.num_classes, meta, classes_file)
    if batch_views < 1:
      raise ClassifyError(f'batch_views must be >= 1, got {batch_views}')
    self.batch_views = int(batch_views)
    self.block = None
    if attention:
      blocks = nonlocal_blocks(self.model)
      if not blocks:
        raise ClassifyError(f'checkpoint {checkpoint}: the model has no region non-local blocks')
      if attention_block is not None and attention_block not in blocks:
        raise ClassifyError(
            f"--attention_block {attention_block!r}: the model's RNL blocks are "
            f'{", ".join(blocks)}'
        )
      self.block = attention_block or blocks[0]
    self._forward = jax.jit(self._apply, compiler_options=sharding.compiler_options())

  def _apply(self, variables, x):
    """logits [B, K] of uint8 views x [B, T, S, S, 3], and the region features of the first view's
    attention block ([T, h, w, C'], or None)."""
    if self.block is None:
      return self.model.apply(variables, x, train=False), None
    logits, state = self.model.apply(variables, x, train=False, mutable=['intermediates'])
    p = state['intermediates']['base_model'][self.block]['nl']['region_features'][
        0
    ]  # [B, T, h, w, C']
    return logits, p[0]

  def feature_grid(self):
    """(T, h, w) of the attention block's features for this checkpoint's view size."""
    t, s = self.views.num_segments, self.views.size
    shapes = jax.eval_shape(
        self._apply, self.variables, jax.ShapeDtypeStruct((1, t, s, s, 3), np.uint8)
    )
    return tuple(shapes[1].shape[:3])

  def logits(self, views):
    """float32 [V, K] logits of uint8 views [V, T, S, S, 3], and the first view's region features."""
    v = len(views)
    b = min(v, self.batch_views)
    out, p = [], None
    for start in range(0, v, b):
      x = views[start : start + b]
      if len(x) < b:  # pad the last batch: same shape, no recompile (rows are independent at eval)
        x = np.concatenate([x, np.zeros((b - len(x),) + x.shape[1:], x.dtype)])
      logits, feats = self._forward(self.variables, x)
      out.append(np.asarray(logits)[: min(b, v - start)])
      if start == 0 and feats is not None:
        p = np.asarray(feats)
    return np.concatenate(out), p

  def classify(self, path, top_k=TOP_K):
    """Result dict of one video: video, top5 [{label, name, prob}], num_views, num_frames, and (not in
    the JSON) logits [K] (view-averaged), probs [K], frames [T, S, S, 3] and features of the first
    view. Raises ValueError (CorruptVideoError, ClassifyError) for a video that cannot be read."""
    views, num_frames = load_views(path, self.views)  # [V, T, S, S, 3]
    view_logits, p = self.logits(views)  # [V, K]
    logits = view_logits.mean(axis=0)  # [K] average of raw logits
    probs = _softmax(logits.astype(np.float64))
    order = np.argsort(-probs, kind='stable')[:top_k]
    top = [{'label': int(k), 'name': self.names[k], 'prob': float(probs[k])} for k in order]
    return {
        'video': path,
        'top5': top,
        'num_views': len(views),
        'num_frames': int(num_frames),
        'logits': logits,
        'probs': probs,
        'frames': views[0],
        'features': p,
    }


def _video_name(path):
  """The last component of a video's path, for the picture's title (normpath would fold a URL's
  `//`)."""
  if fileio.is_remote(path):
    return os.path.basename(path.rstrip('/'))
  return os.path.basename(os.path.normpath(path))


def _save_picture(image, path):
  """Saves the PIL image to `path` (its format from the extension); on a URL a local file of the
  same name is uploaded in one write."""
  if not fileio.is_remote(path):
    image.save(path)
    return
  with fileio.atomic_path(path) as tmp:  # same basename: PIL picks the format from it
    image.save(tmp)


def _reason(path, error):
  """The error message without a leading repetition of the path."""
  msg = str(error)
  for prefix in (f'{path}: ', f'{fileio.absolute(path)}: '):
    if msg.startswith(prefix):
      return msg[len(prefix) :]
  return msg


def classify(
    checkpoint: str,
    paths: Sequence[str],
    *,
    top_k: int = TOP_K,
    attention: Optional[str] = None,
    attention_block: Optional[str] = None,
    query=MEAN,
    classes_file=None,
    batch_views=8,
    on_error=None,
    **flags,
):
  """Classifies each of `paths` (video files or frame folders); a list of result dicts in input order.

  A video that cannot be read gives `{'video': path, 'error': reason}` (and `on_error(path, reason)`
  is called) instead of stopping the others. With `attention` (a PNG path) each classified video also
  gets its attention picture (result keys 'attention': the PNG path, 'attention_map': [T, h, w]) for
  `attention_block` (default: the first RNL block) and `query` ('mean', 't,y,x' or a (t, y, x) tuple).
  `flags`: ViewSettings fields (num_segments, image_size, scale_size, crops, full_res, dense_sample,
  twice_sample, clips); None keeps the checkpoint's value.
  """
  if attention:
    query = parse_query(query) if isinstance(query, str) or query is None else tuple(query)
    folder = os.path.dirname(fileio.absolute(attention))
    # A bucket has no folders to check: writing the object creates its "folder".
    if not fileio.is_remote(folder) and not os.path.isdir(folder):
      raise ClassifyError(f'--attention {attention}: folder {folder} does not exist')
  clf = Classifier(
      checkpoint,
      classes_file=classes_file,
      batch_views=batch_views,
      attention=bool(attention),
      attention_block=attention_block,
      **flags,
  )
  if attention and query is not None:
    grid = clf.feature_grid()
    if not all(0 <= q < g for q, g in zip(query, grid)):
      raise ClassifyError(
          f'--query {",".join(map(str, query))} is outside the {clf.block} feature grid '
          f'(t, y, x) < {grid}'
      )
  results = []
  for i, path in enumerate(paths):
    try:
      result = clf.classify(path, top_k)
    except (ValueError, OSError) as e:  # CorruptVideoError and ClassifyError are ValueErrors
      reason = _reason(path, e)
      results.append({'video': path, 'error': reason})
      if on_error:
        on_error(path, reason)
      continue
    if attention:
      amap = attention_map(result['features'], query)  # [T, h, w]
      out = attention_path(attention, i, len(paths))
      best = result['top5'][0]
      where = 'mean attention received' if query is None else f'query (t,y,x)={query}'
      title = [
          f'{_video_name(path)}: {best["name"]} {best["prob"]:.3f}',
          f'{clf.block}, {where}; view 0; {amap.min():.3g} .. {amap.max():.3g} '
          f'(uniform {1 / amap.size:.3g})',
      ]
      try:
        _save_picture(render_attention(result['frames'], amap, title, query), out)
      except OSError as e:
        results.append({'video': path, 'error': f'cannot write {out}: {e}'})
        if on_error:
          on_error(path, results[-1]['error'])
        continue
      result['attention'], result['attention_map'] = out, amap
    results.append(result)
  return results


# ----------------------------------------------------------------------------------------------------
# command line


def _parser():
  p = cli.ArgumentParser(prog=PROG, description=__doc__.split('\n', 1)[0])
  p.add_argument('videos', nargs='+', metavar='VIDEO', help='video files or frame folders')
  p.add_argument(
      '--checkpoint', required=True, help='checkpoint directory (or an original .pth.tar)'
  )
  p.add_argument('--json', action='store_true', help='print one JSON document instead of text')
  p.add_argument('--top_k', type=int, default=TOP_K, help='classes listed per video')
  p.add_argument('--classes', default=None, help='class names, one per line (label order)')
  g = p.add_argument_group("views (default: the checkpoint's inputs, else ImageNet settings)")
  g.add_argument('--num_segments', type=int, default=None, help='frames per clip (default 8)')
  g.add_argument('--image_size', type=int, default=None, help='crop size (default 224)')
  g.add_argument(
      '--scale_size',
      type=int,
      default=None,
      help='short side before cropping ' '(default image_size * 256 // 224)',
  )
  g.add_argument(
      '--crops',
      type=int,
      default=None,
      choices=transforms.TEST_CROPS,
      help='test crops (default 1)',
  )
  g.add_argument(
      '--full_res',
      action=cli.BooleanOptionalAction,
      default=None,
      help='crops of scale_size instead of image_size',
  )
  g.add_argument(
      '--dense_sample',
      action=cli.BooleanOptionalAction,
      default=None,
      help='dense (I3D) sampling: 64-frame windows',
  )
  g.add_argument('--clips', type=int, default=None, help='dense test clips (default 10)')
  g.add_argument(
      '--twice_sample',
      action=cli.BooleanOptionalAction,
      default=None,
      help='add the segment-start clip (uniform sampling)',
  )
  g.add_argument('--batch_views', type=int, default=8, help='views per forward pass')
  a = p.add_argument_group('attention')
  a.add_argument('--attention', default=None, metavar='PNG', help='write the RNL attention picture')
  a.add_argument(
      '--attention_block', default=None, help='RNL block, e.g. layer2_0 (default: the first)'
  )
  a.add_argument(
      '--query',
      default=MEAN,
      help='"mean" (attention received, averaged over queries) or ' 't,y,x on the feature grid',
  )
  return p


def _print_text(result, out):
  print(
      f'{result["video"]}  ({result["num_frames"]} frames, {result["num_views"]} views)', file=out
  )
  for entry in result['top5']:
    print(f'  {entry["prob"]:.3f}  {entry["name"]}', file=out)
  if 'attention' in result:
    print(f'  attention: {result["attention"]}', file=out)


def main(argv=None, stdout=None, stderr=None):
  """The command line; returns the exit status (0 ok, 1 a video failed, 2 bad checkpoint / flags)."""
  stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
  args = _parser().parse_args(argv)
  flags = {
      k: getattr(args, k)
      for k in (
          'num_segments',
          'image_size',
          'scale_size',
          'crops',
          'full_res',
          'dense_sample',
          'clips',
          'twice_sample',
      )
  }
  report = lambda path, reason: print(f'classify: {path}: {reason}', file=stderr, flush=True)
  debug = args.debug or cli.debug_requested([])  # --debug or RNL_DEBUG=1: the traceback
  with cli.user_errors(debug):  # Ctrl-C: `interrupted`, exit status 130
    try:
      results = classify(
          args.checkpoint,
          args.videos,
          top_k=args.top_k,
          attention=args.attention,
          attention_block=args.attention_block,
          query=args.query,
          classes_file=args.classes,
          batch_views=args.batch_views,
          on_error=report,
          **flags,
      )
    except Exception as e:  # pylint: disable=broad-except
      # ClassifyError, CheckpointError, ..: the setup, not one video (a bug keeps its traceback)
      found = None if debug else cli.find_user_error(e)
      if found is None:
        raise
      print(f'error: {cli.message(found)}', file=stderr)
      return 2
  done = [r for r in results if 'error' not in r]
  if args.json:
    keys = ('video', 'top5', 'num_views', 'num_frames', 'attention')
    json.dump([{k: r[k] for k in keys if k in r} for r in done], stdout, indent=1)
    print(file=stdout)
  else:
    for r in done:
      _print_text(r, stdout)
  return 1 if len(done) < len(results) else 0


if __name__ == '__main__':
  sys.exit(main())
