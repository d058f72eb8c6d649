"""grain input pipelines: training clips and multi-view evaluation batches from any `ClipSource`.

Training (`train_dataset` / `train_iterator`): a grain `MapDataset` over video indices, shuffled with a
new permutation every epoch (`shuffle().repeat()`), then `random_map` decodes and augments one clip
with a generator seeded by (seed, global position). Each process then takes its own contiguous block
of every global batch (`HostBlocks`), so

* a clip is a pure function of (seed, global position): the same seed gives the same batches for any
  `num_workers` and `num_threads`, and the global batch holds the same clips in the same order for any
  number of processes (process p holds rows [p*B/P, (p+1)*B/P) of it);
* the iterator is a grain `DatasetIterator` whose `get_state()` / `set_state()` (or
  `grain.checkpoint.CheckpointSave/Restore` inside an orbax manager) resume on the exact next batch.
  A state saved with N workers restores only into a pipeline with N workers (a grain limitation).

Epochs are not padded or truncated: batch k holds global positions [k*B, (k+1)*B) of the endless
sequence of per-epoch permutations, so an epoch boundary may fall inside a batch (the original drops
each epoch's last partial batch instead; every video is still seen once per epoch here).

Evaluation (`EvalBatches`): every video gives `clips x crops` views (`transforms.test_views`: 1 crop =
the validation centre crop, 3 = full-res three-crop, 10 = oversampling), decoded once per video.
Views are flattened, in the original's order (crop, then clip), into fixed-size batches that carry
`video_index`, `view_index` and a `mask` (0 for padding). Each process evaluates a contiguous block of
videos and all processes yield the same number of batches (trailing batches may be all padding), so a
jitted, sharded eval step sees one static shape and per-video scores can be summed by `video_index`,
never by batch position.

Batches are host-local numpy dicts, uint8 frames (normalisation happens on the device):
  train: frames [B, T, S, S, 3] uint8, label [B] int32, video_index [B] int32, skipped [B] int32
  eval:  frames [B, T, S, S, 3] uint8, label, video_index, view_index [B] int32, mask [B] bool
`skipped` counts the unreadable videos replaced to make each example (`skip_corrupt=True`); the
trainer sums and logs it (the sources live in worker processes, so their own counters are not visible).

No JAX import at module level: the pipeline runs in grain worker processes (`prepare_synthetic`,
which runs in the main process only, imports it when called).
"""

from concurrent import futures
import dataclasses
import os
import signal
import time
from typing import Optional

from absl import flags
from absl import logging
import grain
import numpy as np
import tqdm

from rnl_jax import fileio
from rnl_jax.data import datasets, sampling, sources, transforms
from rnl_jax.errors import ConfigError, DataError

LABEL_DTYPE = np.int32


def _init_worker(worker_index, worker_count):
  """grain worker start-up: one OpenCV thread per worker (its own pool would oversubscribe the cores).
  Workers ignore Ctrl-C: a terminal sends it to the whole process group, and the trainer's main
  process handles it (saves, then stops its workers)."""
  del worker_index, worker_count
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  import cv2  # pylint: disable=import-outside-toplevel

  cv2.setNumThreads(1)


@dataclasses.dataclass(frozen=True)
class TrainAugment:
  """Training views (docs/original.md §4.1): multi-scale crop to `input_size`, optional flip."""

  input_size: int = transforms.INPUT_SIZE
  flip: bool = True
  scales: tuple = transforms.SCALES
  max_distort: int = 1
  resize: str = 'cv2'

  def __post_init__(self):
    if self.resize not in transforms.RESIZE_METHODS:
      raise ValueError(f'resize must be one of {transforms.RESIZE_METHODS}, got {self.resize!r}')
    if self.input_size < 1:
      raise ValueError(f'input_size must be >= 1, got {self.input_size}')


@dataclasses.dataclass(frozen=True)
class EvalViews:
  """Evaluation views (docs/original.md §4.2, 4.3): short side to `scale_size`, `num_crops` crops.

  num_crops: 1 (centre, the validation view), 3 (GroupFullResSample), 5 or 10 (GroupOverSample).
  full_res: crops of `scale_size` instead of `input_size` (the original's 256 full-res test mode).
  """

  num_crops: int = 1
  full_res: bool = False
  scale_size: int = transforms.SCALE_SIZE
  input_size: int = transforms.INPUT_SIZE

  def __post_init__(self):
    if self.num_crops not in transforms.TEST_CROPS:
      raise ValueError(f'num_crops must be 1, 3, 5 or 10, got {self.num_crops}')

  @property
  def size(self):
    return self.scale_size if self.full_res else self.input_size


class TrainClip:
  """random_map transform: video index + generator -> one augmented training clip (picklable)."""

  def __init__(self, source, augment):
    if source.clips_per_video != 1:
      raise ValueError(
          f'training needs one clip per video, the source gives {source.clips_per_video} '
          f'(mode={source.mode!r})'
      )
    self.source = source
    self.augment = augment

  def __call__(self, index, rng):
    a = self.augment
    ex = self.source.get(int(index), rng)  # frames [T, H, W, 3]
    frames = transforms.train_views(
        ex['frames'],
        rng,
        flip=a.flip,
        input_size=a.input_size,
        scales=a.scales,
        max_distort=a.max_distort,
        resize=a.resize,
    )
    return {
        'frames': frames,  # [T, S, S, 3] uint8
        'label': LABEL_DTYPE(ex['label']),
        'video_index': LABEL_DTYPE(ex['video_index']),
        'skipped': LABEL_DTYPE(ex['skipped']),
    }


class EvalVideo:
  """map transform: video index -> all views of the video, [V, T, S, S, 3] (picklable)."""

  def __init__(self, source, views):
    self.source = source
    self.views = views

  def __call__(self, index):
    v = self.views
    ex = self.source.get(int(index))  # frames [clips*T, H, W, 3]
    out = transforms.test_views(ex['frames'], v.num_crops, v.full_res, v.scale_size, v.input_size)
    crops, n, s = out.shape[:3]  # [crops, clips*T, S, S, 3]
    t = self.source.num_segments
    frames = out.reshape(crops * (n // t), t, s, s, 3)  # [V, T, S, S, 3], crop-major
    return {
        'frames': frames,
        'label': LABEL_DTYPE(ex['label']),
        'video_index': LABEL_DTYPE(ex['video_index']),
    }


class HostBlocks(grain.MapDataset):
  """This process's rows of every global batch: element m -> global position
  (m // local) * (local * count) + index * local + m % local, so that concatenating the local batches
  of processes 0..count-1 gives the single-process global batch, row for row."""

  _MUTATES_ELEMENT_SPEC = False

  def __init__(self, parent, process_index, process_count, local_batch_size):
    super().__init__(parent)
    if not 0 <= process_index < process_count:
      raise ValueError(f'process_index {process_index} not in [0, {process_count})')
    self._index = process_index
    self._count = process_count
    self._local = local_batch_size
    self._length = len(parent) // (local_batch_size * process_count) * local_batch_size

  def __len__(self):
    return self._length

  def _global(self, m):
    block, row = divmod(m, self._local)
    return block * self._local * self._count + self._index * self._local + row

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    with self._stats.record_self_time():
      g = self._global(index % self._length)
    return self._parent[g]

  def __str__(self):
    return f'HostBlocks(process {self._index} of {self._count}, {self._local} rows per batch)'


def split_batch(global_batch_size, process_count):
  """Rows per process; the global batch must divide evenly (every process feeds the same shapes)."""
  if global_batch_size < 1:
    raise ValueError(f'global batch size must be >= 1, got {global_batch_size}')
  if global_batch_size % process_count:
    raise ValueError(
        f'global batch size {global_batch_size} is not divisible by the {process_count} '
        'processes'
    )
  return global_batch_size // process_count


def train_dataset(
    source, augment, *, global_batch_size, seed, num_epochs=None, process_index=0, process_count=1
):
  """Unbatched `MapDataset` of this process's training clips (see the module docstring).

  num_epochs: None repeats forever (the trainer counts steps).
  """
  local = split_batch(global_batch_size, process_count)
  if len(source) < 1:
    raise ValueError('the training source holds no videos')
  ds = grain.MapDataset.range(len(source)).seed(int(seed)).shuffle().repeat(num_epochs)
  ds = ds.random_map(TrainClip(source, augment))  # seeded by global position
  return HostBlocks(ds, process_index, process_count, local)


def _to_iter(ds, num_workers, num_threads, prefetch):
  """MapDataset -> IterDataset, decoded by `num_workers` processes x `num_threads` threads each."""
  it = ds.to_iter_dataset(
      grain.ReadOptions(num_threads=max(1, num_threads), prefetch_buffer_size=max(1, prefetch))
  )
  if num_workers > 0:
    if not flags.FLAGS.is_parsed():
      # grain reads absl flags when starting workers; outside `app.run` (tests, notebooks) they are
      # unparsed, so take their defaults.
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(
        grain.MultiprocessingOptions(num_workers=num_workers), worker_init_fn=_init_worker
    )
  return it


def train_iterator(
    source,
    augment,
    *,
    global_batch_size,
    seed,
    num_workers=0,
    num_threads=1,
    prefetch=8,
    num_epochs=None,
    process_index=0,
    process_count=1,
):
  """Checkpointable iterator of host-local training batches [B/P, T, S, S, 3] (batched after the
  worker prefetch, so the batch order does not depend on the worker count)."""
  local = split_batch(global_batch_size, process_count)
  ds = train_dataset(
      source,
      augment,
      global_batch_size=global_batch_size,
      seed=seed,
      num_epochs=num_epochs,
      process_index=process_index,
      process_count=process_count,
  )
  it = _to_iter(ds, num_workers, num_threads, prefetch).batch(local, drop_remainder=True)
  return iter(it)


def host_video_range(num_videos, process_index, process_count):
  """[start, stop) of the contiguous block of videos process `process_index` evaluates."""
  per = -(-num_videos // process_count)
  return min(num_videos, process_index * per), min(num_videos, (process_index + 1) * per)


class EvalBatches:
  """Iterable of fixed-size host-local batches of evaluation views (see the module docstring).

  Args:
    source: a ClipSource in mode 'val' or 'test' (its clips per video x `views.num_crops` views).
    views: EvalViews.
    batch_size: views per local batch (the global eval batch / process count).
    num_workers, num_threads, prefetch: decoding parallelism (grain).
    process_index, process_count: this process's block of videos.
  """

  def __init__(
      self,
      source,
      views,
      batch_size,
      *,
      num_workers=0,
      num_threads=1,
      prefetch=4,
      process_index=0,
      process_count=1,
  ):
    if batch_size < 1:
      raise ValueError(f'eval batch size must be >= 1, got {batch_size}')
    self.source = source
    self.views = views
    self.batch_size = int(batch_size)
    self.num_workers, self.num_threads, self.prefetch = num_workers, num_threads, prefetch
    self.num_videos = len(source)
    self.views_per_video = source.clips_per_video * views.num_crops
    self.start, self.stop = host_video_range(self.num_videos, process_index, process_count)
    per_process = -(-self.num_videos // process_count)
    # The same count on every process: the largest block's views, in whole batches.
    self.num_batches = -(-per_process * self.views_per_video // self.batch_size)

  def __len__(self):
    return self.num_batches

  def _empty(self):
    s, t = self.views.size, self.source.num_segments
    b = self.batch_size
    return {
        'frames': np.zeros((b, t, s, s, 3), np.uint8),
        'label': np.zeros(b, LABEL_DTYPE),
        'video_index': np.full(b, -1, LABEL_DTYPE),
        'view_index': np.full(b, -1, LABEL_DTYPE),
        'mask': np.zeros(b, bool),
    }

  def __iter__(self):
    ds = grain.MapDataset.range(self.start, self.stop).map(EvalVideo(self.source, self.views))
    videos = iter(_to_iter(ds, self.num_workers, self.num_threads, self.prefetch))
    batch, row, emitted = self._empty(), 0, 0
    try:
      for video in videos:
        for v, frames in enumerate(video['frames']):  # [T, S, S, 3]
          batch['frames'][row] = frames
          batch['label'][row] = video['label']
          batch['video_index'][row] = video['video_index']
          batch['view_index'][row] = v
          batch['mask'][row] = True
          row += 1
          if row == self.batch_size:
            yield batch
            batch, row, emitted = self._empty(), 0, emitted + 1
    finally:
      close = getattr(videos, 'close', None)
      if close is not None:
        close()
    if row:
      yield batch
      emitted += 1
    for _ in range(emitted, self.num_batches):
      yield self._empty()


# ----------------------------------------------------------------------------------------------------
# From a config (see configs/default.py, `data` section)


@dataclasses.dataclass(frozen=True)
class DataPaths:
  """Where one config's data lives: frame root, list files, frame template, class count."""

  frame_root: str
  train_list: str
  val_list: str
  template: str
  num_classes: int
  classes_file: Optional[str] = None
  classes: Optional[tuple] = None  # the names themselves (format 'tfds': its ClassLabel)


def prepare_synthetic(config, workdir):
  """The synthetic dataset's root (config.data.root, else WORKDIR/data), generated there on first
  use (resumable) by process 0 while the other processes wait; for training and the test protocol.
  """
  if config.data.format == 'tfds':  # the frames come from the TFDS dataset: nothing to generate
    return None
  # JAX (process index, barrier) and the generator are imported here, in the main process only:
  # grain's worker processes import this module without them.
  import jax  # pylint: disable=import-outside-toplevel
  from rnl_jax.data import synthetic  # pylint: disable=import-outside-toplevel

  root = config.data.root or os.path.join(workdir, 'data')
  s = config.data.synthetic
  if jax.process_index() == 0:
    start = time.perf_counter()
    summary = synthetic.generate(
        root,
        s.num_train,
        s.num_val,
        num_frames=s.num_frames,
        height=s.size,
        width=s.size,
        seed=s.seed,
        workers=max(1, min(config.data.num_workers, os.cpu_count() or 1)),
    )
    if summary['generated']:
      logging.info(
          'generated %d synthetic videos in %s (%.1f s)',
          summary['generated'],
          root,
          time.perf_counter() - start,
      )
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

    multihost_utils.sync_global_devices('synthetic data')
  return root


def data_paths(config, root=None):
  """DataPaths of `config.data`; `root` overrides `config.data.root` (e.g. the synthetic data dir)."""
  d = config.data
  root = root or d.root
  if d.format == 'tfds':
    return _tfds_paths(d)
  if d.name == 'custom':
    return DataPaths(root, d.train_list, d.val_list, d.frame_template, d.num_classes)
  info = datasets.get_dataset(d.name)
  if not root:
    raise ConfigError(f'config.data.root is empty: set it to the folder holding {info.train_list}')
  num_classes = info.resolve_num_classes(root) if info.num_classes is None else info.num_classes
  if num_classes != d.num_classes:
    raise ConfigError(
        f'config.data.num_classes={d.num_classes} but dataset {d.name!r} has '
        f'{num_classes} classes'
    )
  classes = os.path.join(root, info.classes_file) if info.classes_file else None
  return DataPaths(
      info.frame_dir(root),
      d.train_list or info.list_path(root, 'train'),
      d.val_list or info.list_path(root, 'val'),
      d.frame_template or info.template,
      num_classes,
      classes,
  )


def _tfds_paths(d):
  """DataPaths of a TFDS dataset: 'lists' name its splits (in errors, logs, results), the class
  names are its label's; num_classes must match them."""
  from rnl_jax.data import tfds_source  # pylint: disable=import-outside-toplevel

  names = tfds_source.class_names(d.tfds_name, d.tfds_data_dir)
  if len(names) != d.num_classes:
    raise ConfigError(
        f'config.data.num_classes={d.num_classes} but TFDS dataset '
        f'{d.tfds_name!r} has {len(names)} classes (its label)'
    )
  return DataPaths(
      '',
      tfds_source.describe(d.tfds_name, d.tfds_train_split, d.tfds_data_dir),
      tfds_source.describe(d.tfds_name, d.tfds_val_split, d.tfds_data_dir),
      '',
      d.num_classes,
      classes=tuple(names),
  )


def class_names(paths):
  """The dataset's class names (line i = label i), or None when it has no class file."""
  if paths.classes:
    return list(paths.classes)
  if paths.classes_file and fileio.isfile(paths.classes_file):
    names = datasets.read_class_names(paths.classes_file)
    if len(names) == paths.num_classes:
      return names
  return None


def load_split(paths, split, mode=None):
  """Parsed, filtered records of the 'train' or 'val' list (errors name the file and line)."""
  path = paths.train_list if split == 'train' else paths.val_list
  if not fileio.isfile(path):
    raise FileNotFoundError(
        f'{split} list file {path} does not exist (config.data.{split}_list / ' 'config.data.root)'
    )
  records = datasets.parse_list_file(path, paths.num_classes)
  mode = mode or ('train' if split == 'train' else 'val')
  kept, dropped = datasets.filter_records(records, mode)
  if not kept:
    raise DataError(
        f'{path}: no usable videos ({dropped} dropped for having < '
        f'{sampling.MIN_NUM_FRAMES} frames)'
    )
  return kept, dropped


# Existence checks are I/O-bound (network file systems: ~1 ms each): threads overlap the waits.
CHECK_THREADS = 32
CHECK_PROGRESS_FROM = 20_000  # listed videos from which the check shows a progress bar


def missing_videos(source):
  """Indices of `source`'s records whose files (`required_files`) do not exist, in list order."""

  def is_missing(index):
    return not all(fileio.exists(f) for f in source.required_files(index))

  with futures.ThreadPoolExecutor(CHECK_THREADS) as pool:
    flags_ = pool.map(is_missing, range(len(source)))
    if len(source) >= CHECK_PROGRESS_FROM:
      flags_ = tqdm.tqdm(flags_, total=len(source), desc='checking listed videos', unit='video')
    return [i for i, missing in enumerate(flags_) if missing]


def _list_line(list_path, video):
  """1-based line of `list_path` that names `video` (a record's path), or None."""
  with fileio.open(list_path) as f:
    for number, line in enumerate(f, 1):
      fields = line.replace(',', ' ').split()
      if fields and (fields[0] == video or line.startswith(video)):
        return number
  return None


def check_listed_videos(source, list_path):
  """Before anything compiles: every listed video of `source` exists (frame folders: the folder
  and its first frame; video files: the file). A missing one is a DataError naming the list file
  and line; with `source.skip_corrupt` the missing ones are dropped and logged instead. Returns
  the dropped videos' paths."""
  missing = missing_videos(source)
  if not missing:
    return []
  paths = [source.video_path(i) for i in missing]
  if not source.skip_corrupt:
    first = source.required_files(missing[0])[0]
    what = (
        f'video folder {paths[0]} does not exist'
        if not fileio.exists(paths[0])
        else f'{first} does not exist'
    )
    line = _list_line(list_path, source.records[missing[0]].path)
    raise DataError(
        f'{list_path}:{line}: {what} ({len(missing)} of {len(source)} listed videos are '
        'missing; fix the list or the data root, or set config.data.skip_corrupt=True '
        'to skip them)'
    )
  logging.warning(
      '%s: skipping %d missing videos of %d: %s%s',
      list_path,
      len(missing),
      len(source),
      ', '.join(paths[:5]),
      ', ...' if len(paths) > 5 else '',
  )
  source.drop(missing)
  if not len(source):
    raise DataError(f'{list_path}: none of the listed videos exists')
  return paths


def make_source(config, paths, split, mode, **overrides):
  """The ClipSource of `split` in `mode` ('train' | 'val' | 'test') for `config.data`.

  format 'frames': list files of frame folders; 'videos': list files `<path> [num_frames] <label>`
  of video files under data.root; 'arrayrecord': the split's list key names the packed index
  (`PREFIX.json` from `python -m rnl_jax.data.pack`); 'tfds': a split of a TFDS dataset
  (data.tfds_*; `tfds_source.TfdsSource`).
  """
  d = config.data
  kwargs = dict(
      mode=mode,
      num_segments=config.num_segments,
      dense=d.dense_sample,
      seed=config.seed,
      skip_corrupt=d.skip_corrupt,
  )
  kwargs.update(overrides)
  # data.decoder applies to training; validation and test always decode Pillow's exact pixels.
  decoder = d.decoder if mode == 'train' else ('pil' if d.decoder == 'pil' else 'simplejpeg')
  if d.format == 'frames':
    records, _ = load_split(paths, split, mode)
    return sources.FrameFolderSource(
        paths.frame_root, records, paths.template, decoder=decoder, **kwargs
    )
  if d.format == 'tfds':
    from rnl_jax.data import tfds_source  # pylint: disable=import-outside-toplevel

    name = d.tfds_train_split if split == 'train' else d.tfds_val_split
    source = tfds_source.TfdsSource(
        d.tfds_name, name, d.tfds_data_dir, decoder=decoder, filter_short=True, **kwargs
    )
    return _check_labels(
        source, tfds_source.describe(d.tfds_name, name, d.tfds_data_dir), paths.num_classes
    )
  path = paths.train_list if split == 'train' else paths.val_list
  key = f'config.data.{split}_list'
  if not d[f'{split}_list']:
    raise ConfigError(
        f'{key} is empty: format {d.format!r} needs the {split} '
        f'{"video list" if d.format == "videos" else "ArrayRecord index"}'
    )
  if not fileio.exists(path):
    raise FileNotFoundError(f'{split} list {path} does not exist ({key})')
  if d.format == 'videos':
    from rnl_jax.data import video  # pylint: disable=import-outside-toplevel

    records = datasets.parse_video_list_file(path, paths.num_classes)
    if not records:
      raise DataError(f'{path}: no videos')
    return video.VideoFileSource(d.root, records, **kwargs)
  from rnl_jax.data import arrayrecord  # pylint: disable=import-outside-toplevel

  source = arrayrecord.ArrayRecordSource(path, decoder=decoder, filter_short=True, **kwargs)
  return _check_labels(source, path, paths.num_classes)


def _check_labels(source, where, num_classes):
  """`source`, unless it holds no usable video or a label outside [0, num_classes) (DataError)."""
  labels = [r.label for r in source.records]
  if not labels:
    raise DataError(f'{where}: no usable videos')
  if max(labels) >= num_classes:
    raise DataError(
        f'{where}: label {max(labels)} outside [0, {num_classes}) ' f'(config.data.num_classes)'
    )
  return source


def train_augment(config):
  d = config.data
  return TrainAugment(input_size=config.image_size, flip=d.flip, resize=d.resize)


def val_views(config):
  """The original's training-time validation view: short side scale_size, centre crop image_size."""
  return EvalViews(
      num_crops=1, full_res=False, scale_size=config.scale_size, input_size=config.image_size
  )
