"""Videos packed into ArrayRecord shards (one record per frame) and a random-access clip source over them.

Why: a frame-folder dataset is millions of small files (slow to copy, list and open on network storage);
packing stores the JPEG frames as records of a few large shard files, while a training example still
reads and decodes only its sampled frames. `python -m rnl_jax.data.pack` writes the shards;
`ArrayRecordSource` reads them with the same sampling, decode-once and skip_corrupt behaviour as
`FrameFolderSource` (it is a `ClipSource`), and the same pixels: frames of a frame folder are stored as the
original JPEG bytes, never re-encoded, and decoded by `sources.decode_jpeg` with the same decoder.

Files (written by pack.py):

    PREFIX-00000-of-000NN.array_record ...   ArrayRecord shards, writer options WRITER_OPTIONS
                                             ('group_size:1,uncompressed': one record per chunk, so one
                                             frame is read without its neighbours; JPEG does not compress
                                             further)
    PREFIX.json                              the index, written last (its presence marks a complete set)

Shard layout (format version 2): each video is 1 + F consecutive records of one shard (a video is never
split across shards), in list order:

    position p          the video's metadata record (below)
    position p + k      frame k (1-based, k = 1..F): the JPEG bytes as they are in the frame folder
                        (videos: cv2-encoded JPEG of the decoded frame)

so a clip reads its metadata record and its T sampled frame records, nothing else (one range read per
run of consecutive positions). Each record is its own chunk with ArrayRecord's (riegeli's) checksums, so
damaged bytes fail the read of that record, and only a clip that reads it.

Metadata record (all integers little-endian; no pickle anywhere: loading a pickle runs code from the file):

    offset 0   4 bytes   magic b'RNLV'
           4   uint16    record format version (2)
           6   uint16    flags (0)
           8   uint32    F, number of frames (the F records that follow)
          12   uint32    M, length of the metadata
          16   M bytes   UTF-8 JSON object: path (the list's folder or video path), label, num_frames (= F),
                         width, height (of frame 1), kind ('frames' | 'videos')

It is read with every clip and checked against the index (path, label, F), so an index that does not belong
to its shards fails loudly instead of serving another video's frames; it also lets shards without their
index be listed (`load_dataset` hops from one metadata record to the next).

The index (JSON object, format_version 2):

    format: 'rnl_jax.arrayrecord', format_version: 2, kind: 'frames' | 'videos'
    num_videos: N, num_records: sum over videos of 1 + F (records in all shards)
    shards: [{'file': name relative to the index's folder, 'num_videos': n, 'num_records': r}, ...]
    classes: [name of label 0, ...] or null
    videos: {'path': [...], 'label': [...], 'num_frames': [...], 'width': [...], 'height': [...],
             'shard': [...], 'position': [...]}
            one column entry per video, in global order (shard 0 first), `position` = the metadata record's
            position in its shard (frames at position + 1 .. position + F); building `source.records`
            reads no record
    skipped: [{'path', 'error'}, ...]   list entries the packer skipped (--skip_corrupt)
    source: how the shards were made (list file, root, template, verify, JPEG quality of videos)

Version 1 (one record per video holding all its frames) is not readable: reading its index or records
raises an error asking to re-pack.

Cost: per clip T + 1 range reads and T JPEG decodes, the same work as frame folders and as fast,
whatever the video's length (format 1 read whole videos: docs/performance.md#input-decoding).
Memory: an open ArrayRecordReader holds its shard's chunk offsets, about 8 bytes per record, i.e. a few MB
per 1000 videos of 300 frames in every process that reads the shard.

Buckets: index and shards may be in `gs://` (the index read through rnl_jax.fileio; the shards by
ArrayRecord's reader itself, whose C++ file layer has a GCS client: the URL is passed through). It
has no S3 client, so `s3://` (or any other URL) shards are an error asking to copy them to local
disk or to gs://.
"""

import dataclasses
import glob
import json
import logging
import os
import re
import struct
import threading

import numpy as np

from rnl_jax import fileio
from rnl_jax.data import datasets, sources
from rnl_jax.data.datasets import VideoRecord
from rnl_jax.data.sources import ClipSource, CorruptVideoError
from rnl_jax.errors import DataError, UserError

log = logging.getLogger(__name__)

MAGIC = b'RNLV'
RECORD_VERSION = 2
FORMAT_NAME = 'rnl_jax.arrayrecord'
FORMAT_VERSION = 2  # of the index JSON
SHARD_SUFFIX = '.array_record'
WRITER_OPTIONS = 'group_size:1,uncompressed'
READER_OPTIONS = (
    'readahead_buffer_size:0,max_parallelism:0'  # random access (ArrayRecordReader docs)
)
READ_BUFFER = 1 << 14  # bytes; the fastest for 40 kB frames (docs/performance.md#input-decoding)
DECODERS = sources.DECODERS
REPACK = (
    'written by an older rnl_jax (format 1: one record per video); re-pack it with '
    'python -m rnl_jax.data.pack'
)
_HEADER = struct.Struct('<4sHHII')  # magic, version, flags, num_frames, meta_len: 16 bytes
_SHARD_RE = re.compile(
    r'^(?P<prefix>.*)-(?P<shard>\d{5})-of-(?P<num>\d{5})' + re.escape(SHARD_SUFFIX) + '$'
)
INDEX_COLUMNS = ('path', 'label', 'num_frames', 'width', 'height', 'shard', 'position')


class RecordFormatError(UserError, ValueError):
  """Bytes that are not a valid metadata record of this format."""


# ----------------------------------------------------------------------------------------------------
# the metadata record


def encode_meta_record(meta):
  """Metadata record bytes of one video; `meta` = JSON-able dict with 'num_frames' (F, an int >= 0)."""
  num_frames = int(meta['num_frames'])
  text = json.dumps(
      dict(meta, num_frames=num_frames), sort_keys=True, separators=(',', ':')
  ).encode('utf-8')
  return _HEADER.pack(MAGIC, RECORD_VERSION, 0, num_frames, len(text)) + text


def parse_meta_record(data):
  """The metadata dict of a metadata record's bytes; RecordFormatError if they are not one."""
  view = memoryview(data)
  if len(view) < _HEADER.size:
    raise RecordFormatError(
        f'record of {len(view)} bytes is shorter than the {_HEADER.size}-byte header'
    )
  magic, version, _, num_frames, meta_len = _HEADER.unpack_from(view)
  if magic != MAGIC:
    raise RecordFormatError(
        f'bad magic {bytes(magic)!r} (expected {MAGIC!r}): not an rnl_jax video ' f'metadata record'
    )
  if version == 1:
    raise RecordFormatError(
        f'record format version 1, this code reads version {RECORD_VERSION}: shard ' f'{REPACK}'
    )
  if version != RECORD_VERSION:
    raise RecordFormatError(
        f'record format version {version}, this code reads version {RECORD_VERSION}'
    )
  if len(view) != _HEADER.size + meta_len:
    raise RecordFormatError(
        f'metadata record of {len(view)} bytes, its header says ' f'{_HEADER.size + meta_len}'
    )
  try:
    meta = json.loads(bytes(view[_HEADER.size :]).decode('utf-8'))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise RecordFormatError(f'unreadable record metadata: {e}') from None
  if not isinstance(meta, dict) or meta.get('num_frames') != num_frames:
    raise RecordFormatError(f'metadata {meta!r} does not match the header frame count {num_frames}')
  return meta


# ----------------------------------------------------------------------------------------------------
# index and shards


def shard_path(prefix, shard, num_shards):
  """`PREFIX-00003-of-00016.array_record`."""
  return f'{prefix}-{shard:05d}-of-{num_shards:05d}{SHARD_SUFFIX}'


def index_path(prefix):
  return f'{prefix}.json'


def check_readable_location(path):
  """DataError unless ArrayRecord's reader can open `path`: a local file or a gs:// object (its
  C++ file layer has a GCS client but none for S3 or other URLs)."""
  path = os.fspath(path)
  if fileio.is_remote(path) and not path.startswith('gs://'):
    raise DataError(
        f"{path}: ArrayRecord's reader opens local files and gs:// objects only (it has no "
        f'{path.split("://", 1)[0]}:// client); copy the packed dataset (shards and index) to '
        f'local disk or to a gs:// bucket'
    )


def open_reader(path):
  """ArrayRecordReader set up for random access; FileNotFoundError / ValueError naming an unusable
  file, DataError for a URL it cannot read (`check_readable_location`)."""
  from array_record.python.array_record_module import ArrayRecordReader  # pylint: disable=g-import-not-at-top

  check_readable_location(path)
  if not fileio.isfile(path):
    raise FileNotFoundError(f'ArrayRecord shard {path} does not exist')
  # gs:// URLs go to the reader as they are (never through abspath, which folds gs:// into gs:/).
  reader = ArrayRecordReader(os.fspath(path), READER_OPTIONS, file_reader_buffer_size=READ_BUFFER)
  if not reader.ok():
    raise ValueError(f'{path} is not a readable ArrayRecord file (truncated or not ArrayRecord)')
  return reader


def read_index(path):
  """The index JSON at `path` (local or a URL), checked for format name, version and consistency
  (ValueError naming it)."""
  with fileio.open(path) as f:
    try:
      index = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f'{path}: not a JSON index: {e}') from None
  if not isinstance(index, dict) or index.get('format') != FORMAT_NAME:
    raise ValueError(
        f'{path}: not an {FORMAT_NAME} index (format={index.get("format")!r})'
        if isinstance(index, dict)
        else f'{path}: not an {FORMAT_NAME} index'
    )
  version = index.get('format_version')
  if version == 1:
    raise ValueError(
        f'{path}: index format_version 1, this code reads {FORMAT_VERSION}: the dataset was '
        f'{REPACK}'
    )
  if version != FORMAT_VERSION:
    raise ValueError(f'{path}: index format_version {version}, this code reads {FORMAT_VERSION}')
  try:
    _check_layout(index)
  except (KeyError, TypeError, ValueError) as e:
    raise ValueError(f'{path}: inconsistent index: {type(e).__name__}: {e}') from None
  return index


def _check_layout(index):
  """ValueError unless the index's columns, shard counts and positions describe consecutive videos."""
  cols, n = index['videos'], int(index['num_videos'])
  if any(len(cols[k]) != n for k in INDEX_COLUMNS):
    raise ValueError(
        f'num_videos {n} but columns of {[len(cols[k]) for k in INDEX_COLUMNS]} entries'
    )
  frames = np.asarray(cols['num_frames'], np.int64).reshape(-1)  # [N]
  shard = np.asarray(cols['shard'], np.int64).reshape(-1)  # [N]
  position = np.asarray(cols['position'], np.int64).reshape(-1)  # [N]
  num_shards = len(index['shards'])
  if n and (
      np.any(frames < 0) or np.any(np.diff(shard) < 0) or shard[0] < 0 or shard[-1] >= num_shards
  ):
    raise ValueError('negative frame counts or shard numbers out of order')
  videos = np.bincount(shard, minlength=num_shards)  # [S]
  records = np.bincount(shard, weights=frames + 1, minlength=num_shards)  # [S]
  for s, entry in enumerate(index['shards']):
    if (int(entry['num_videos']), int(entry['num_records'])) != (int(videos[s]), int(records[s])):
      raise ValueError(
          f'shard {entry["file"]} lists {entry["num_videos"]} videos / {entry["num_records"]} '
          f'records, the columns give {int(videos[s])} / {int(records[s])}'
      )
  # Within a shard, video i + 1 starts right after video i's F frames; the first at position 0.
  first = np.ones(n, bool)
  first[1:] = shard[1:] != shard[:-1]
  expected = np.empty(n, np.int64)
  expected[first] = 0
  expected[1:][~first[1:]] = (position[:-1] + frames[:-1] + 1)[~first[1:]]
  if np.any(position != expected):
    i = int(np.flatnonzero(position != expected)[0])
    raise ValueError(
        f'video {i} ({cols["path"][i]}) at position {int(position[i])}, expected '
        f'{int(expected[i])}'
    )
  if sum(int(e['num_records']) for e in index['shards']) != int(index['num_records']):
    raise ValueError('num_records differs from the sum over the shards')


@dataclasses.dataclass(frozen=True, kw_only=True)
class PackedRecord(VideoRecord):
  """A `VideoRecord` (path, num_frames, label) plus where it lives: shard number (in the source's `shards`)
  and position of its metadata record; frame k is the record at position + k."""

  shard: int
  position: int
  width: int = 0
  height: int = 0


def _index_records(index, index_file, only=None):
  """(shard paths, their record counts, records) of an index; `only` = absolute shard paths
  (`fileio.absolute`) to keep."""
  folder = os.path.dirname(fileio.absolute(index_file))
  cols = index['videos']
  keep, shards, counts = {}, [], []
  for s, entry in enumerate(index['shards']):
    path = os.path.join(folder, entry['file'])
    if only is None or fileio.absolute(path) in only:
      keep[s] = len(shards)
      shards.append(path)
      counts.append(int(entry['num_records']))
  records = [
      PackedRecord(
          str(cols['path'][i]),
          int(cols['num_frames'][i]),
          int(cols['label'][i]),
          shard=keep[cols['shard'][i]],
          position=int(cols['position'][i]),
          width=int(cols['width'][i]),
          height=int(cols['height'][i]),
      )
      for i in range(int(index['num_videos']))
      if cols['shard'][i] in keep
  ]
  return shards, counts, records


def _scan_records(shards):
  """(shards, counts, records) of index-less shards, from their metadata records (hops over the frames)."""
  counts, records = [], []
  for s, path in enumerate(shards):
    reader = open_reader(path)
    try:
      counts.append(reader.num_records())
      position = 0
      while position < counts[-1]:
        try:
          meta = parse_meta_record(reader.read([position])[0])
        except (RuntimeError, RecordFormatError) as e:
          raise ValueError(
              f'{path}: record {position} is not a readable video metadata record ({e}); '
              f'cannot list the shard without its index'
          ) from None
        records.append(
            PackedRecord(
                str(meta['path']),
                int(meta['num_frames']),
                int(meta['label']),
                shard=s,
                position=position,
                width=int(meta.get('width', 0)),
                height=int(meta.get('height', 0)),
            )
        )
        position += 1 + int(meta['num_frames'])
      if position != counts[-1]:
        raise ValueError(
            f"{path}: the last video ({records[-1].path}) runs past the shard's "
            f'{counts[-1]} records (truncated shard?)'
        )
    finally:
      reader.close()
  return shards, counts, records


def load_dataset(spec):
  """(index file or None, index dict or None, shard paths, record count per shard, records) of `spec`.

  `spec`: an index `PREFIX.json`; a `PREFIX` with `PREFIX.json` beside it; or a shard file / glob pattern
  of shard files (sorted by name). For shards, the index of their prefix supplies the records if it lists
  them all (a subset of an index's shards is fine); otherwise the shards' metadata records are read.
  Local or gs:// (a URL the reader cannot open is a DataError before anything is read).
  """
  spec = os.fspath(spec)
  check_readable_location(spec)
  if not glob.has_magic(spec) and (spec.endswith('.json') or fileio.isfile(index_path(spec))):
    ipath = spec if spec.endswith('.json') else index_path(spec)
    index = read_index(ipath)
    return ipath, index, *_index_records(index, ipath)
  shards = fileio.glob(spec) if glob.has_magic(spec) else ([spec] if fileio.isfile(spec) else [])
  if not shards:
    raise FileNotFoundError(
        f'no ArrayRecord index or shards match {spec!r} (expected PREFIX.json, PREFIX '
        f'with PREFIX.json beside it, a shard file or a glob pattern of shards)'
    )
  match = _SHARD_RE.match(shards[0])
  if match and fileio.isfile(index_path(match['prefix'])):
    ipath = index_path(match['prefix'])
    index = read_index(ipath)
    folder = os.path.dirname(fileio.absolute(ipath))
    wanted = {fileio.absolute(p) for p in shards}
    if wanted <= {fileio.absolute(os.path.join(folder, e['file'])) for e in index['shards']}:
      return ipath, index, *_index_records(index, ipath, only=wanted)
  log.warning('no index lists the shards %s; reading their metadata records to list them', spec)
  return None, None, *_scan_records(shards)


# ----------------------------------------------------------------------------------------------------
# the source


class _PackedVideo:
  """Handle of one packed video: F from the index; `decode` reads the metadata and wanted frame records."""

  def __init__(self, source, index):
    self.source = source
    self.index = index
    self.num_frames = source.records[index].num_frames

  def _read(self, positions):
    """Records at sorted distinct `positions` of the video's shard; CorruptVideoError naming a bad one.

    One range read per run of consecutive positions: `read(start, end)` costs half of what
    `read([p, ...])` does per record (docs/performance.md#input-decoding), and both are stateless
    (safe across threads).
    """
    src, record = self.source, self.source.records[self.index]
    reader = src.reader(record.shard)
    out, start = [], 0
    try:
      for i in range(1, len(positions) + 1):
        if i == len(positions) or positions[i] != positions[i - 1] + 1:
          out.extend(reader.read(positions[start], positions[i - 1] + 1))
          start = i
      return out
    except (
        RuntimeError
    ) as e:  # riegeli: chunk hash mismatch, truncated file, position out of range, ...
      error, bad = e, positions[start]
      for p in positions[start:]:  # which one? (error path only)
        try:
          reader.read(p, p + 1)
        except RuntimeError as e1:
          error, bad = e1, p
          break
    where = src.video_path(self.index)
    what = (
        'metadata record'
        if bad == record.position
        else f'record {bad} (frame {bad - record.position})'
    )
    raise CorruptVideoError(f'cannot read {what} of {where}: {error}', where) from None

  def decode(self, numbers):
    src, record = self.source, self.source.records[self.index]
    where = src.video_path(self.index)
    numbers = [int(k) for k in numbers]
    sources.check_frame_numbers(numbers, record.num_frames, where)
    data = self._read([record.position] + [record.position + k for k in numbers])
    try:
      meta = parse_meta_record(data[0])
    except RecordFormatError as e:
      raise CorruptVideoError(f'bad metadata record of {where}: {e}', where) from None
    stored = (meta['num_frames'], meta.get('label'), meta.get('path'))
    sources.check_stored_video(where, stored, record, 'shards')
    # 'cannot decode JPEG frame {name}: ...'
    name_of = lambda k: f'{k} (record {record.position + k}) of {where}'
    decode = lambda jpeg, name: sources.decode_jpeg(jpeg, name, src.decoder)
    return sources.decode_stored_frames(numbers, data[1:], where, decode, name_of)  # [K, H, W, 3]

  def close(self):
    pass


class ArrayRecordSource(ClipSource):
  """Sampled clips of packed videos, by global video index (a grain `MapDataset.source`).

  Args:
    spec: index `PREFIX.json`, `PREFIX`, a shard file or a glob pattern of shards (see
      `load_dataset`); local or gs://.
    decoder: JPEG decoder, see `sources.decode_jpeg` ('simplejpeg', the default, gives Pillow's pixels, as
      FrameFolderSource's default; 'simplejpeg_fast' approximate, training only; 'pil').
    filter_short: drop records upstream drops (F < 3 unless mode 'test' with remove_missing=False, as
      `datasets.filter_records`); `dropped` counts them. Off: every packed video is served.
    remove_missing: as `datasets.filter_records`, used with filter_short.
    check_shards: open every shard now and check its record count against the index (fails early, in
      the main process, instead of in a loader worker).
    **kwargs: as `ClipSource` (mode, num_segments, dense, twice_sample, num_clips, seed, skip_corrupt,
      fix_short, include_last_start).

  Attributes: records (`PackedRecord`s: path, num_frames, label, shard, position, width, height), classes
  (names or None), kind, shards (paths), shard_counts (records per shard), index_file. Readers are opened
  lazily per process and dropped when pickled, so the source can be sent to spawned loader workers.
  """

  def __init__(
      self,
      spec,
      *,
      decoder='simplejpeg',
      filter_short=False,
      remove_missing=True,
      check_shards=True,
      **kwargs,
  ):
    if decoder not in DECODERS:
      raise ValueError(f'decoder must be one of {DECODERS}, got {decoder!r}')
    self.index_file, index, self.shards, self.shard_counts, records = load_dataset(spec)
    self.classes = index.get('classes') if index else None
    self.kind = index.get('kind') if index else None
    super().__init__(records, **kwargs)
    self.dropped = 0
    if filter_short:
      self.records, self.dropped = datasets.filter_records(self.records, self.mode, remove_missing)
    self.decoder = decoder
    self._readers = {}
    self._pid = os.getpid()
    self._lock = threading.Lock()
    if check_shards:
      self.check_shards()

  def check_shards(self):
    """Opens every shard and compares its record count with the index; ValueError naming the shard."""
    for path, expected in zip(self.shards, self.shard_counts):
      reader = open_reader(path)
      try:
        n = reader.num_records()
      finally:
        reader.close()
      if n != expected:
        raise ValueError(
            f'{path} holds {n} records but {self.index_file or "the listing"} expects '
            f'{expected}: index and shards do not belong together'
        )

  def __getstate__(self):
    state = self.__dict__.copy()
    del state['_readers'], state['_lock']
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._readers = {}
    self._pid = os.getpid()
    self._lock = threading.Lock()

  def reader(self, shard):
    """This process's ArrayRecordReader of shard number `shard` (opened on first use; reopened after fork)."""
    if self._pid != os.getpid():  # forked: each process opens its own readers
      self._readers, self._lock, self._pid = {}, threading.Lock(), os.getpid()
    reader = self._readers.get(shard)
    if reader is None:
      with self._lock:
        reader = self._readers.get(shard)
        if reader is None:
          reader = self._readers[shard] = open_reader(self.shards[shard])
    return reader

  def close(self):
    """Closes this process's readers (they reopen on the next read)."""
    with self._lock:
      readers, self._readers = self._readers, {}
    for r in readers.values():
      r.close()

  def video_path(self, index):
    r = self.records[index]
    return f'{self.shards[r.shard]} record {r.position} (video {r.path})'

  def open_video(self, index):
    return _PackedVideo(self, index)

  def indices(self, index, rng=None, epoch=None):
    """1-based frame indices [clips, T] of video `index` (from the index: no record is read)."""
    return self.sample(index, self.records[index].num_frames, rng, epoch)
