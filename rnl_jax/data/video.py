"""Random-access clips from raw video files (mp4, webm, avi, ...) decoded with PyAV (docs/original.md §3.1, 3.3).

`VideoFileSource` is the raw-video sibling of `sources.FrameFolderSource`: same sampling, same output
(`{'frames': uint8 [clips*T, H, W, 3], 'label', 'video_index'}`), same skip_corrupt. Frame k (1-based) is
the k-th frame of a plain sequential decode (`for f in container.decode(video=0)`): for a constant-rate
video the picture that `ffmpeg -i video img_%05d.jpg` frame extraction (docs/original.md §3.5) writes as frame k,
without the JPEG round trip. (The ffmpeg CLI also duplicates/drops frames of variable-rate videos to a
constant rate and applies rotation metadata; this reader does neither: frames are the coded pictures.)

How one clip is read (`VideoReader`):
  1. Index pass: demux every packet of the video stream (no decoding, so cheap). A
     frame's number is the rank of its packet's pts (presentation order, so B-frames are fine); the
     keyframe packets split the stream into groups of pictures (GOPs). The frame count is the number of
     frame packets, checked against the container header (`stream.frames`): fewer packets than claimed
     is a truncated file. Files up to `max_buffer_bytes` keep their packets in memory.
  2. Decode pass, GOP-aware: only the GOPs that hold a wanted frame are decoded, each from its keyframe
     up to the last wanted frame of that GOP; a GOP that starts where the previous pass stopped is
     decoded on without a jump. A jump flushes the decoder and feeds packets from the next keyframe:
     from memory, or (large files) after `container.seek` to the keyframe, checked to have landed on it
     (else the stream is re-read from the start). Only wanted frames are converted to RGB. For codecs
     with B-frames (H.264, HEVC, MPEG-4, ..) unwanted packets are fed with `skip_frame='NONREF'`:
     the decoder drops unwanted non-reference frames instead of decoding them (faster:
     docs/performance.md#input-decoding; a wanted frame never depends on a non-reference frame, so
     its pixels are unchanged).
  Timestamps that cannot number frames (missing or repeated pts, or a decoded frame whose pts is not a
  packet's) fall back to numbering frames in decoder output order from the first packet.

Bad data fails loudly: a missing, empty, non-video or truncated file, a container without a video
stream or without frames, a frame that does not decode ("the container claims N frames but only M
decode"), or a frame size change all raise `sources.CorruptVideoError` naming the file, never a silent
zero clip.

Decoding uses one thread per video (`thread_count=1`): loaders run one process per core, and FFmpeg's
default (one thread per core, frame threading) adds latency and oversubscribes the cores.

Video paths may be URLs (`gs://bucket/videos/x.mp4`, rnl_jax.fileio): PyAV reads a file object,
so a file up to `max_buffer_bytes` is fetched in one request and decoded from memory, a larger one
is read through a seekable remote file (ranged reads). `write_video` to a URL encodes a local
temporary and uploads it.
"""

import bisect
import contextlib
import io
import logging
import os

import av
import numpy as np

from rnl_jax import fileio
from rnl_jax.data.datasets import VideoFileRecord, join_root
from rnl_jax.data.sources import ClipSource, CorruptVideoError

log = logging.getLogger(__name__)

DEFAULT_MAX_BUFFER_BYTES = (
    64 << 20
)  # files up to this size are demuxed once and decoded from memory
# Codecs whose streams commonly hold non-reference frames (B-frames) that the decoder can skip.
SKIP_NONREF_CODECS = frozenset(
    {'h264', 'hevc', 'mpeg4', 'mpeg2video', 'mpeg1video', 'h263', 'msmpeg4v3'}
)
_AV_ERRORS = (av.error.FFmpegError, OSError, EOFError, ValueError)


class _Renumber(Exception):
  """Internal: timestamps cannot number the frames; decode again numbering frames in output order."""


class VideoReader:
  """Frame-accurate random access to one video file (see the module docstring).

  Args:
    file: path (local or a URL), or a seekable binary file object / bytes (e.g. a video stored in a
      record file).
    name: what errors and `path` call the video (default: the path, or '<memory>').
    max_buffer_bytes: keep the demuxed packets in memory for files up to this size; larger files are
      re-read with seeks.
    skip_nonref: let the decoder drop unwanted non-reference frames (codecs in SKIP_NONREF_CODECS).
      The price: a frame that does not decode is then only detected when it is wanted (or at the end
      of the stream), not when it is an unwanted frame between wanted ones.
  Attributes:
    num_frames: frames of the video (frame packets of the stream).
    claimed_frames: the container header's frame count (`stream.frames`), 0 where the format has none.
    path: the name used in errors.
  Raises:
    CorruptVideoError (naming the file) for a missing, empty, non-video, truncated or frameless file.
  """

  def __init__(self, file, name=None, max_buffer_bytes=DEFAULT_MAX_BUFFER_BYTES, skip_nonref=True):
    if isinstance(file, (bytes, bytearray, memoryview)):
      file = io.BytesIO(bytes(file))
    self._file = file
    self._remote_file = None  # the file object this reader opened for a URL (closed by close())
    is_path = isinstance(file, (str, os.PathLike))
    self.path = name or (os.fspath(file) if is_path else '<memory>')
    remote = is_path and fileio.is_remote(file)
    if remote:
      path = os.fspath(file)
      if not fileio.isfile(path):
        what = 'is a directory' if fileio.isdir(path) else 'does not exist'
        raise CorruptVideoError(f'video file {path} {what}', self.path)
      size = fileio.getsize(path)
    elif is_path:
      path = os.fspath(file)
      if not os.path.exists(path):
        raise CorruptVideoError(f'video file {path} does not exist', self.path)
      if os.path.isdir(path):
        raise CorruptVideoError(f'video file {path} is a directory', self.path)
      size = os.path.getsize(path)
    else:
      size = file.seek(0, io.SEEK_END)
      file.seek(0)
    if size == 0:
      raise CorruptVideoError(f'video file {self.path} is empty (0 bytes)', self.path)
    self._container = None
    self._buffered = size <= max_buffer_bytes
    if remote:
      # PyAV opens local paths itself but a URL only as a file object: a file that is buffered
      # anyway comes in one request, a larger one through ranged reads of a seekable remote file.
      try:
        if self._buffered:
          self._file = io.BytesIO(fileio.read_bytes(path))
        else:
          self._file = self._remote_file = fileio.open(path, 'rb')
      except OSError as e:
        raise CorruptVideoError(f'cannot read video file {path}: {e}', self.path) from e
    self.skip_nonref = bool(skip_nonref)
    try:
      self._open()
      self._index()
    except BaseException:
      self.close()
      raise

  # -- opening and the index pass ------------------------------------------------------------------

  def _error(self, message):
    return CorruptVideoError(f'{self.path}: {message}', self.path)

  def _open_container(self):
    """A fresh container and its first video stream (decoder: one thread)."""
    if not isinstance(self._file, (str, os.PathLike)):
      self._file.seek(0)
    try:
      container = av.open(self._file, 'r')
    except _AV_ERRORS as e:
      raise self._error(f'cannot open as a video: {type(e).__name__}: {e}') from e
    if not container.streams.video:
      kinds = ', '.join(s.type for s in container.streams) or 'none'
      container.close()
      raise self._error(f'no video stream (streams: {kinds})')
    stream = container.streams.video[0]
    stream.codec_context.thread_count = 1
    return container, stream

  def _open(self):
    self._container, self._stream = self._open_container()
    self._ctx = self._stream.codec_context
    self.claimed_frames = int(self._stream.frames or 0)
    self.skip_nonref = self.skip_nonref and self._ctx.name in SKIP_NONREF_CODECS

  def _demux(self, container, stream):
    """Packets of `stream` in decode order, without PyAV's trailing empty flush packet."""
    try:
      for packet in container.demux(stream):
        if packet.size == 0 and packet.pts is None and packet.dts is None:
          continue
        yield packet
    except _AV_ERRORS as e:
      raise self._error(
          f'cannot demux (truncated or damaged file?): {type(e).__name__}: {e}'
      ) from e

  def _index(self):
    """Demuxes every packet once: frame numbering, keyframes, frame count and its check."""
    pts, key, frame_packet, packets = [], [], [], []
    for packet in self._demux(self._container, self._stream):
      pts.append(packet.pts)
      key.append(bool(packet.is_keyframe))
      # Discarded (edit-list trimmed) and empty packets are decoded (they may be references) but
      # yield no frame of a sequential decode.
      frame_packet.append(packet.size > 0 and not packet.is_discard)
      if self._buffered:
        packets.append(packet)
    self._packets = packets if self._buffered else None
    self._pts = pts
    frame_pts = [p for p, f in zip(pts, frame_packet) if f]
    self.num_frames = len(frame_pts)
    if self.claimed_frames and len(pts) < self.claimed_frames:
      raise self._error(
          f'the container claims {self.claimed_frames} frames but only {len(pts)} are '
          f'present (truncated file?)'
      )
    if self.num_frames == 0:
      raise self._error(f'the video stream has no frames ({len(pts)} packets)')
    # Frame number = rank of the pts among the frame packets (presentation order).
    self._by_pts = None
    if None not in frame_pts and len(set(frame_pts)) == len(frame_pts):
      order = sorted(frame_pts)
      self._by_pts = {p: k for k, p in enumerate(order, 1)}  # pts -> 1-based frame number
      self._pts_of = [None] + order  # frame number -> pts
      # Decode-order position of each keyframe packet, by presentation (pts ascending).
      keys = sorted((p, j) for j, (p, k) in enumerate(zip(pts, key)) if k and p is not None)
      self._key_pts = [p for p, _ in keys]
      self._key_pos = [j for _, j in keys]

  def close(self):
    if self._container is not None:
      self._container.close()
      self._container = None
    self._packets = None
    if self._remote_file is not None:
      self._remote_file.close()
      self._remote_file = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  # -- packet sources ------------------------------------------------------------------------------

  def _from_start(self, start):
    """(position, packet) from decode-order position `start`, re-reading the file from its beginning."""
    container, stream = self._open_container()
    try:
      for j, packet in enumerate(self._demux(container, stream)):
        if j >= start:
          yield j, packet
    finally:
      container.close()

  def _packets_from(self, start):
    """(position, packet) pairs in decode order from position `start` (a keyframe or 0) to the end."""
    if self._packets is not None:
      return ((j, self._packets[j]) for j in range(start, len(self._packets)))
    return self._seek_from(start)

  def _seek_from(self, start):
    """Seeks to the keyframe at `start`; re-reads from the start if the seek lands anywhere else."""
    target = self._pts[start]
    landed = False
    if target is not None:
      try:
        self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
        demuxed = self._demux(self._container, self._stream)
        for packet in demuxed:
          if packet.pts == target:  # pts are unique (else frames are numbered in output order)
            landed = True
            break
          if packet.is_keyframe and packet.pts is not None and packet.pts > target:
            break  # landed after the keyframe
      except (av.error.FFmpegError, CorruptVideoError):
        landed = False
    if not landed:
      log.debug('%s: seek to packet %d missed, re-reading from the start', self.path, start)
      yield from self._from_start(start)
      return
    yield start, packet
    for j, packet in enumerate(demuxed, start + 1):
      if j >= len(self._pts) or packet.pts != self._pts[j]:
        raise self._error(
            f'packet {j} differs between two reads of the file (pts {packet.pts}, '
            f'expected {self._pts[j] if j < len(self._pts) else "end of stream"})'
        )
      yield j, packet

  # -- decoding ------------------------------------------------------------------------------------

  def _decode_packet(self, packet):
    try:
      return self._ctx.decode(packet)
    except _AV_ERRORS as e:
      raise self._error(f'cannot decode (damaged data?): {type(e).__name__}: {e}') from e

  def _missing(self, number, last, after=None):
    """The container claims frames that do not decode: `number` is absent, `last` decoded before it."""
    if after is None:
      return self._error(
          f'the container claims {self.num_frames} frames but only {last} decode (frame '
          f'{number} is missing at the end of the stream)'
      )
    return self._error(
        f'the container claims {self.num_frames} frames but frame {number} does not decode '
        f'(the decoder went from frame {last} to frame {after})'
    )

  def _groups(self, numbers):
    """[(start position, [frame numbers])]: wanted frames grouped by the keyframe they decode from."""
    groups = {}
    for k in numbers:
      g = np.searchsorted(self._key_pts, self._pts_of[k], side='right') - 1  # last keyframe <= pts
      start = self._key_pos[g] if g >= 0 else 0
      groups.setdefault(start, []).append(k)
    return sorted(groups.items())

  def _decode_by_pts(self, numbers):
    """{frame number: uint8 [H, W, 3]} decoding only the GOPs that hold a wanted frame.

    From its keyframe on, a pass must output frames first, first + 1, .. (presentation order): a gap
    means the container claims frames that do not decode (CorruptVideoError); a step back means
    output order is not pts order (_Renumber). Frames before `first` (open-GOP leading pictures)
    belong to the previous GOP and are only kept if wanted.
    """
    wanted = set(numbers)
    wanted_pts = {self._pts_of[k] for k in wanted}
    out = {}
    it, pos = (
        None,
        None,
    )  # packet iterator of the current pass, next decode-order position it yields
    expect = 1  # next frame number the current pass must output
    drained = False  # the decoder has been flushed at the end of the stream
    skipping = None  # the decoder's skip_frame setting is 'NONREF' (True) or 'DEFAULT' (False)
    skippable = set()  # unwanted frames fed while skipping: the decoder may drop them
    for start, group in self._groups(numbers):
      if all(k in out for k in group):
        continue
      if pos is None or start > pos:  # jump: flush and restart at the group's keyframe
        self._ctx.flush_buffers()
        it, pos, drained = self._packets_from(start), start, False
        # first frame at or after the keyframe (the keyframe itself unless an edit list discards it)
        first = expect = 1 if start == 0 else bisect.bisect_left(self._pts_of, self._pts[start], 1)
      while not all(k in out for k in group):
        item = None if drained else next(it, None)
        if item is None:
          frames = [] if drained else self._decode_packet(None)  # end of stream: drain the decoder
          pos, drained = len(self._pts), True
        else:
          pos, packet = item[0] + 1, item[1]
          skip = self.skip_nonref and packet.pts not in wanted_pts
          if skip != skipping:
            self._ctx.skip_frame = 'NONREF' if skip else 'DEFAULT'
            skipping = skip
          if skip and packet.pts in self._by_pts:
            skippable.add(self._by_pts[packet.pts])
          frames = self._decode_packet(packet)
        for frame in frames:
          k = self._by_pts.get(frame.pts)
          if k is None or first <= k < expect:
            raise _Renumber
          if k > expect:
            gap = [j for j in range(expect, k) if j not in skippable]
            if gap:
              raise self._missing(gap[0], gap[0] - 1, k)
          if k >= expect:
            expect = k + 1
          if k in wanted and k not in out:
            out[k] = frame.to_ndarray(format='rgb24')  # [H, W, 3]
        if item is None and not all(k in out for k in group):
          raise self._missing(min(k for k in group if k not in out), expect - 1)
    return out

  def _decode_in_order(self, numbers):
    """{frame number: uint8 [H, W, 3]} numbering decoded frames 1, 2, .. from the first packet."""
    wanted = set(numbers)
    out, count = {}, 0
    self._ctx.flush_buffers()
    self._ctx.skip_frame = 'DEFAULT'
    for item in self._packets_from(0):
      for frame in self._decode_packet(item[1]):
        count += 1
        if count in wanted:
          out[count] = frame.to_ndarray(format='rgb24')  # [H, W, 3]
      if len(out) == len(wanted):
        return out
    for frame in self._decode_packet(None):
      count += 1
      if count in wanted:
        out[count] = frame.to_ndarray(format='rgb24')
    if len(out) < len(wanted):
      raise self._missing(min(wanted - set(out)), count)
    return out

  def decode(self, numbers):
    """uint8 [K, H, W, 3] RGB frames for sorted distinct 1-based frame `numbers` ([K] ints)."""
    if self._container is None:
      raise ValueError(f'{self.path}: the reader is closed')
    numbers = [int(k) for k in np.asarray(numbers).reshape(-1)]
    if not numbers:
      raise ValueError('no frame numbers given')
    bad = [k for k in numbers if not 1 <= k <= self.num_frames]
    if bad:
      raise ValueError(f'{self.path}: frame numbers {bad[:5]} outside [1, {self.num_frames}]')
    out = None
    if self._by_pts is not None:
      try:
        out = self._decode_by_pts(numbers)
      except _Renumber:
        log.debug(
            '%s: decoded pts do not match the packets; numbering frames in output order', self.path
        )
        self._by_pts = None
    if out is None:
      out = self._decode_in_order(numbers)
    first = out[numbers[0]]
    for k in numbers:
      if out[k].shape != first.shape:
        raise self._error(
            f'frame {k} is {out[k].shape[1]}x{out[k].shape[0]} but frame {numbers[0]} '
            f'is {first.shape[1]}x{first.shape[0]} (size change mid-stream)'
        )
    return np.stack([out[k] for k in numbers])  # [K, H, W, 3]


def read_frames(file, numbers=None, **kwargs):
  """uint8 [K, H, W, 3] of 1-based frames `numbers` (default: every frame) of one video file."""
  with VideoReader(file, **kwargs) as reader:
    if numbers is None:
      numbers = np.arange(1, reader.num_frames + 1)
    return reader.decode(numbers)


# ----------------------------------------------------------------------------------------------------
# the clip source


def _as_video_record(r):
  if isinstance(r, VideoFileRecord):
    return r
  if len(r) == 2:
    return VideoFileRecord(str(r[0]), int(r[1]))
  return VideoFileRecord(str(r[0]), int(r[2]), None if r[1] is None else int(r[1]))


class VideoFileSource(ClipSource):
  """Sampled clips of raw video files: `records` (VideoFileRecord, (path, label) or (path, F, label)).

  The frame count used for sampling is always the container's (`VideoReader.num_frames`); a list's
  num_frames is only a hint and is not used.

  Args:
    root: directory the record paths are joined onto (absolute paths and URLs stay as they are); a
      local path or a URL (`gs://bucket/videos`).
    records: the list records (e.g. `datasets.parse_video_list_file`).
    max_buffer_bytes, skip_nonref: see `VideoReader`.
    **kwargs: as `ClipSource` (mode, num_segments, dense, twice_sample, num_clips, seed, skip_corrupt).
  """

  def __init__(
      self, root, records, max_buffer_bytes=DEFAULT_MAX_BUFFER_BYTES, skip_nonref=True, **kwargs
  ):
    super().__init__([_as_video_record(r) for r in records], **kwargs)
    self.root = os.fspath(root)
    self.max_buffer_bytes = int(max_buffer_bytes)
    self.skip_nonref = bool(skip_nonref)

  def video_path(self, index):
    return join_root(self.root, self.records[index].path)

  def required_files(self, index):
    return [self.video_path(index)]

  def open_video(self, index):
    return VideoReader(
        self.video_path(index), max_buffer_bytes=self.max_buffer_bytes, skip_nonref=self.skip_nonref
    )


# ----------------------------------------------------------------------------------------------------
# writing


def _even_frames(frames, pad):
  """Frames with even height and width (4:2:0 chroma needs them): edge-padded if `pad`, else an error."""
  t, h, w, _ = frames.shape
  if h % 2 == 0 and w % 2 == 0:
    return frames
  if not pad:
    raise ValueError(
        f'frames are {w}x{h}: 4:2:0 video needs an even width and height; crop them, or '
        f'pass pad=True to repeat the last row/column (the video is then '
        f'{w + w % 2}x{h + h % 2})'
    )
  return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode='edge')


def write_video(
    path,
    frames,
    fps=25,
    keyframe_interval=250,
    codec='libx264',
    crf=18,
    bframes=None,
    preset=None,
    pad=False,
    options=None,
):
  """Encodes uint8 [T, H, W, 3] RGB `frames` to `path`; the container follows the extension.

  A keyframe starts every `keyframe_interval` frames exactly (frames 1, 1 + k, 1 + 2k, ..): no scene-cut
  keyframes. One encoder thread; even so, two encodings of the same frames once differed in a few
  pixels on a loaded machine, so compare decoded frames (within the codec's error), not bytes.

  Args:
    codec: 'libx264' (mp4/mkv; B-frames by default, `bframes=0` disables them), 'libvpx-vp9' or
      'libvpx' (webm), 'mpeg4' or 'mjpeg' (avi). Pixel format yuv420p (mjpeg: full-range yuvj420p).
    crf: constant-quality factor of libx264 / libvpx (lower = better); mpeg4 and mjpeg use a fixed
      quantiser of 2 (near-lossless for tests) instead.
    bframes: B-frames between references (libx264 'bframes', mpeg4 'bf'); None = encoder default.
    preset: libx264 preset (default 'medium').
    pad: odd height/width are padded by one edge row/column instead of raising ValueError.
    options: extra encoder options (strings), applied last.
  Returns:
    `path` (local, or a URL: encoded to a local temporary, uploaded when complete).
  """
  frames = np.asarray(frames)
  if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
    raise ValueError(
        f'frames must be uint8 [T, H, W, 3] with T >= 1, got {frames.dtype} {frames.shape}'
    )
  keyframe_interval = int(keyframe_interval)
  if keyframe_interval < 1:
    raise ValueError(f'keyframe_interval must be >= 1, got {keyframe_interval}')
  frames = _even_frames(frames, pad)
  _, h, w, _ = frames.shape
  opts, pix_fmt, threads = {}, 'yuv420p', '1'
  if codec == 'libx264':
    params = f'keyint={keyframe_interval}:min-keyint={keyframe_interval}:scenecut=0'
    if bframes is not None:
      params += f':bframes={int(bframes)}'
    opts = {'x264-params': params, 'crf': str(crf), 'preset': preset or 'medium'}
  elif codec in ('libvpx-vp9', 'libvpx'):
    opts = {
        'crf': str(crf),
        'b:v': '0' if codec == 'libvpx-vp9' else '10M',
        'keyint_min': str(keyframe_interval),
        'deadline': 'good',
        'cpu-used': '4',
    }
  elif codec == 'mpeg4':
    opts = {'qmin': '2', 'qmax': '2'}
    if bframes is not None:
      opts['bf'] = str(int(bframes))
  elif codec == 'mjpeg':
    pix_fmt, opts = 'yuvj420p', {'qmin': '2', 'qmax': '2'}
  else:
    raise ValueError(
        f"codec must be 'libx264', 'libvpx-vp9', 'libvpx', 'mpeg4' or 'mjpeg', got {codec!r}"
    )
  opts['threads'] = threads
  opts.update({k: str(v) for k, v in (options or {}).items()})
  path = os.fspath(path)
  # FFmpeg's muxers write local files (mp4 seeks back to finish its header): a URL gets a local
  # temporary, uploaded when complete.
  local = fileio.atomic_path(path) if fileio.is_remote(path) else contextlib.nullcontext(path)
  with local as local_path, av.open(local_path, 'w') as container:
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
    stream.codec_context.gop_size = keyframe_interval
    stream.options = opts
    for frame in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return path
