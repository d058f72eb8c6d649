"""Videos packed into ArrayRecord shards (one record per video) and a random-access clip source over them.

Why: a frame-folder dataset is millions of small files (slow to copy, list and open on network storage);
packing stores each video's JPEG frames in one record of a few large shard files, while a training example
still decodes only its sampled frames. `python -m rnl_jax.data.pack` writes the shards; `ArrayRecordSource`
reads them with the same sampling, decode-once and skip_corrupt behaviour as `FrameFolderSource` (it is a
`ClipSource`), and the same pixels: frames of a frame folder are stored as the original JPEG bytes, never
re-encoded, and decoded with Pillow exactly like `sources.decode_frame`.

Files (written by pack.py):

    PREFIX-00000-of-000NN.array_record ...   ArrayRecord shards, writer options WRITER_OPTIONS
                                             ('group_size:1,uncompressed': one record per chunk for random
                                             access; JPEG does not compress further)
    PREFIX.json                              the index, written last (its presence marks a complete set)

The index (JSON object, format_version 1):

    format: 'rnl_jax.arrayrecord', format_version: 1, kind: 'frames' | 'videos'
    num_records: N
    shards: [{'file': name relative to the index's folder, 'num_records': n}, ...]
    classes: [name of label 0, ...] or null
    records: {'path': [...], 'num_frames': [...], 'label': [...], 'width': [...], 'height': [...]}
             one column entry per record, in global order (shard 0 first, then position in the shard),
             so building `source.records` reads no record
    skipped: [{'path', 'error'}, ...]   list entries the packer skipped (--skip_corrupt)
    source: how the shards were made (list file, root, template, verify, JPEG quality of videos)

A global record index i maps to (shard s, position i - sum of the earlier shards' num_records).

One record (all integers little-endian):

    offset 0   4 bytes   magic b'RNLV'
           4   uint16    record format version (1)
           6   uint16    flags (0)
           8   uint32    F, number of frames
          12   uint32    M, length of the metadata
          16   M bytes   metadata, UTF-8 JSON object: path (the list's folder or video path), label,
                         num_frames (= F), width, height (of frame 1), kind ('frames' | 'videos')
      16 + M   8(F+1)    uint64 offsets o_0 = 0 <= o_1 <= ... <= o_F of the frames in the payload
  16+M+8(F+1)  o_F bytes payload: the JPEG bytes of frames 1..F concatenated; frame k (1-based) is
                         payload[o_{k-1}:o_k]

so decoding frame k parses only the header, the offset table and its own bytes (no other frame is touched).
No pickle anywhere (loading a pickle runs code from the data file).

Decoders: 'pil' (default) is `sources.decode_frame`'s code on the stored bytes, so clips are pixel-identical
to FrameFolderSource's. 'simplejpeg' (optional package, ~1.8x faster per 340x256 frame) gave identical
pixels to Pillow for baseline/progressive, 4:2:0/4:2:2/4:4:4 and greyscale JPEGs with Pillow 13.0
(libjpeg-turbo 3.2) and simplejpeg 1.9 (both ISLOW DCT, fancy upsampling); CMYK JPEGs differ, so those go
to Pillow. Other builds may round differently: tests/test_pack.py checks equality on the installed ones.

Cost: ArrayRecord reads whole records, so every clip reads all F frames' bytes of its video (~1 GB/s,
e.g. ~7 ms for a 300-frame 340x256 video of 3.8 MB) although it decodes only T of them. On one core, 8-frame
TSN clips: F = 48 about 80 clips/s (Pillow) / 110 (simplejpeg) vs 120 from frame folders; F = 300 about
60 / 75 vs 120-170. Long videos pay most; the gain is in file counts and sequential storage, not CPU.
"""
import dataclasses
import glob
import io
import json
import logging
import os
import re
import struct
import threading

import numpy as np
from PIL import Image

from rnl_jax.data import datasets
from rnl_jax.data.datasets import VideoRecord
from rnl_jax.data.sources import ClipSource, CorruptVideoError, stack_frames

log = logging.getLogger(__name__)

MAGIC = b'RNLV'
RECORD_VERSION = 1
FORMAT_NAME = 'rnl_jax.arrayrecord'
FORMAT_VERSION = 1  # of the index JSON
SHARD_SUFFIX = '.array_record'
WRITER_OPTIONS = 'group_size:1,uncompressed'
READER_OPTIONS = 'readahead_buffer_size:0,max_parallelism:0'  # random access (ArrayRecordReader docs)
DECODERS = ('pil', 'simplejpeg')
_HEADER = struct.Struct('<4sHHII')  # magic, version, flags, num_frames, meta_len: 16 bytes
_SHARD_RE = re.compile(r'^(?P<prefix>.*)-(?P<shard>\d{5})-of-(?P<num>\d{5})' + re.escape(SHARD_SUFFIX) + '$')


class RecordFormatError(ValueError):
  """Bytes that are not a valid record of this format."""


# ----------------------------------------------------------------------------------------------------
# the record format


def encode_record(frames, meta):
  """Record bytes of one video: `frames` = JPEG bytes of frames 1..F, `meta` = JSON-able dict.

  `meta['num_frames']` is set to F.
  """
  frames = [bytes(f) if not isinstance(f, bytes) else f for f in frames]
  meta = dict(meta, num_frames=len(frames))
  text = json.dumps(meta, sort_keys=True, separators=(',', ':')).encode('utf-8')
  offsets = np.zeros(len(frames) + 1, '<u8')                       # [F + 1]
  np.cumsum(np.fromiter(map(len, frames), np.uint64, len(frames)), out=offsets[1:])
  header = _HEADER.pack(MAGIC, RECORD_VERSION, 0, len(frames), len(text))
  return b''.join([header, text, offsets.tobytes(), *frames])


class ParsedRecord:
  """A validated view of one record's bytes: `meta`, `num_frames`, `frame(k)` (JPEG bytes, 1-based k)."""

  def __init__(self, data):
    view = memoryview(data)
    if len(view) < _HEADER.size:
      raise RecordFormatError(f'record of {len(view)} bytes is shorter than the {_HEADER.size}-byte header')
    magic, version, _, num_frames, meta_len = _HEADER.unpack_from(view)
    if magic != MAGIC:
      raise RecordFormatError(f'bad magic {bytes(magic)!r} (expected {MAGIC!r}): not an rnl_jax video record')
    if version != RECORD_VERSION:
      raise RecordFormatError(f'record format version {version}, this code reads version {RECORD_VERSION}')
    table = _HEADER.size + meta_len
    payload = table + 8 * (num_frames + 1)
    if len(view) < payload:
      raise RecordFormatError(f'record of {len(view)} bytes is shorter than its header, metadata and '
                              f'offset table ({payload} bytes)')
    try:
      self.meta = json.loads(bytes(view[_HEADER.size:table]).decode('utf-8'))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
      raise RecordFormatError(f'unreadable record metadata: {e}') from None
    if not isinstance(self.meta, dict) or self.meta.get('num_frames') != num_frames:
      raise RecordFormatError(f'metadata {self.meta!r} does not match the header frame count {num_frames}')
    self.offsets = np.frombuffer(view[table:payload], '<u8')   # [F + 1]
    if (self.offsets[0] != 0 or np.any(np.diff(self.offsets.astype(np.int64)) < 0)
        or int(self.offsets[-1]) != len(view) - payload):
      raise RecordFormatError(f'bad frame offset table (payload of {len(view) - payload} bytes, '
                              f'offsets from {int(self.offsets[0])} to {int(self.offsets[-1])})')
    self.num_frames = num_frames
    self._payload = view[payload:]

  def frame(self, number):
    """JPEG bytes (memoryview) of 1-based frame `number`."""
    if not 1 <= number <= self.num_frames:
      raise IndexError(f'frame {number} outside 1..{self.num_frames}')
    return self._payload[int(self.offsets[number - 1]):int(self.offsets[number])]


def parse_record(data):
  """`ParsedRecord` of record bytes; RecordFormatError if they are not a valid record."""
  return ParsedRecord(data)


# ----------------------------------------------------------------------------------------------------
# JPEG decoding


def decode_jpeg_pil(data):
  """uint8 [H, W, 3] RGB; the same calls as `sources.decode_frame`, so the same pixels."""
  with Image.open(io.BytesIO(data), formats=('JPEG',)) as img:
    img.load()  # decodes now, so truncation raises here
    return np.asarray(img.convert('RGB'))


def decode_jpeg_simplejpeg(data):
  """uint8 [H, W, 3] RGB via libjpeg-turbo (simplejpeg, strict); CMYK/YCCK via Pillow (simplejpeg differs)."""
  import simplejpeg  # pylint: disable=g-import-not-at-top  (optional dependency)
  if simplejpeg.decode_jpeg_header(data)[2] not in ('YCbCr', 'Gray'):
    return decode_jpeg_pil(data)
  return simplejpeg.decode_jpeg(data, colorspace='RGB', fastdct=False, fastupsample=False, strict=True)


_DECODE = {'pil': decode_jpeg_pil, 'simplejpeg': decode_jpeg_simplejpeg}
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


# ----------------------------------------------------------------------------------------------------
# index and shards


def shard_path(prefix, shard, num_shards):
  """`PREFIX-00003-of-00016.array_record`."""
  return f'{prefix}-{shard:05d}-of-{num_shards:05d}{SHARD_SUFFIX}'


def index_path(prefix):
  return f'{prefix}.json'


def open_reader(path):
  """ArrayRecordReader set up for random access; FileNotFoundError / ValueError naming an unusable file."""
  from array_record.python.array_record_module import ArrayRecordReader  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    raise FileNotFoundError(f'ArrayRecord shard {path} does not exist')
  reader = ArrayRecordReader(os.fspath(path), READER_OPTIONS, file_reader_buffer_size=1 << 16)
  if not reader.ok():
    raise ValueError(f'{path} is not a readable ArrayRecord file (truncated or not ArrayRecord)')
  return reader


def read_index(path):
  """The index JSON at `path`, checked for format name and version."""
  with open(path) as f:
    try:
      index = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f'{path}: not a JSON index: {e}') from None
  if not isinstance(index, dict) or index.get('format') != FORMAT_NAME:
    raise ValueError(f'{path}: not an {FORMAT_NAME} index (format={index.get("format")!r})'
                     if isinstance(index, dict) else f'{path}: not an {FORMAT_NAME} index')
  if index.get('format_version') != FORMAT_VERSION:
    raise ValueError(f'{path}: index format_version {index.get("format_version")}, this code reads '
                     f'{FORMAT_VERSION}')
  cols = index['records']
  n = index['num_records']
  if any(len(cols[k]) != n for k in ('path', 'num_frames', 'label')) or \
      sum(s['num_records'] for s in index['shards']) != n:
    raise ValueError(f'{path}: inconsistent index (num_records {n}, record columns and shard counts '
                     f'disagree)')
  return index


@dataclasses.dataclass(frozen=True, kw_only=True)
class PackedRecord(VideoRecord):
  """A `VideoRecord` (path, num_frames, label) plus where it lives: shard number and position in it."""
  shard: int
  position: int
  width: int = 0
  height: int = 0


def _index_records(index, index_file, only=None):
  """(shard paths, their record counts, records) of an index; `only` = absolute shard paths to keep."""
  folder = os.path.dirname(os.path.abspath(index_file))
  cols = index['records']
  widths, heights = cols.get('width'), cols.get('height')
  shards, counts, records, start = [], [], [], 0
  for entry in index['shards']:
    path = os.path.join(folder, entry['file'])
    count = int(entry['num_records'])
    if only is None or os.path.abspath(path) in only:
      s = len(shards)
      shards.append(path)
      counts.append(count)
      records.extend(
          PackedRecord(cols['path'][i], int(cols['num_frames'][i]), int(cols['label'][i]), shard=s,
                       position=i - start, width=int(widths[i]) if widths else 0,
                       height=int(heights[i]) if heights else 0)
          for i in range(start, start + count))
    start += count
  return shards, counts, records


def _scan_records(shards):
  """(shards, counts, records) of index-less shards, from every record's metadata (reads every record)."""
  counts, records = [], []
  for s, path in enumerate(shards):
    reader = open_reader(path)
    try:
      counts.append(reader.num_records())
      for position in range(counts[-1]):
        try:
          meta = parse_record(reader.read([position])[0]).meta
        except (RuntimeError, RecordFormatError) as e:
          raise ValueError(f'{path}: record {position} is unreadable ({e}); cannot list the shard '
                           f'without its index') from None
        records.append(PackedRecord(str(meta['path']), int(meta['num_frames']), int(meta['label']),
                                    shard=s, position=position, width=int(meta.get('width', 0)),
                                    height=int(meta.get('height', 0))))
    finally:
      reader.close()
  return shards, counts, records


def load_dataset(spec):
  """(index file or None, index dict or None, shard paths, record count per shard, records) of `spec`.

  `spec`: an index `PREFIX.json`; a `PREFIX` with `PREFIX.json` beside it; or a shard file / glob pattern
  of shard files (sorted by name). For shards, the index of their prefix supplies the records if it lists
  them all (a subset of an index's shards is fine); otherwise every record is read to list them.
  """
  spec = os.fspath(spec)
  if not glob.has_magic(spec) and (spec.endswith('.json') or os.path.isfile(index_path(spec))):
    ipath = spec if spec.endswith('.json') else index_path(spec)
    index = read_index(ipath)
    return ipath, index, *_index_records(index, ipath)
  shards = sorted(glob.glob(spec)) if glob.has_magic(spec) else ([spec] if os.path.isfile(spec) else [])
  if not shards:
    raise FileNotFoundError(f'no ArrayRecord index or shards match {spec!r} (expected PREFIX.json, PREFIX '
                            f'with PREFIX.json beside it, a shard file or a glob pattern of shards)')
  match = _SHARD_RE.match(shards[0])
  if match and os.path.isfile(index_path(match['prefix'])):
    ipath = index_path(match['prefix'])
    index = read_index(ipath)
    folder = os.path.dirname(os.path.abspath(ipath))
    wanted = {os.path.abspath(p) for p in shards}
    if wanted <= {os.path.abspath(os.path.join(folder, e['file'])) for e in index['shards']}:
      return ipath, index, *_index_records(index, ipath, only=wanted)
  log.warning('no index lists the shards %s; reading every record to list them', spec)
  return None, None, *_scan_records(shards)


# ----------------------------------------------------------------------------------------------------
# the source


class _PackedVideo:
  """Handle of one record: read once, frames decoded from their own bytes."""

  def __init__(self, source, index):
    self.source = source
    self.index = index
    record = source.records[index]
    where = source.video_path(index)
    try:
      data = source.reader(record.shard).read([record.position])[0]
    except RuntimeError as e:  # riegeli: chunk hash mismatch, truncated file, ...
      raise CorruptVideoError(f'cannot read {where}: {e}', where) from None
    try:
      self.record = parse_record(data)
    except RecordFormatError as e:
      raise CorruptVideoError(f'bad record {where}: {e}', where) from None
    meta = self.record.meta
    if (self.record.num_frames, meta.get('label'), meta.get('path')) != (
        record.num_frames, record.label, record.path):
      raise CorruptVideoError(
          f'{where} holds {meta.get("path")!r} (F={self.record.num_frames}, label {meta.get("label")}) '
          f'but the index says {record.path!r} (F={record.num_frames}, label {record.label}): '
          f'index and shards do not belong together', where)
    self.num_frames = self.record.num_frames

  def decode(self, numbers):
    src = self.source
    where = src.video_path(self.index)
    frames = []
    for k in numbers:
      try:
        frames.append(src.decode_jpeg(self.record.frame(int(k))))        # [H, W, 3]
      except _DECODE_ERRORS as e:
        raise CorruptVideoError(f'cannot decode JPEG frame {int(k)} of {where}: {type(e).__name__}: {e}',
                                where) from e
    return stack_frames(frames, lambda j: f'{where} frame {int(numbers[j])}')  # [K, H, W, 3]

  def close(self):
    self.record = None


class ArrayRecordSource(ClipSource):
  """Sampled clips of packed videos, by global record index (a grain `MapDataset.source`).

  Args:
    spec: index `PREFIX.json`, `PREFIX`, a shard file or a glob pattern of shards (see `load_dataset`).
    decoder: 'pil' (pixel-identical to FrameFolderSource) or 'simplejpeg' (faster; see module doc).
    filter_short: drop records upstream drops (F < 3 unless mode 'test' with remove_missing=False, as
      `datasets.filter_records`); `dropped` counts them. Off: every packed record is served.
    remove_missing: as `datasets.filter_records`, used with filter_short.
    check_shards: open every shard now and check its record count against the index (fails early, in
      the main process, instead of in a loader worker).
    **kwargs: as `ClipSource` (mode, num_segments, dense, twice_sample, num_clips, seed, skip_corrupt,
      fix_short, include_last_start).

  Attributes: records (`PackedRecord`s: path, num_frames, label, shard, position), classes (names or
  None), shards (paths), index_file. Readers are opened lazily per process and dropped when pickled, so
  the source can be sent to spawned loader workers.
  """

  def __init__(self, spec, *, decoder='pil', filter_short=False, remove_missing=True, check_shards=True,
               **kwargs):
    if decoder not in DECODERS:
      raise ValueError(f'decoder must be one of {DECODERS}, got {decoder!r}')
    if decoder == 'simplejpeg':
      # fail now, not in a loader worker, if the optional package is absent
      import simplejpeg  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    self.index_file, index, self.shards, self.shard_counts, records = load_dataset(spec)
    self.classes = index.get('classes') if index else None
    self.kind = index.get('kind') if index else None
    super().__init__(records, **kwargs)
    self.dropped = 0
    if filter_short:
      self.records, self.dropped = datasets.filter_records(self.records, self.mode, remove_missing)
    self.decoder = decoder
    self.decode_jpeg = _DECODE[decoder]
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
        raise ValueError(f'{path} holds {n} records but {self.index_file or "the listing"} expects '
                         f'{expected}: index and shards do not belong together')

  def __getstate__(self):
    state = self.__dict__.copy()
    del state['_readers'], state['_lock'], state['decode_jpeg']
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self.decode_jpeg = _DECODE[self.decoder]
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
    """1-based frame indices [clips, T] of record `index` (from the index: no record is read)."""
    return self.sample(index, self.records[index].num_frames, rng, epoch)
