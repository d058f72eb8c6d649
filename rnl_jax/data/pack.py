"""Packs a frame-folder (or video-file) dataset into ArrayRecord shards read by `ArrayRecordSource`.

    python -m rnl_jax.data.pack --list train.txt --root DIR/frames --out OUT/train
        [--template img_{:05d}.jpg] [--shards N] [--workers N] [--classes classes.txt]
        [--skip_corrupt] [--verify decode|header] [--overwrite]
    python -m rnl_jax.data.pack --videos --list videos.txt --root VIDEO_DIR --out OUT/train [--quality 90]

Frame folders: the list is `<folder> <num_frames> <label>` (`datasets.parse_list_file`, space or comma);
frames 1..num_frames (`root/folder/template`) are stored as their original JPEG bytes, one record per
frame. Each frame is decoded once with the reader's default decoder (`sources.decode_jpeg`, 'simplejpeg'
with Pillow as fallback: `--verify decode`, the default) or only its JPEG header is parsed
(`--verify header`: faster, misses truncated entropy data), and all frames must share one size.
Videos (`--videos`): the list is `<path> <label>` or `<path> <num_frames> <label>`; every frame is decoded
with PyAV and stored as a JPEG (cv2, quality 90). The decoded count is stored; a differing list count is
reported and listed in the index (`frame_count_mismatches`).

Output (format version 2, in `rnl_jax/data/arrayrecord.py`): `OUT-00000-of-000NN.array_record` ... and
`OUT.json`. Each video is a metadata record followed by its F frame records; videos keep the list order
(shard s holds a contiguous block of list lines; a video is never split across shards). Shards are written
under temporary names and renamed once all are complete; the index is written last, so an interrupted run
leaves no index. A missing or unreadable folder/video stops the run with an error naming it; with
`--skip_corrupt` it is left out, counted, and listed in the index's `skipped`.

Buckets: --list, --classes, --root and --out may be `gs://` URLs (rnl_jax.fileio; --out also
`s3://`, though ArrayRecordSource reads only local and gs:// shards). A bucket has no rename, so for
a URL --out each shard is written to a local temporary (TMPDIR: room for the whole packed set) and
uploaded at the commit, in one upload per shard; the index is uploaded last.
"""

import collections
import contextlib
import dataclasses
import io
import json
import math
import os
import sys
import time

import numpy as np
from PIL import Image

from rnl_jax import cli
from rnl_jax import fileio
from rnl_jax.data import arrayrecord, datasets, sources
from rnl_jax.data.sources import CorruptVideoError, missing_frame_message
from rnl_jax.errors import UserError

DEFAULT_TEMPLATE = 'img_{:05d}.jpg'
DEFAULT_QUALITY = 90
RECORDS_PER_SHARD = 1000  # --shards default: ceil(N / this)
VERIFY = ('decode', 'header')


class PackError(UserError, ValueError):
  """The packer cannot go on (bad list, unreadable input without --skip_corrupt, existing output)."""


Task = collections.namedtuple('Task', 'path num_frames label root template videos verify quality')


# ----------------------------------------------------------------------------------------------------
# reading one input (runs in worker processes: module-level, argument-only)


def _jpeg_size(path, data, verify):
  """(width, height) of a frame's JPEG bytes (decoded if verify='decode'); CorruptVideoError naming it."""
  try:
    if verify == 'decode':
      return sources.decode_jpeg(data, path).shape[
          1::-1
      ]  # the reader's default decoder; raises naming path
    with Image.open(io.BytesIO(data), formats=('JPEG',)) as img:
      return img.size
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    if isinstance(e, CorruptVideoError):
      raise
    raise CorruptVideoError(
        f'cannot decode JPEG frame {path}: {type(e).__name__}: {e}', path
    ) from e


def read_frame_folder(folder, num_frames, template, verify='decode'):
  """(JPEG bytes of frames 1..num_frames, width, height) of a frame folder; CorruptVideoError naming it."""
  if num_frames < 1:
    raise CorruptVideoError(f'video folder {folder}: the list gives {num_frames} frames', folder)
  if not fileio.isdir(folder):
    raise CorruptVideoError(f'video folder {folder} does not exist', folder)
  frames, size = [], None
  for k in range(1, num_frames + 1):
    path = os.path.join(folder, template.format(k))
    try:
      with fileio.open(path, 'rb') as f:
        data = f.read()
    except FileNotFoundError:
      record = datasets.VideoRecord(folder, num_frames, 0)
      raise CorruptVideoError(missing_frame_message(path, folder, record), path) from None
    except OSError as e:  # permissions, I/O errors
      raise CorruptVideoError(f'cannot read frame {path}: {e}', path) from e
    wh = _jpeg_size(path, data, verify)
    if size is None:
      size = wh
    elif wh != size:
      raise CorruptVideoError(
          f'frame {path} is {wh[0]}x{wh[1]} but frame 1 of {folder} is ' f'{size[0]}x{size[1]}',
          path,
      )
    frames.append(data)
  return frames, int(size[0]), int(size[1])


def encode_jpeg(frame, quality=DEFAULT_QUALITY):
  """JPEG bytes of a uint8 [H, W, 3] RGB frame (cv2/libjpeg-turbo, 4:2:0)."""
  import cv2  # pylint: disable=g-import-not-at-top

  ok, buf = cv2.imencode(
      '.jpg', np.ascontiguousarray(frame[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality]
  )
  if not ok:
    raise ValueError('cv2.imencode failed')
  return buf.tobytes()


def read_video(path, quality=DEFAULT_QUALITY):
  """(JPEG bytes of every decoded frame, width, height) of a video file (local or a URL);
  CorruptVideoError naming it."""
  import av  # pylint: disable=g-import-not-at-top

  if not fileio.isfile(path):
    raise CorruptVideoError(f'video file {path} does not exist', path)
  frames, size = [], None
  try:
    # PyAV opens a URL only as a file object (a seekable remote file: ranged reads).
    src = fileio.open(path, 'rb') if fileio.is_remote(path) else contextlib.nullcontext(path)
    with src as file, av.open(file) as container:
      if not container.streams.video:
        raise CorruptVideoError(f'video file {path} has no video stream', path)
      for frame in container.decode(video=0):
        rgb = frame.to_ndarray(format='rgb24')  # [H, W, 3]
        wh = (rgb.shape[1], rgb.shape[0])
        if size is None:
          size = wh
        elif wh != size:
          raise CorruptVideoError(
              f'video {path}: frame {len(frames) + 1} is {wh[0]}x{wh[1]}, frame 1 is '
              f'{size[0]}x{size[1]}',
              path,
          )
        frames.append(encode_jpeg(rgb, quality))
  except (av.error.FFmpegError, OSError) as e:
    raise CorruptVideoError(f'cannot decode video {path}: {type(e).__name__}: {e}', path) from e
  if not frames:
    raise CorruptVideoError(f'video {path} has no decodable frames', path)
  return frames, int(size[0]), int(size[1])


def pack_one(task):
  """('ok', metadata record, [frame JPEG bytes], width, height) or ('corrupt', message, path) of one entry."""
  full = datasets.join_root(task.root, task.path)
  try:
    if task.videos:
      frames, width, height = read_video(full, task.quality)
    else:
      frames, width, height = read_frame_folder(full, task.num_frames, task.template, task.verify)
  except CorruptVideoError as e:
    return ('corrupt', str(e), e.path)
  meta = {
      'path': task.path,
      'label': int(task.label),
      'num_frames': len(frames),
      'width': width,
      'height': height,
      'kind': 'videos' if task.videos else 'frames',
  }
  return ('ok', arrayrecord.encode_meta_record(meta), frames, width, height)


# ----------------------------------------------------------------------------------------------------
# lists


def parse_video_list(path, num_classes=None):
  """`VideoRecord`s (num_frames None where not given) of a video list `<path> [<num_frames>] <label>`,
  parsed by `datasets.parse_video_list_file` (the video source's own rule; errors name file:line).
  """
  return [
      datasets.VideoRecord(r.path, r.num_frames, r.label)
      for r in datasets.parse_video_list_file(path, num_classes)
  ]


def shard_bounds(num_records, num_shards):
  """[S + 1] list-line boundaries: shard s holds lines bounds[s]:bounds[s + 1] (sizes differ by <= 1)."""
  return [(s * num_records) // num_shards for s in range(num_shards + 1)]


# ----------------------------------------------------------------------------------------------------
# packing


def pack(
    list_file,
    root,
    out,
    *,
    template=DEFAULT_TEMPLATE,
    videos=False,
    num_shards=None,
    workers=1,
    classes_file=None,
    skip_corrupt=False,
    verify='decode',
    quality=DEFAULT_QUALITY,
    overwrite=False,
    progress=True,
):
  """Writes `out-SSSSS-of-NNNNN.array_record` shards and `out.json`; returns a summary dict.

  Phases: check the options, read the list, read and write every entry into temporary shards, then
  commit (replace the old set, rename the shards, write the index last).

  Args: as the command-line flags (module doc). num_shards None: ceil(N / RECORDS_PER_SHARD).
  Raises:
    PackError naming the file for a bad list, an unreadable input (unless skip_corrupt), an existing
    index (unless overwrite) or no records at all.
  """
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top

  start_time = time.perf_counter()
  _check_options(template, videos, verify)
  out = os.fspath(out)
  index_file = arrayrecord.index_path(out)
  if fileio.exists(index_file) and not overwrite:
    raise PackError(f'{index_file} exists; pass --overwrite to replace the packed dataset')
  classes, records = _read_records(list_file, classes_file, videos)
  n = len(records)
  num_shards = _choose_num_shards(num_shards, n)
  finals = [arrayrecord.shard_path(out, s, num_shards) for s in range(num_shards)]
  fileio.makedirs(os.path.dirname(fileio.absolute(out)))
  root = os.fspath(root)
  tasks = (
      Task(r.path, r.num_frames, r.label, root, template, bool(videos), verify, int(quality))
      for r in records
  )
  # Every shard is written to a temporary (`{shard}.tmp-<pid>`; for a URL a local file) that
  # becomes the shard when the block ends (renamed, or uploaded in one write); a failure removes
  # them all, leaving the old set as it was.
  with contextlib.ExitStack() as shards:
    temps = [shards.enter_context(fileio.atomic_path(p)) for p in finals]
    results = fileio.map_ordered(pack_one, tasks, int(workers), in_flight_per_worker=4)
    bar = tqdm(results, total=n, unit='video', disable=not progress, dynamic_ncols=True)
    packed = _write_shards(
        bar,
        results,
        records,
        shard_bounds(n, num_shards),
        temps,
        list_file=list_file,
        videos=videos,
        skip_corrupt=skip_corrupt,
    )
    _drop_old_set(index_file, finals)
  source = {
      'list': fileio.absolute(list_file),
      'root': fileio.absolute(root),
      'template': None if videos else template,
      'verify': None if videos else verify,
      'jpeg_quality': int(quality) if videos else None,
  }
  index = _index(packed, finals, classes, source, videos)
  fileio.write_json(index_file, index, separators=(',', ':'), newline=True)
  seconds = time.perf_counter() - start_time
  return {
      'index': index_file,
      'num_videos': index['num_videos'],
      'num_records': index['num_records'],
      'num_shards': num_shards,
      'skipped': len(packed.skipped),
      'frame_count_mismatches': len(packed.mismatches),
      'bytes': packed.total_bytes,
      'seconds': round(seconds, 2),
      'videos_per_second': round(n / seconds, 1),
  }


def _check_options(template, videos, verify):
  """Checks --verify and (frame folders) --template before reading anything: a typo fails first."""
  if verify not in VERIFY:
    raise PackError(f'verify must be one of {VERIFY}, got {verify!r}')
  if not videos:
    try:
      template.format(1)
    except (IndexError, KeyError, ValueError):
      raise PackError(
          f'template must format one integer, e.g. "img_{{:05d}}.jpg", ' f'got {template!r}'
      ) from None


def _read_records(list_file, classes_file, videos):
  """(class names or None, [N] VideoRecords) of the list; the names bound the labels it may hold.

  Raises PackError for a bad line (the parser's message names file:line) or an empty list.
  """
  classes = datasets.read_class_names(classes_file) if classes_file else None
  num_classes = len(classes) if classes else None
  try:
    records = (
        parse_video_list(list_file, num_classes)
        if videos
        else datasets.parse_list_file(list_file, num_classes)
    )
  except ValueError as e:
    raise PackError(str(e)) from None
  if not records:
    raise PackError(f'{list_file}: no records')
  return classes, records


def _choose_num_shards(num_shards, num_records):
  """The shard count: as asked, or ceil(N / RECORDS_PER_SHARD); every shard must hold >= 1 line."""
  num_shards = int(num_shards) if num_shards else max(1, math.ceil(num_records / RECORDS_PER_SHARD))
  if not 1 <= num_shards <= num_records:
    raise PackError(
        f'--shards must be in [1, {num_records}] for {num_records} records, ' f'got {num_shards}'
    )
  return num_shards


@dataclasses.dataclass
class _Packed:
  """What the shards hold so far: the index's columns and per-shard counts, skipped and mismatched
  entries, and the bytes written (the summary's 'bytes')."""

  num_shards: int
  cols: dict = dataclasses.field(
      default_factory=lambda: {key: [] for key in arrayrecord.INDEX_COLUMNS}
  )
  skipped: list = dataclasses.field(default_factory=list)
  mismatches: list = dataclasses.field(default_factory=list)
  total_bytes: int = 0

  def __post_init__(self):
    self.videos_in = [0] * self.num_shards  # per shard
    self.records_in = [0] * self.num_shards  # per shard: videos + frames

  def skip(self, record, message, list_file, skip_corrupt):
    """Records an unreadable entry as skipped; without skip_corrupt, a PackError naming it."""
    if not skip_corrupt:
      raise PackError(
          f'{message} (list {list_file}, entry {record.path!r}); pass --skip_corrupt '
          f'to leave unreadable videos out'
      )
    self.skipped.append({'path': record.path, 'error': message})

  def add(self, writer, shard, record, result, videos):
    """Writes one video (its metadata record, then frames 1..F) to `writer`, the shard `shard`, and
    adds its index row; a video file whose decoded count differs from the list's is noted."""
    _, meta, frames, width, height = result
    num_frames = len(frames)
    if videos and record.num_frames is not None and record.num_frames != num_frames:
      self.mismatches.append(
          {'path': record.path, 'list': record.num_frames, 'decoded': num_frames}
      )
    position = self.records_in[shard]
    for data in (meta, *frames):  # the metadata record, then frames 1..F at position + 1..F
      writer.write(data)
      self.total_bytes += len(data)
    self.videos_in[shard] += 1
    self.records_in[shard] += 1 + num_frames
    row = (record.path, int(record.label), num_frames, width, height, shard, position)
    for key, value in zip(arrayrecord.INDEX_COLUMNS, row):
      self.cols[key].append(value)


def _write_shards(bar, results, records, bounds, temps, *, list_file, videos, skip_corrupt):
  """Writes the results (`bar` iterates `results`, one per list line, in order) into the temporary
  shards, shard s taking lines bounds[s]:bounds[s + 1]; returns the `_Packed` contents.

  On any error (or interrupt) the open writer is closed and the workers stopped; the caller's
  `fileio.atomic_path` blocks remove the temporary shards, so a failed run leaves nothing behind.
  """
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top

  packed = _Packed(len(temps))
  writer, shard = None, -1
  try:
    for i, result in enumerate(bar):
      if i == bounds[shard + 1]:  # first line of the next shard (every shard holds >= 1 line)
        if writer is not None:
          done, writer = writer, None
          _close_writer(done, temps[shard])
        shard += 1
        writer = array_record_module.ArrayRecordWriter(temps[shard], arrayrecord.WRITER_OPTIONS)
        if not writer.ok():
          raise PackError(f'cannot create {temps[shard]}')
      if result[0] == 'corrupt':
        packed.skip(records[i], result[1], list_file, skip_corrupt)
        bar.set_postfix(skipped=len(packed.skipped))
        continue
      packed.add(writer, shard, records[i], result, videos)
    if not packed.cols['path']:
      raise PackError(f'{list_file}: none of the {len(records)} entries is readable')
    done, writer = writer, None
    _close_writer(done, temps[shard])
  except BaseException:
    if writer is not None:
      writer.close()
    results.close()
    raise
  finally:
    bar.close()
  return packed


def _old_shard_files(index_file):
  """Shard file names an existing index (any format version) lists; [] if it is unreadable."""
  try:
    with fileio.open(index_file) as f:
      return [str(e['file']) for e in json.load(f)['shards']]
  except (ValueError, KeyError, TypeError, OSError):
    return []


def _drop_old_set(index_file, finals):
  """Before the new shards take their names: drops the old index first (so no index ever points at
  a mix), then the old shards that the new set `finals` does not reuse."""
  old = []
  if fileio.exists(index_file):
    old = _old_shard_files(index_file)  # a format-1 set is replaced too
    fileio.remove(index_file)
  folder = os.path.dirname(fileio.absolute(index_file))
  keep = {fileio.absolute(p) for p in finals}
  for path in (os.path.join(folder, name) for name in old):
    if fileio.absolute(path) not in keep:
      fileio.remove(path)


def _index(packed, finals, classes, source, videos):
  """The index dict (`OUT.json`, format version 2) of the committed shards `finals`."""
  index = {
      'format': arrayrecord.FORMAT_NAME,
      'format_version': arrayrecord.FORMAT_VERSION,
      'kind': 'videos' if videos else 'frames',
      'num_videos': len(packed.cols['path']),
      'num_records': sum(packed.records_in),
      'shards': [
          {'file': os.path.basename(p), 'num_videos': v, 'num_records': r}
          for p, v, r in zip(finals, packed.videos_in, packed.records_in)
      ],
      'classes': classes,
      'videos': packed.cols,
      'skipped': packed.skipped,
      'source': source,
  }
  if videos:
    index['frame_count_mismatches'] = packed.mismatches
  return index


def _close_writer(writer, path):
  ok = writer.ok()
  writer.close()
  if not ok:
    raise PackError(f'writing {path} failed')


def main(argv=None):
  parser = cli.ArgumentParser(
      prog='python -m rnl_jax.data.pack', description=__doc__.split('\n', 1)[0]
  )
  parser.add_argument(
      '--list',
      required=True,
      help='list file: `<folder> <num_frames> <label>` per line '
      '(with --videos: `<path> [<num_frames>] <label>`)',
  )
  parser.add_argument('--root', default='', help='folder the list paths are joined onto')
  parser.add_argument(
      '--out',
      required=True,
      help='output prefix: writes PREFIX-*-of-*.array_record and PREFIX.json (local or gs://)',
  )
  parser.add_argument('--template', default=DEFAULT_TEMPLATE, help='frame file name, 1-based')
  parser.add_argument(
      '--videos', action='store_true', help='the list holds video files (decoded with PyAV)'
  )
  parser.add_argument(
      '--shards',
      type=int,
      default=None,
      help=f'number of shards (default: one per {RECORDS_PER_SHARD} videos)',
  )
  parser.add_argument('--workers', type=int, default=1, help='reader processes (spawn)')
  parser.add_argument(
      '--classes', default=None, help='class-name file (line i = label i), stored in the index'
  )
  parser.add_argument(
      '--skip_corrupt',
      action='store_true',
      help='leave unreadable folders/videos out (listed in the index) instead of stopping',
  )
  parser.add_argument(
      '--verify',
      choices=VERIFY,
      default='decode',
      help='decode every frame (default) or only parse its JPEG header',
  )
  parser.add_argument(
      '--quality', type=int, default=DEFAULT_QUALITY, help='JPEG quality of --videos frames'
  )
  parser.add_argument('--overwrite', action='store_true', help='replace an existing packed dataset')
  parser.add_argument('--no_progress', action='store_true', help='no progress bar')
  args = parser.parse_args(argv)
  # Import ourselves by name: run as `-m`, this file is `__main__`, and spawn workers must find
  # `pack_one` under the package path.
  from rnl_jax.data import pack as packer  # pylint: disable=g-import-not-at-top,import-self

  with cli.user_errors(args.debug):  # PackError: `error: ..`, exit 2
    summary = packer.pack(
        args.list,
        args.root,
        args.out,
        template=args.template,
        videos=args.videos,
        num_shards=args.shards,
        workers=args.workers,
        classes_file=args.classes,
        skip_corrupt=args.skip_corrupt,
        verify=args.verify,
        quality=args.quality,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
  if summary['skipped']:
    print(
        f'skipped {summary["skipped"]} unreadable videos (listed under "skipped" in {summary["index"]})',
        file=sys.stderr,
    )
  if summary['frame_count_mismatches']:
    print(
        f'{summary["frame_count_mismatches"]} videos decoded to another frame count than the list gives '
        f'(the decoded count is stored; listed in {summary["index"]})',
        file=sys.stderr,
    )
  print(json.dumps(summary))
  return summary


if __name__ == '__main__':
  main()
