"""One video's work (runs in worker processes): decode, resize, write a frame folder or an mp4.

Decoding is PyAV's plain sequential decode (no ffmpeg binary needed): frame k is the k-th decoded
picture, as in `video.VideoReader`. The original's tools run `ffmpeg -i V -vf scale=-1:H -q:v 0
img_%05d.jpg` (docs/original.md §3.5); here:

* size (`Size`): 'height' forces the height and derives the width as ffmpeg's `scale=-1:H` does
  (`round(H * w / h)`, halves away from zero, no even constraint); 'short' scales the shorter side to N;
  'keep' leaves frames as decoded. The scaling is FFmpeg's own swscale bicubic (the scale filter's
  default) via `VideoFrame.to_ndarray(width, height, interpolation='BICUBIC')`, on the displayed picture
  (rotation metadata applied as ffmpeg's autorotate does). JPEG sources (Something-V1) are resized
  with Pillow's bicubic filter.
* JPEG: libjpeg-turbo via simplejpeg, quality 95, 4:2:0 (ffmpeg's `-q:v 0` is its highest mjpeg
  quality, also 4:2:0).
* frame rate: native, every frame (no `-r`). Unlike the ffmpeg CLI, variable-rate videos are not
  resampled to a constant rate (frames are the coded pictures, as the video source reads them).
* re-encoded videos (format 'videos'): the same frames, both sides even (4:2:0), H.264 by
  `video.write_video` (yuv420p, crf CRF, preset PRESET, a keyframe every KEYFRAME_INTERVAL frames,
  no scene-cut keyframes), the source's frame rate (JPEG folders: the dataset's), no audio.

Outputs are written under `.tmp-<pid>-<name>` next to their final place and renamed into place when
complete, so a folder or file under its final name is always complete.

Problems of the source are returned, not raised (`SourceError` -> a report entry): `undecodable` (cannot
be opened or decoded, no video stream, truncated: fewer packets than the container claims, or frames of
different sizes in a JPEG folder) and `zero_frames` (opens but yields no frame, or an empty folder). A
decoder that silently yields fewer frames than the stream has packets keeps the video with the frames it
decoded and returns a warning. Errors writing the output (disk full, permissions) are raised.
"""

import collections
import dataclasses
import itertools
import os
import re
import shutil

import numpy as np
from PIL import Image

from rnl_jax import fileio

JPEG_QUALITY = 95
# Re-encoded videos (format 'videos'): H.264, a keyframe every KEYFRAME_INTERVAL frames (chosen with
# benchmarks/reencode.py, see README), constant quality CRF with the PRESET speed/size trade-off.
KEYFRAME_INTERVAL = 16
CRF = 18
PRESET = 'veryfast'
DEFAULT_FPS = 25.0

Task = collections.namedtuple(
    'Task',
    'name source source_kind output kind template size quality fps ' 'keyframe_interval crf preset',
)


class SourceError(Exception):
  """The source video cannot give frames: kind 'undecodable' or 'zero_frames', detail = why."""

  def __init__(self, kind, detail):
    super().__init__(f'{kind}: {detail}')
    self.kind = kind
    self.detail = detail


def _rescale(a, b, c, factor=1):
  """FFmpeg's av_rescale(a, b, c * factor) * factor (round half away from zero), at least `factor`."""
  c *= factor
  return max(factor, (a * b + c // 2) // c * factor)


@dataclasses.dataclass(frozen=True)
class Size:
  """Output frame size rule.

  mode: 'keep' (as decoded), 'height' (ffmpeg `scale=-1:N`: height N, width by aspect ratio) or 'short'
    (the shorter side N, the other by aspect ratio).
  even: both sides even (4:2:0 video): the forced side rounded up, the other as ffmpeg's `-2`.
  """

  mode: str = 'keep'
  size: int = 0
  even: bool = False

  def __post_init__(self):
    if self.mode not in ('keep', 'height', 'short'):
      raise ValueError(f"size mode must be 'keep', 'height' or 'short', got {self.mode!r}")
    if self.mode != 'keep' and self.size < 1:
      raise ValueError(f'size must be >= 1, got {self.size}')

  def target(self, width, height):
    """(width, height) of the output for a displayed `width` x `height` picture."""
    f = 2 if self.even else 1
    if self.mode == 'keep':
      if not self.even:
        return width, height
      return width + width % 2, height + height % 2
    n = self.size + self.size % f
    if self.mode == 'height' or height <= width:
      return _rescale(n, width, height, f), n
    return n, _rescale(n, height, width, f)

  def as_dict(self):
    return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------------
# reading


def _rotation(frame):
  """Quarter turns (counter-clockwise) that display the frame upright (its display matrix), 0..3."""
  try:
    angle = frame.rotation or 0
  except (AttributeError, ValueError):
    return 0
  return int(round(angle / 90.0)) % 4


class VideoFrames:
  """Iterable of uint8 [H, W, 3] RGB frames of one video file, sized by `size` (a sequential decode).

  After iterating: `num_packets` (packets that carry a frame), `num_frames`, `fps` and `warning` (None,
  or why fewer frames decoded than the stream has frame packets). Raises SourceError for undecodable /
  frameless files.
  """

  def __init__(self, path, size):
    self.path = path
    self.size = size
    self.num_packets = self.num_frames = 0
    self.fps = None
    self.warning = None

  def __iter__(self):
    import av  # pylint: disable=import-outside-toplevel

    errors = (av.error.FFmpegError, OSError, EOFError, ValueError, IndexError)
    if os.path.getsize(self.path) == 0:
      raise SourceError('undecodable', f'{self.path} is empty (0 bytes)')
    try:
      container = av.open(self.path)
    except errors as e:
      raise SourceError(
          'undecodable', f'cannot open {self.path}: {type(e).__name__}: {e}'
      ) from None
    with container:
      if not container.streams.video:
        kinds = ', '.join(s.type for s in container.streams) or 'none'
        raise SourceError('undecodable', f'{self.path} has no video stream (streams: {kinds})')
      stream = container.streams.video[0]
      stream.codec_context.thread_count = 1  # one process per core
      claimed = int(stream.frames or 0)
      rate = stream.average_rate or stream.guessed_rate
      self.fps = float(rate) if rate else None
      target = None
      packets = 0
      try:
        for packet in container.demux(stream):
          if (
              packet.size or packet.pts is not None or packet.dts is not None
          ):  # not PyAV's flush packet
            packets += 1
            if packet.size > 0 and not packet.is_discard:  # empty / edit-list-discarded: no frame
              self.num_packets += 1
          for frame in packet.decode():
            turns = _rotation(frame)
            if target is None:
              w, h = (frame.height, frame.width) if turns % 2 else (frame.width, frame.height)
              target = self.size.target(w, h)
            tw, th = (target[1], target[0]) if turns % 2 else target
            if (tw, th) == (frame.width, frame.height):
              rgb = frame.to_ndarray(format='rgb24')
            else:
              rgb = frame.to_ndarray(format='rgb24', width=tw, height=th, interpolation='BICUBIC')
            if turns:
              rgb = np.ascontiguousarray(np.rot90(rgb, turns))
            self.num_frames += 1
            yield rgb
      except errors as e:
        raise SourceError(
            'undecodable',
            f'cannot decode {self.path} after {self.num_frames} frames: '
            f'{type(e).__name__}: {e}',
        ) from None
    if claimed and packets < claimed:  # as video.VideoReader: all packets, empty ones included
      raise SourceError(
          'undecodable',
          f'{self.path}: the container claims {claimed} frames but holds only '
          f'{packets} packets (truncated file?)',
      )
    if self.num_frames == 0:
      raise SourceError(
          'zero_frames',
          f'{self.path}: the video stream has no decodable frames ' f'({self.num_packets} packets)',
      )
    if self.num_frames < self.num_packets:
      self.warning = (
          f'{self.num_packets} frame packets but {self.num_frames} frames decode; the '
          f'{self.num_frames} are kept'
      )


def folder_frames(folder, pattern=r'^(\d+)\.jpg$'):
  """[frame files] 1..F of a JPEG frame folder (file names matching `pattern`, group 1 = number).

  SourceError: zero_frames for no frames, undecodable for a gap in the numbering.
  """
  regex = re.compile(pattern)
  try:
    names = os.listdir(folder)
  except OSError as e:
    raise SourceError('undecodable', f'cannot list {folder}: {e}') from None
  numbered = {}
  for name in names:
    m = regex.match(name)
    if m:
      numbered[int(m.group(1))] = os.path.join(folder, name)
  if not numbered:
    raise SourceError('zero_frames', f'{folder} holds no frames ({len(names)} other files)')
  expected = set(range(1, len(numbered) + 1))
  if set(numbered) != expected:
    gap = min(expected - set(numbered))
    raise SourceError(
        'undecodable',
        f'{folder}: frame {gap} is missing but frames up to {max(numbered)} ' f'exist',
    )
  return [numbered[k] for k in range(1, len(numbered) + 1)]


def _decode_jpeg_file(path):
  """(bytes, uint8 [H, W, 3]) of a JPEG file; SourceError('undecodable') naming it."""
  from rnl_jax.data import sources  # pylint: disable=import-outside-toplevel

  try:
    with open(path, 'rb') as f:
      data = f.read()
    return data, sources.decode_jpeg(data, path)
  except (OSError, ValueError) as e:  # CorruptVideoError is a ValueError
    raise SourceError('undecodable', f'{e}') from None


def _resize(rgb, width, height):
  """Pillow bicubic resize of uint8 [H, W, 3] (JPEG-folder sources)."""
  if rgb.shape[1] == width and rgb.shape[0] == height:
    return rgb
  return np.asarray(Image.fromarray(rgb).resize((width, height), Image.BICUBIC))


class FolderFrames:
  """Iterable of (JPEG bytes or None, uint8 [H, W, 3]) of a frame folder, sized by `size`: the original
  bytes (every frame still decoded, to check it) when the size is unchanged, else None."""

  def __init__(self, folder, size):
    self.folder = folder
    self.size = size
    self.num_frames = 0
    self.warning = None
    self.fps = None

  def __iter__(self):
    files = folder_frames(self.folder)
    first = None
    for path in files:
      data, rgb = _decode_jpeg_file(path)
      if first is None:
        first = rgb.shape
        target = self.size.target(rgb.shape[1], rgb.shape[0])
      elif rgb.shape != first:
        raise SourceError(
            'undecodable',
            f'{path} is {rgb.shape[1]}x{rgb.shape[0]} but frame 1 of '
            f'{self.folder} is {first[1]}x{first[0]}',
        )
      self.num_frames += 1
      if target == (rgb.shape[1], rgb.shape[0]):
        yield data, rgb
      else:
        yield None, _resize(rgb, *target)


# ----------------------------------------------------------------------------------------------------
# writing


def encode_jpeg(rgb, quality=JPEG_QUALITY):
  """JPEG bytes of uint8 [H, W, 3] RGB (libjpeg-turbo, accurate DCT, 4:2:0)."""
  import simplejpeg  # pylint: disable=import-outside-toplevel

  return simplejpeg.encode_jpeg(
      np.ascontiguousarray(rgb),
      quality=quality,
      colorspace='RGB',
      colorsubsampling='420',
      fastdct=False,
  )


def _link_or_copy(src, dst):
  try:
    os.link(src, dst)
  except OSError:
    shutil.copyfile(src, dst)


def write_frame_folder(frames, final, template, quality, link_sources=None):
  """Writes frames 1..F as `final/template.format(k)` via a temporary folder renamed into place.

  `frames` yields uint8 [H, W, 3] arrays, or (bytes or None, array) pairs (`FolderFrames`); with
  `link_sources` (the source files) unchanged frames are hard-linked (copied across file systems).
  Returns F.
  """
  frames = iter(frames)
  try:
    first = next(frames)  # a source that fails at once leaves no folder behind, not even its parent
  except StopIteration:
    raise SourceError('zero_frames', f'no frames for {final}') from None
  os.makedirs(os.path.dirname(final), exist_ok=True)
  tmp = fileio.temp_sibling(final)  # .tmp-<pid>-<name>
  os.mkdir(tmp)
  count = 0
  try:
    for k, frame in enumerate(itertools.chain([first], frames), 1):
      dst = os.path.join(tmp, template.format(k))
      if isinstance(frame, tuple):
        data, rgb = frame
        if data is not None and link_sources is not None:
          _link_or_copy(link_sources[k - 1], dst)
          count = k
          continue
        frame = rgb
      with open(dst, 'wb') as f:
        f.write(encode_jpeg(frame, quality))
      count = k
    _replace_dir(tmp, final)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return count


def _replace_dir(tmp, final):
  """Renames the complete folder `tmp` to `final`, replacing an (incomplete) folder of that name."""
  if os.path.lexists(final):
    if os.path.isdir(final) and not os.path.islink(final):
      shutil.rmtree(final)
    else:
      os.remove(final)
  os.rename(tmp, final)


def write_mp4(frames, final, fps, keyframe_interval, crf, preset):
  """Encodes the frames (uint8 [H, W, 3], even sides) to `final` (H.264 mp4) via a temporary file.

  Returns F. (`video.write_video` takes all frames at once: a clip is held in memory while encoding.)
  """
  from rnl_jax.data import video  # pylint: disable=import-outside-toplevel

  os.makedirs(os.path.dirname(final), exist_ok=True)
  clip = [f[1] if isinstance(f, tuple) else f for f in frames]
  if not clip:
    raise SourceError('zero_frames', f'{final}: no frames to encode')
  with fileio.atomic_path(final, fileio.temp_sibling(final)) as tmp:
    video.write_video(
        tmp,
        np.stack(clip),
        fps=_fps_fraction(fps),
        keyframe_interval=keyframe_interval,
        crf=crf,
        preset=preset,
    )
  return len(clip)


def _fps_fraction(fps):
  from fractions import Fraction  # pylint: disable=import-outside-toplevel

  return Fraction(fps or DEFAULT_FPS).limit_denominator(1001)


def run_task(task):
  """Prepares one video; returns {'name', 'status' ('ok' | 'undecodable' | 'zero_frames'), 'num_frames',
  'detail', 'warning'}. Module-level and argument-only, for 'spawn' worker processes."""
  result = {'name': task.name, 'status': 'ok', 'num_frames': 0, 'detail': None, 'warning': None}
  try:
    if task.source_kind == 'frames':
      frames = FolderFrames(task.source, task.size)
    else:
      frames = VideoFrames(task.source, task.size)
    if task.kind == 'frames':
      link = folder_frames(task.source) if task.source_kind == 'frames' else None
      result['num_frames'] = write_frame_folder(
          frames, task.output, task.template, task.quality, link
      )
    else:
      clip = list(frames)  # decoded first: the source's frame rate is known after the first packets
      result['num_frames'] = write_mp4(
          clip, task.output, frames.fps or task.fps, task.keyframe_interval, task.crf, task.preset
      )
    result['warning'] = frames.warning
  except SourceError as e:
    result.update(status=e.kind, detail=e.detail)
  return result
