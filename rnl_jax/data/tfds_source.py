"""Clips from a TensorFlow Datasets (TFDS) dataset through grain, without TensorFlow (format tfds).

`TfdsSource` is a `ClipSource` over one split of a TFDS dataset stored as ArrayRecord: the same
sampling, decode-each-frame-once, skip_corrupt and (seed, epoch, index) generators as the frame
folders, so a dataset written by `python -m rnl_jax.data.tfds_write` gives the frame folders' clips
bit for bit. Records are read with `builder.as_data_source(split, decoders=...)` (what
`tfds.data_source` returns: an ArrayRecordDataSource) with the frames' decoding skipped
(`keep_encoded`): a clip decodes only its sampled frames, with `sources.decode_jpeg` and the
configured decoder.

The videos of a split (path, label, frame count) come from the dataset's metadata index
(`tfds_builder`), so listing them reads no record; a dataset without one (a TFDS catalog dataset)
is listed by one pass over its records (frames not decoded). Catalog datasets: the frames are the
`Sequence(Image)` / `Video` feature ('frames', else 'video', else the only one), the label the
`ClassLabel` ('label', else the only one). `tfds.features.Video` needs TensorFlow even to read
(`pip install -e '.[tfds-tf]'`); without it, opening such a dataset is a TfdsError saying so.
Datasets stored as TFRecord must be rebuilt as ArrayRecord (random access).

Cost: TFDS stores one record per video, so every clip reads (and decompresses: TFDS's ArrayRecord
writer compresses) the whole video's bytes, where the packed format (`arrayrecord.py`) reads only
the sampled frames: TFDS is for interoperability with other JAX tools, not a faster format
(docs/data.md#tensorflow-datasets).

data_dir may be a `gs://` URL: TFDS opens it through etils.epath and ArrayRecord's reader reads
gs:// itself (no S3 client: an `s3://` data_dir does not read).

Readers are opened lazily per process and dropped when pickled, so the source can be sent to grain's
worker processes. tensorflow_datasets is imported only here (and by the writer), never by `import
rnl_jax`.
"""

import dataclasses
import glob
import importlib.util
import io
import logging
import os
import threading

import numpy as np
from PIL import Image

from rnl_jax import fileio
from rnl_jax.data import datasets, sources
from rnl_jax.data.datasets import VideoRecord
from rnl_jax.data.sources import ClipSource, CorruptVideoError, check_frame_numbers
from rnl_jax.data.sources import check_stored_video, decode_stored_frames
from rnl_jax.errors import UserError

log = logging.getLogger(__name__)

METADATA_KEY = 'rnl_jax'  # tfds_builder.METADATA_KEY (not imported: that module imports TFDS)
FORMAT_NAME = 'rnl_jax.tfds'
FORMAT_VERSION = 1
INSTALL = "pip install -e '.[tfds]'"
INSTALL_TF = "pip install -e '.[tfds-tf]'"
JPEG_MAGIC = b'\xff\xd8'


class TfdsError(UserError, ValueError):
  """A TFDS dataset that cannot be read: missing package, dataset or split, TensorFlow-only
  features, a format without random access."""


def import_tfds():
  """tensorflow_datasets, or a TfdsError saying what to install."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise TfdsError(f'config.data.format=tfds needs tensorflow-datasets: {INSTALL} ({e})') from None
  return tfds


def describe(name, split, data_dir):
  """'tfds:NAME/SPLIT in DATA_DIR': how errors, logs and results name a split."""
  return f'tfds:{name}/{split} in {data_dir or "the default TFDS data_dir"}'


def _video_features(name, data_dir):
  """Whether a features.json of dataset `name` under `data_dir` declares a tfds.features.Video."""
  data_dir = data_dir or os.environ.get('TFDS_DATA_DIR', '') or '~/tensorflow_datasets'
  base = os.path.join(os.path.expanduser(data_dir), name.split('/')[0].split(':')[0])
  if fileio.is_remote(base):  # no `**` in bucket globs: NAME/VERSION and NAME/CONFIG/VERSION
    paths = fileio.glob(f'{base}/*/features.json') + fileio.glob(f'{base}/*/*/features.json')
  else:
    paths = glob.glob(os.path.join(glob.escape(base), '**', 'features.json'), recursive=True)
  for path in paths:
    try:
      with fileio.open(path) as f:
        if 'video_feature.Video' in f.read():
          return True
    except OSError:
      pass
  return False


def _needs_tensorflow(error):
  """Whether `error` (or its cause chain) is TensorFlow missing."""
  seen = set()
  while error is not None and id(error) not in seen:
    if isinstance(error, ModuleNotFoundError) and (error.name or '').split('.')[0] == 'tensorflow':
      return True
    seen.add(id(error))
    error = error.__cause__ or error.__context__
  return False


def open_builder(name, data_dir=''):
  """The TFDS builder of dataset `name` in `data_dir` ('' = TFDS's default), ready to read.

  TfdsError (one line, naming the config key) for a missing package or dataset, TensorFlow-only
  features, a dataset stored in a format without random access, or a data_dir URL other than
  gs:// (no S3 client in ArrayRecord's reader)."""
  tfds = import_tfds()
  where = data_dir or 'the default TFDS data_dir'
  if fileio.is_remote(data_dir) and not os.fspath(data_dir).startswith('gs://'):
    raise TfdsError(
        f'config.data.tfds_data_dir={data_dir!r}: TFDS reads its ArrayRecord files with '
        f"ArrayRecord's reader, which opens local files and gs:// objects only; copy the dataset "
        f'folder to local disk or to a gs:// bucket'
    )
  try:
    builder = tfds.builder(name, data_dir=data_dir or None)
    features = builder.info.features
  except Exception as e:  # pylint: disable=broad-except  (TFDS raises many kinds; named below)
    if _needs_tensorflow(e) and importlib.util.find_spec('tensorflow') is None:
      what = (
          'uses tfds.features.Video, which needs TensorFlow even to read'
          if _video_features(name, data_dir)
          else 'has features that need TensorFlow to read'
      )
      raise TfdsError(
          f'TFDS dataset {name!r} ({where}) {what}: install it with {INSTALL_TF} '
          f'(tensorflow-cpu), or write the frames with python -m '
          f'rnl_jax.data.tfds_write, which needs no TensorFlow'
      ) from None
    if isinstance(e, tfds.core.registered.DatasetNotFoundError):
      raise TfdsError(
          f'config.data.tfds_name={name!r}: no TFDS dataset of that name in {where} '
          f'(config.data.tfds_data_dir); write one with python -m '
          f'rnl_jax.data.tfds_write'
      ) from None
    raise
  if not _is_prepared(builder):
    raise TfdsError(
        f'config.data.tfds_name={name!r}: the dataset is not built in {where} '
        f'(config.data.tfds_data_dir); build it with tfds build {name} '
        f'--data_dir={data_dir or "DIR"} --file_format=array_record'
    )
  formats = {str(getattr(f, 'value', f)) for f in builder.info.available_file_formats()} or {
      str(getattr(builder.info.file_format, 'value', builder.info.file_format))
  }
  if 'array_record' not in formats:
    raise TfdsError(
        f'TFDS dataset {name!r} ({where}) is stored as {", ".join(sorted(formats))}, '
        f'which has no random access; rebuild it with tfds build {name} '
        f'--data_dir=... --file_format=array_record'
    )
  del features
  return builder


def _is_prepared(builder):
  try:
    return bool(builder.is_prepared())
  except AttributeError:
    return bool(builder.info.splits)


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where a dataset keeps its frames and labels: feature keys, class names, JPEG-only frames."""

  frames_key: str
  label_key: str
  classes: tuple
  path_key: str = None


def dataset_layout(builder):
  """The Layout of `builder`'s features; TfdsError if it has no frame sequence or no ClassLabel."""
  tfds = import_tfds()
  features = builder.info.features
  items = dict(features.items()) if hasattr(features, 'items') else {}

  def is_frames(f):
    return isinstance(f, tfds.features.Sequence) and isinstance(f.feature, tfds.features.Image)

  frames = [k for k, f in items.items() if is_frames(f)]
  labels = [k for k, f in items.items() if isinstance(f, tfds.features.ClassLabel)]
  only = frames[0] if len(frames) == 1 else None
  frames_key = next((k for k in ('frames', 'video') if k in frames), only)
  label_key = 'label' if 'label' in labels else (labels[0] if len(labels) == 1 else None)
  if frames_key is None or label_key is None:
    raise TfdsError(
        f'TFDS dataset {builder.name!r}: expected one frame sequence (tfds.features.'
        f'Video or Sequence(Image)) and one ClassLabel feature, found features '
        f'{sorted(items)}'
    )
  path_key = 'path' if isinstance(items.get('path'), tfds.features.Text) else None
  return Layout(frames_key, label_key, tuple(items[label_key].names), path_key)


def class_names(name, data_dir=''):
  """The class names of a TFDS dataset's label (its ClassLabel)."""
  return list(dataset_layout(open_builder(name, data_dir)).classes)


_KEEP_ENCODED = []  # the decoder class, made on first use (it subclasses a TFDS class)


def keep_encoded():
  """A tfds decoder that returns a feature's stored bytes: frames stay JPEG (or PNG) bytes, and a
  clip decodes only the frames it samples. tfds.decode.SkipDecoding lacks `decode_batch_example_np`,
  which a `Sequence(Image)` needs (TFDS 4.9.10); this subclass passes batches through too."""
  if not _KEEP_ENCODED:
    tfds = import_tfds()

    class KeepEncoded(tfds.decode.SkipDecoding):

      def decode_example_np(self, serialized_example):
        return serialized_example

      def decode_batch_example_np(self, serialized_example):
        return serialized_example

    _KEEP_ENCODED.append(KeepEncoded)
  return _KEEP_ENCODED[0]()


@dataclasses.dataclass(frozen=True, kw_only=True)
class TfdsRecord(VideoRecord):
  """A `VideoRecord` (path, num_frames, label) plus its record number in the split."""

  record: int


def _index_records(builder, split):
  """TfdsRecords of a split from the dataset's metadata index; None if it has none for `split`."""
  try:
    meta = builder.info.metadata
    index = meta[METADATA_KEY] if meta is not None and METADATA_KEY in meta.keys() else None
  except (KeyError, OSError, ValueError):
    index = None
  if not index or index.get('format') != FORMAT_NAME or split not in index.get('splits', {}):
    return None
  if index.get('format_version') != FORMAT_VERSION:
    raise TfdsError(
        f'TFDS dataset {builder.name!r}: rnl_jax index format_version '
        f'{index.get("format_version")}, this code reads {FORMAT_VERSION}; rewrite it '
        f'with python -m rnl_jax.data.tfds_write'
    )
  cols = index['splits'][split]
  return [
      TfdsRecord(str(p), int(f), int(label), record=i)
      for i, (p, label, f) in enumerate(zip(cols['path'], cols['label'], cols['num_frames']))
  ]


def _scan_records(data, layout, split, name):
  """TfdsRecords of a split without an index: one pass over its records (frames not decoded)."""
  log.warning(
      'TFDS dataset %s has no rnl_jax index for split %r: reading its %d records to list '
      'the videos',
      name,
      split,
      len(data),
  )
  records = []
  for i in range(len(data)):
    ex = data[i]
    path = ex[layout.path_key] if layout.path_key else f'{split}[{i}]'
    path = path.decode('utf-8') if isinstance(path, bytes) else str(path)
    records.append(
        TfdsRecord(path, len(ex[layout.frames_key]), int(ex[layout.label_key]), record=i)
    )
  return records


def decode_image(data, path, decoder):
  """uint8 [H, W, 3] of one stored frame: JPEG with `sources.decode_jpeg`, other formats (PNG of
  catalog videos) with Pillow; CorruptVideoError naming `path`."""
  data = bytes(data)
  if data[:2] == JPEG_MAGIC:
    return sources.decode_jpeg(data, path, decoder)
  try:
    with Image.open(io.BytesIO(data)) as img:
      return np.asarray(img.convert('RGB'))
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise CorruptVideoError(f'cannot decode frame {path}: {type(e).__name__}: {e}', path) from e


class _TfdsVideo:
  """Handle of one video: F from the index; `decode` reads its record, decodes the wanted frames."""

  def __init__(self, source, index):
    self.source = source
    self.index = index
    self.num_frames = source.records[index].num_frames

  def decode(self, numbers):
    src, record = self.source, self.source.records[self.index]
    where = src.video_path(self.index)
    numbers = [int(k) for k in numbers]
    check_frame_numbers(numbers, record.num_frames, where)
    try:
      ex = src.data()[record.record]
    except Exception as e:  # pylint: disable=broad-except  (riegeli / proto errors of bad bytes)
      raise CorruptVideoError(f'cannot read {where}: {type(e).__name__}: {e}', where) from None
    layout = src.layout
    frames = ex[layout.frames_key]  # [F] encoded frames
    path = ex[layout.path_key] if layout.path_key else record.path
    path = path.decode('utf-8') if isinstance(path, bytes) else str(path)
    check_stored_video(where, (len(frames), int(ex[layout.label_key]), path), record, 'records')
    decode = lambda data, name: decode_image(data, name, src.decoder)
    encoded = [frames[k - 1] for k in numbers]
    return decode_stored_frames(numbers, encoded, where, decode, lambda k: f'{k} of {where}')

  def close(self):
    pass


class TfdsSource(ClipSource):
  """Sampled clips of one split of a TFDS dataset, by video index (a grain `MapDataset.source`).

  Args:
    name: TFDS dataset name (with '/config' or ':version' if needed), as tfds.data_source takes it.
    split: split name, e.g. 'train', 'validation' (TFDS slices such as 'train[:10%]' are listed by a
      pass over their records).
    data_dir: TFDS data_dir ('' = TFDS's default: TFDS_DATA_DIR or ~/tensorflow_datasets).
    decoder: JPEG decoder, see `sources.decode_jpeg`.
    filter_short: drop records upstream drops (F < 3 unless mode 'test' with remove_missing=False,
      as `datasets.filter_records`); `dropped` counts them.
    remove_missing: as `datasets.filter_records`, used with filter_short.
    **kwargs: as `ClipSource` (mode, num_segments, dense, twice_sample, num_clips, seed,
      skip_corrupt, fix_short, include_last_start).

  Attributes: records (`TfdsRecord`s), classes (names), layout (feature keys), num_records (records
  of the split, before filtering).
  """

  def __init__(
      self,
      name,
      split,
      data_dir='',
      *,
      decoder='simplejpeg',
      filter_short=True,
      remove_missing=True,
      **kwargs,
  ):
    if decoder not in sources.DECODERS:
      raise ValueError(f'decoder must be one of {sources.DECODERS}, got {decoder!r}')
    self.name, self.split, self.data_dir = name, split, os.fspath(data_dir or '')
    builder = open_builder(name, self.data_dir)
    self.layout = dataset_layout(builder)
    self.classes = list(self.layout.classes)
    try:
      builder.info.splits[split]  # a split name or a TFDS slice of one
    except (KeyError, ValueError, AssertionError):
      splits = ', '.join(sorted(builder.info.splits.keys()))
      raise TfdsError(
          f'TFDS dataset {name!r} has no split {split!r} (splits: {splits}; '
          f'config.data.tfds_train_split / config.data.tfds_val_split)'
      ) from None
    self.decoder = decoder
    self._lock = threading.Lock()
    self._pid = os.getpid()
    self._data = self._open(builder)
    records = _index_records(builder, split)
    self.num_records = len(self._data)
    if records is None:
      records = _scan_records(self._data, self.layout, split, name)
    elif len(records) != self.num_records:
      raise TfdsError(
          f'{describe(name, split, data_dir)}: its rnl_jax index lists {len(records)} '
          f'videos but the split holds {self.num_records} records; rewrite the dataset'
      )
    super().__init__(records, **kwargs)
    self.dropped = 0
    if filter_short:
      self.records, self.dropped = datasets.filter_records(self.records, self.mode, remove_missing)

  def _open(self, builder=None):
    builder = builder or open_builder(self.name, self.data_dir)
    return builder.as_data_source(
        split=self.split, decoders={self.layout.frames_key: keep_encoded()}
    )

  def data(self):
    """This process's TFDS data source of the split (opened on first use; reopened after fork)."""
    if self._pid != os.getpid():
      self._data, self._lock, self._pid = None, threading.Lock(), os.getpid()
    if self._data is None:
      with self._lock:
        if self._data is None:
          self._data = self._open()
    return self._data

  def __getstate__(self):
    state = self.__dict__.copy()
    state['_data'] = None
    del state['_lock']
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._lock = threading.Lock()
    self._pid = os.getpid()

  def video_path(self, index):
    r = self.records[index]
    return f'{describe(self.name, self.split, self.data_dir)} record {r.record} (video {r.path})'

  def open_video(self, index):
    return _TfdsVideo(self, index)

  def indices(self, index, rng=None, epoch=None):
    """1-based frame indices [clips, T] of video `index` (from the index: no record is read)."""
    return self.sample(index, self.records[index].num_frames, rng, epoch)
