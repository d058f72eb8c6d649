"""Random-access source of sampled, decoded frame clips from TSM frame folders (docs/original.md §3.1, 3.3, 3.4).

`ClipSource` holds what every source shares (sampling, decoding each wanted frame once, skip_corrupt);
`FrameFolderSource` implements `__len__` / `__getitem__`, so it can back a grain `MapDataset.source`
(or any index-based loader). For record i it samples 1-based frame indices with `sampling.sample_indices`,
decodes only those JPEG frames (each distinct frame once) and returns

    {'frames': uint8 [clips*T, H, W, 3] (clip-major), 'label': int, 'video_index': int}

Randomness ('train', and dense 'val') comes from a per-example `np.random.Generator`: either the caller's
(`get(index, rng)`) or `np.random.default_rng([seed, epoch, index])`, so a clip is a pure function of
(seed, epoch, index) and independent of worker assignment (docs/original.md §7.20).

Bad data fails loudly (CorruptVideoError, a ValueError naming the file). Upstream silently substitutes
frame 1 for an unreadable frame, a random video for a missing folder (docs/original.md §3.4, 7.11);
that is not reproduced. With `skip_corrupt=True` a bad video is replaced deterministically by the next
readable one (index + 1, wrapping), logged, and counted in `skipped` / `skipped_paths` (per process: each
loader worker holds its own copy of the source).

Frame roots and list folders may be URLs (`gs://bucket/frames`: each frame is then one object read
through rnl_jax.fileio, a request per frame, so packed formats suit buckets better); local files are
read with plain `open` as before.
"""

import io
import logging
import operator
import os

import numpy as np
from PIL import Image
import simplejpeg

from rnl_jax import fileio
from rnl_jax.data import sampling
from rnl_jax.data.datasets import VideoRecord, join_root
from rnl_jax.errors import UserError

log = logging.getLogger(__name__)


class CorruptVideoError(UserError, ValueError):
  """A video that cannot be read: missing folder or frame, truncated or non-JPEG frame. `path` = the file."""

  def __init__(self, message, path):
    super().__init__(message)
    self.path = path


def _as_record(r):
  return r if isinstance(r, VideoRecord) else VideoRecord(str(r[0]), int(r[1]), int(r[2]))


def missing_frame_message(path, folder, record):
  """Why a frame file is absent: no folder, or a folder with fewer files than the list's frame count."""
  if not fileio.isdir(folder):
    return f'video folder {folder} does not exist (missing frame file {path})'
  n = len(fileio.listdir(folder))
  hint = (
      f'; the folder holds {n} files but the list says {record.num_frames} frames'
      if n < record.num_frames
      else ''
  )
  return f'missing frame file {path}{hint}'


DECODERS = ('simplejpeg', 'simplejpeg_fast', 'pil')


def _decode_pil(data):
  with Image.open(io.BytesIO(data), formats=('JPEG',)) as img:
    img.load()  # decodes now, so truncation raises here (PIL's LOAD_TRUNCATED_IMAGES is left alone)
    return np.asarray(img.convert('RGB'))


def decode_jpeg(data, path, decoder='simplejpeg'):
  """uint8 [H, W, 3] RGB of JPEG bytes; CorruptVideoError naming `path` if they cannot be decoded.

  decoder:
    'pil': Pillow, the original's decoder.
    'simplejpeg': libjpeg-turbo with Pillow's settings (accurate integer IDCT, fancy upsampling):
      the same pixels as Pillow (tested on baseline, progressive, 4:2:0/4:2:2/4:4:4 and grayscale
      files), faster (docs/performance.md#input-decoding). Files it cannot read (e.g. CMYK) fall
      back to Pillow.
    'simplejpeg_fast': fast IDCT and plain upsampling (faster again; pixels differ by a few grey
      levels, which training augmentation does not care about; never use it for val/test).
  """
  if decoder == 'pil':
    try:
      return _decode_pil(data)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
      raise CorruptVideoError(
          f'cannot decode JPEG frame {path}: {type(e).__name__}: {e}', path
      ) from e
  if decoder not in DECODERS:
    raise ValueError(f'decoder must be one of {DECODERS}, got {decoder!r}')
  fast = decoder == 'simplejpeg_fast'
  try:
    frame = simplejpeg.decode_jpeg(data, colorspace='RGB', fastdct=fast, fastupsample=fast)
  except ValueError:
    return decode_jpeg(
        data, path, 'pil'
    )  # not a JPEG simplejpeg reads: let Pillow decide (and name it)
  if frame.ndim == 2:
    frame = np.repeat(frame[..., None], 3, axis=-1)
  return frame


def decode_frame(path, decoder='pil'):
  """uint8 [H, W, 3] RGB of one JPEG file; CorruptVideoError naming the file if it cannot be decoded.

  FileNotFoundError passes through (the caller says which video lacks the frame). `path` may be a
  URL.
  """
  with fileio.open(path, 'rb') as f:
    data = f.read()
  return decode_jpeg(data, path, decoder)


class ClipSource:
  """Base of the random-access clip sources: sampling, decode-each-frame-once, skip_corrupt.

  A subclass holds `records` (one per video, with `.label` and, where the list gives it,
  `.num_frames`) and implements `open_video(index)`, returning a handle with

    num_frames: int             frames of the video (from the list, or read from the container)
    decode(numbers) -> uint8 [K, H, W, 3] for sorted distinct 1-based frame numbers, raising
                                CorruptVideoError (naming the file) for anything unreadable
    close()

  and `video_path(index)` (the path named in errors and in `skipped_paths`).

  Args:
    records: the (already filtered) list records.
    mode, num_segments, dense, twice_sample, num_clips: as in `sampling.sample_indices`.
    seed: base seed of the per-example generators.
    skip_corrupt: replace an unreadable video by the next readable one instead of raising.
    **sample_kwargs: passed to `sampling.sample_indices` (fix_short, include_last_start).
  """

  def __init__(
      self,
      records,
      *,
      mode,
      num_segments,
      dense=False,
      twice_sample=False,
      num_clips=sampling.DENSE_TEST_CLIPS,
      seed=0,
      skip_corrupt=False,
      **sample_kwargs,
  ):
    self.records = list(records)
    self.mode = mode
    self.num_segments = int(num_segments)
    self.dense = bool(dense)
    self.twice_sample = bool(twice_sample)
    self.num_clips = num_clips
    # Validates mode / dense / twice_sample / num_clips up front (not in a worker, mid-epoch).
    self.clips_per_video = sampling.num_clips_per_video(
        mode, dense=dense, twice_sample=twice_sample, num_clips=num_clips
    )
    if int(seed) < 0:
      raise ValueError(f'seed must be >= 0, got {seed}')
    self.seed = int(seed)
    self.epoch = 0
    self.skip_corrupt = bool(skip_corrupt)
    self.sample_kwargs = sample_kwargs
    self.skipped = 0
    self.skipped_paths = []
    self.random = mode == 'train' or (dense and mode == 'val')

  # -- to implement ---------------------------------------------------------------------------------

  def open_video(self, index):
    raise NotImplementedError

  def video_path(self, index):
    raise NotImplementedError

  def required_files(self, index):
    """Files that must exist for record `index` to be readable (checked before training starts);
    none by default (a packed source holds its frames)."""
    del index
    return []

  # -- shared ---------------------------------------------------------------------------------------

  def __len__(self):
    return len(self.records)

  def drop(self, indices):
    """Removes records `indices` (e.g. videos found missing before training) from the source."""
    gone = set(indices)
    self.records = [r for i, r in enumerate(self.records) if i not in gone]

  def __getitem__(self, index):
    return self.get(index)

  def label(self, index):
    return int(self.records[index].label)

  def set_epoch(self, epoch):
    """Epoch mixed into the default per-example generators (training draws new clips every epoch)."""
    self.epoch = int(epoch)

  def example_rng(self, index, epoch=None):
    """The default generator of one example: `default_rng([seed, epoch, index])`."""
    return np.random.default_rng(
        [self.seed, self.epoch if epoch is None else int(epoch), int(index)]
    )

  def _index(self, index):
    i = operator.index(index)
    n = len(self.records)
    if i < 0:
      i += n
    if not 0 <= i < n:
      raise IndexError(f'index {index} out of range for {n} videos')
    return i

  def sample(self, index, num_frames, rng=None, epoch=None):
    """1-based frame indices [clips, T] of video `index` with `num_frames` frames."""
    if self.random and rng is None:
      rng = self.example_rng(index, epoch)
    if num_frames < 1:
      path = self.video_path(index)
      raise CorruptVideoError(f'video {path} has no frames (num_frames={num_frames})', path)
    return sampling.sample_indices(
        num_frames,
        self.num_segments,
        self.mode,
        dense=self.dense,
        rng=rng,
        twice_sample=self.twice_sample,
        num_clips=self.num_clips,
        **self.sample_kwargs,
    )

  def read(self, index, rng=None, epoch=None):
    """The example of video `index` without substitution; CorruptVideoError on bad data."""
    video = self.open_video(index)
    try:
      idx = self.sample(index, video.num_frames, rng, epoch)  # [clips, T]
      flat = idx.reshape(-1)  # [clips*T]
      unique, inverse = np.unique(flat, return_inverse=True)
      decoded = video.decode(unique)  # [K, H, W, 3], each frame once
    finally:
      video.close()
    frames = decoded[inverse.reshape(-1)]  # [clips*T, H, W, 3]
    return {'frames': frames, 'label': self.label(index), 'video_index': int(index)}

  def get(self, index, rng=None, epoch=None):
    """Example `index`; `rng` (np.random.Generator) overrides the default (seed, epoch, index) generator.

    With skip_corrupt, an unreadable video is replaced by the next readable one (index + 1, wrapping);
    'video_index' is then the replacement's index (its label matches) and 'skipped' the number of
    videos passed over for this example (the source-wide counters are shared by reader threads).
    """
    index = self._index(index)
    if not self.skip_corrupt:
      return dict(self.read(index, rng, epoch), skipped=0)
    n = len(self.records)
    for step in range(n):
      j = (index + step) % n
      try:
        return dict(self.read(j, rng, epoch), skipped=step)
      except CorruptVideoError as e:
        self.skipped += 1
        self.skipped_paths.append(e.path)
        # Training's replacements are reported by the trainer when their batch is used (named and
        # counted in results.json), so they are only INFO here: prefetching reads ahead.
        log.log(
            logging.INFO if self.mode == 'train' else logging.WARNING,
            'skipping unreadable video %d (%s): %s; trying video %d',
            j,
            self.video_path(j),
            e,
            (j + 1) % n,
        )
    raise CorruptVideoError(
        f'no readable video among the {n} records of {type(self).__name__}', self.video_path(index)
    )


def check_frame_numbers(numbers, num_frames, where):
  """IndexError unless every 1-based frame number lies in 1..num_frames of video `where`."""
  if numbers and not 1 <= min(numbers) <= max(numbers) <= num_frames:
    raise IndexError(f'frames {numbers} outside 1..{num_frames} of {where}')


def check_stored_video(where, stored, record, container):
  """CorruptVideoError unless the stored (num_frames, label, path) of video `where` are the index
  `record`'s: a packed index and the `container` (shards, records) it was read with must match."""
  num_frames, label, path = stored
  if (num_frames, label, path) != (record.num_frames, record.label, record.path):
    raise CorruptVideoError(
        f'{where} holds {path!r} (F={num_frames}, label {label}) but the index says '
        f'{record.path!r} (F={record.num_frames}, label {record.label}): index and {container} do '
        f'not belong together',
        where,
    )


def decode_stored_frames(numbers, encoded, where, decode, name_of):
  """uint8 [K, H, W, 3] of frames `numbers` from their encoded bytes, decoded by
  `decode(data, name_of(k))`; a failure is a CorruptVideoError whose path is the video `where`
  (as `skipped_paths` lists it)."""
  frames = []
  for k, data in zip(numbers, encoded):
    try:
      frames.append(decode(data, name_of(k)))  # [H, W, 3]
    except CorruptVideoError as e:
      raise CorruptVideoError(str(e), where) from e
  return stack_frames(frames, lambda j: f'{where} frame {numbers[j]}')


def stack_frames(frames, path_of):
  """np.stack of decoded frames [K, H, W, 3]; CorruptVideoError naming `path_of(k)` if frame k's size differs."""
  for k, frame in enumerate(frames[1:], 1):
    if frame.shape != frames[0].shape:
      path = path_of(k)
      raise CorruptVideoError(
          f'frame {path} is {frame.shape[1]}x{frame.shape[0]} but earlier frames of '
          f'the video are {frames[0].shape[1]}x{frames[0].shape[0]}',
          path,
      )
  return np.stack(frames)


def check_template(template):
  """ValueError unless `template` formats one integer into distinct names (e.g. 'img_{:05d}.jpg')."""
  try:
    ok = template.format(1) != template.format(2)
  except (IndexError, KeyError, ValueError):
    ok = False
  if not ok:
    raise ValueError(f'template must format one integer, e.g. "img_{{:05d}}.jpg", got {template!r}')


class _FolderVideo:
  """Handle of one frame folder: F from the list, frames decoded from their JPEG files."""

  def __init__(self, source, index):
    self.source = source
    self.index = index
    self.num_frames = source.records[index].num_frames

  def decode(self, numbers):
    src, record = self.source, self.source.records[self.index]
    frames = []
    for k in numbers:
      path = src.frame_path(self.index, k)
      try:
        frames.append(decode_frame(path, src.decoder))  # [H, W, 3]
      except FileNotFoundError:
        folder = join_root(src.root, record.path)
        raise CorruptVideoError(missing_frame_message(path, folder, record), path) from None
    return stack_frames(frames, lambda k: src.frame_path(self.index, numbers[k]))  # [K, H, W, 3]

  def close(self):
    pass


class FrameFolderSource(ClipSource):
  """Sampled clips of `records` (VideoRecord or (folder, F, label) tuples) read from `root/folder/template`.

  Args:
    root: frame root the record folders are joined onto (absolute folders and URLs stay as they
      are); a local path or a URL (`gs://bucket/frames`).
    records: the (already filtered) list records.
    template: frame file name with one 1-based integer field, e.g. 'img_{:05d}.jpg'.
    decoder: JPEG decoder, see `decode_jpeg` ('simplejpeg' gives Pillow's pixels, faster).
    **kwargs: as `ClipSource` (mode, num_segments, dense, twice_sample, num_clips, seed, skip_corrupt).
  """

  def __init__(self, root, records, template, decoder='simplejpeg', **kwargs):
    super().__init__([_as_record(r) for r in records], **kwargs)
    if decoder not in DECODERS:
      raise ValueError(f'decoder must be one of {DECODERS}, got {decoder!r}')
    self.decoder = decoder
    self.root = os.fspath(root)
    check_template(template)
    self.template = template

  def video_path(self, index):
    return join_root(self.root, self.records[index].path)

  def open_video(self, index):
    return _FolderVideo(self, index)

  def required_files(self, index):
    return [self.frame_path(index, 1)]  # its folder and first frame

  def frame_path(self, index, frame):
    """File of 1-based frame `frame` of record `index`."""
    return os.path.join(self.video_path(index), self.template.format(int(frame)))

  def indices(self, index, rng=None, epoch=None):
    """1-based frame indices [clips, T] of record `index` (rng only used by the random modes)."""
    return self.sample(index, self.records[index].num_frames, rng, epoch)
