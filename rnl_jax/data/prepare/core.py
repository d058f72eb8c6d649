"""The preparation run: annotations -> per-video work in worker processes -> lists, shards and report.

`prepare()` reads a download with its dataset's reader (a `Plan`), works out what is already done, runs
the rest in 'spawn' worker processes behind a progress bar, and writes, in this order, the list files,
the class names, the ArrayRecord shards (format 'arrayrecord') and the report. Every output is
written under a temporary name and renamed into place (list files last), so nothing half-written is
ever listed, and an interrupted run can simply be started again:

* frames: a frame folder under its final name is complete (skipped); temporary `.tmp-<pid>-*` folders of
  dead runs are removed; an empty folder under the final name (a crashed earlier tool) is redone.
* videos: a file under its final name is complete.
* arrayrecord: the frames stage as above, then `pack.pack` per split; a split whose index already holds
  exactly the videos to list (paths and labels, in order) is not re-packed, even if its frames were deleted.
* tfds: the frames stage as above, then `tfds_write.write` of both lists into the TFDS dataset
  `rnl_<dataset>[_split_<n>]` under `<home>/tfds` (rewritten unless its index holds exactly the lists).
* a source that failed (undecodable, zero frames) is remembered with its size and mtime in
  `<home>/.prepare_state.json` and not retried while unchanged (`retry_failed=True` retries).

So a second run over an unchanged download does no work (`summary['processed'] == 0`, nothing packed)
and rewrites no file whose content is unchanged.
"""

import dataclasses
import functools
import hashlib
import json
import os
import sys
import time
from typing import Callable, Optional

from rnl_jax import fileio
from rnl_jax.data import arrayrecord, datasets
from rnl_jax.data.prepare import annotations as ann
from rnl_jax.data.prepare import hmdb51, kinetics, media, something, ucf101

FORMATS = ('frames', 'arrayrecord', 'videos', 'tfds')
STATE_VERSION = 1
STATE_FILE = '.prepare_state.json'
SAVE_EVERY_S = 60.0


@dataclasses.dataclass(frozen=True)
class Spec:
  """One preparable dataset.

  table: its `datasets.DATASETS` entry (frame root, frame list names, template, class count).
  home: its folder under --out (classes, report, state, videos/, arrayrecord/).
  height: the original's frame height (docs/original.md §3.5), None = frames as released.
  numbered_splits: the download defines splits 1..3 (--split).
  video_list: the video list of a split ({split}, {n}), relative to --out.
  extra_lists: further space-separated frame lists (the TSM label tool's names), relative to --out.
  classes_files: class-name files (line i = label i), relative to --out.
  """

  name: str
  table: str
  home: str
  reader: Callable
  height: Optional[int]
  numbered_splits: bool
  video_list: str
  extra_lists: tuple = ()
  classes_files: tuple = ()


SPECS = {
    s.name: s
    for s in (
        Spec(
            'kinetics400',
            'kinetics',
            'kinetics',
            kinetics.read,
            331,
            False,
            'kinetics/{split}_videos.txt',
            extra_lists=('kinetics/{split}_videofolder.txt',),
            classes_files=('kinetics/classes.txt',),
        ),
        Spec(
            'something_v1',
            'something',
            'something/v1',
            something.read_v1,
            None,
            False,
            'something/v1/{split}_videos.txt',
            classes_files=('something/v1/classes.txt', 'something/v1/category.txt'),
        ),
        Spec(
            'something_v2',
            'somethingv2',
            'something/v2',
            something.read_v2,
            256,
            False,
            'something/v2/{split}_videos.txt',
            classes_files=('something/v2/classes.txt', 'something/v2/category.txt'),
        ),
        Spec(
            'ucf101',
            'ucf101',
            'UCF101',
            ucf101.read,
            256,
            True,
            'UCF101/file_list/ucf101_videos_{split}_split_{n}.txt',
            classes_files=('UCF101/classes.txt',),
        ),
        Spec(
            'hmdb51',
            'hmdb51',
            'HMDB51',
            hmdb51.read,
            256,
            True,
            'HMDB51/splits/hmdb51_videos_{split}_split_{n}.txt',
            classes_files=('HMDB51/classes.txt',),
        ),
    )
}
# The trainer's config.data.name of each dataset (its `table` name), accepted for the SPECS name.
ALIASES = {s.table: s.name for s in SPECS.values() if s.table != s.name}


class Layout:
  """Where every output of one dataset (and split number) goes under `out` (= config.data.root)."""

  def __init__(self, spec, out, split):
    self.spec, self.out, self.n = spec, out, int(split)
    self.info = datasets.get_dataset(spec.table)
    self.home = os.path.join(out, spec.home)
    self.frame_root = self.info.frame_dir(out)
    self.template = self.info.template
    self.videos_dir = os.path.join(self.home, 'videos')
    suffix = f'_split_{self.n}' if spec.numbered_splits else ''
    self.suffix = suffix
    self.state = os.path.join(self.home, STATE_FILE)

  def frame_list(self, split):
    path = self.info.list_path(self.out, split)
    if self.spec.numbered_splits:
      path = path.replace('_split_1.txt', f'_split_{self.n}.txt')
    return path

  def extra_lists(self, split):
    return [os.path.join(self.out, p.format(split=split)) for p in self.spec.extra_lists]

  def video_list(self, split):
    return os.path.join(self.out, self.spec.video_list.format(split=split, n=self.n))

  def arrayrecord_prefix(self, split):
    return os.path.join(self.home, 'arrayrecord', f'{split}{self.suffix}')

  def tfds_name(self):
    """The TFDS dataset's name: rnl_<dataset>[_split_<n>] (never a TFDS catalog name)."""
    return f'rnl_{self.spec.name}{self.suffix}'

  def tfds_dir(self):
    """The TFDS data_dir (config.data.tfds_data_dir)."""
    return os.path.join(self.home, 'tfds')

  def report(self, fmt):
    return os.path.join(self.home, f'prepare_report_{fmt}{self.suffix}.json')

  def output(self, kind, name):
    if kind == 'frames':
      return os.path.join(self.frame_root, name)
    return os.path.join(self.videos_dir, f'{name}.mp4')

  def list_path_of_video(self, name):
    """A video's path in the video lists: relative to --out (the video source's root)."""
    return os.path.relpath(self.output('videos', name), self.out).replace(os.sep, '/')


# ----------------------------------------------------------------------------------------------------
# state: remembered failures and re-encoded frame counts


def _signature(path):
  """Identity of a source as it is now: size + mtime of a file, of every entry of a folder."""
  try:
    if os.path.isdir(path):
      h = hashlib.sha1()
      for entry in sorted(os.scandir(path), key=lambda e: e.name):
        st = entry.stat()
        h.update(f'{entry.name}\0{st.st_size}\0{st.st_mtime_ns}\n'.encode())
      return 'dir:' + h.hexdigest()
    st = os.stat(path)
    return f'file:{st.st_size}:{st.st_mtime_ns}'
  except OSError:
    return None


class State:
  """`<home>/.prepare_state.json`: settings per output kind, failures by source, outputs' frame counts."""

  def __init__(self, path):
    self.path = path
    self.data = {
        'version': STATE_VERSION,
        'settings': {},
        'failures': {},
        'outputs': {'frames': {}, 'videos': {}},
    }
    if os.path.isfile(path):
      try:
        with open(path) as f:
          data = json.load(f)
      except ValueError:
        data = None  # a damaged state only costs re-checking: failures are retried, counts re-read
      if isinstance(data, dict) and data.get('version') == STATE_VERSION:
        self.data.update(data)
    self._saved = time.monotonic()

  def failure(self, source):
    entry = self.data['failures'].get(source)
    if entry and entry.get('signature') == _signature(source):
      return entry
    return None

  def set_failure(self, source, kind, detail):
    self.data['failures'][source] = {
        'signature': _signature(source),
        'kind': kind,
        'detail': detail,
    }

  def clear_failure(self, source):
    self.data['failures'].pop(source, None)

  def outputs(self, kind):
    return self.data['outputs'].setdefault(kind, {})

  def save(self, force=True):
    if not force and time.monotonic() - self._saved < SAVE_EVERY_S:
      return
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    _write_text(self.path, json.dumps(self.data, sort_keys=True) + '\n', only_if_changed=False)
    self._saved = time.monotonic()


# ----------------------------------------------------------------------------------------------------
# helpers


def _write_text(path, text, only_if_changed=True):
  """Atomic write (fileio.write_text) into a folder made if missing; returns False (and writes
  nothing) if the content is unchanged."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  return fileio.write_text(path, text, only_if_changed=only_if_changed)


def _is_done(kind, path):
  """A complete output: a non-empty folder (frames) or a file (videos) under its final name."""
  if kind == 'frames':
    try:
      with os.scandir(path) as it:
        return any(True for _ in it)
    except (FileNotFoundError, NotADirectoryError):
      return False
  return os.path.isfile(path)


def _index_matches(prefix, expected):
  """The packed index at `prefix` holds exactly `expected` [(path, label)] in order, shards present."""
  path = arrayrecord.index_path(prefix)
  try:
    with open(path) as f:
      index = json.load(f)
    videos = index['videos']
    held = list(zip(videos['path'], videos['label']))
    folder = os.path.dirname(path)
    shards_ok = all(os.path.isfile(os.path.join(folder, s['file'])) for s in index['shards'])
  except (OSError, ValueError, KeyError, TypeError):
    return False
  return (
      shards_ok and not index.get('skipped') and held == [(p, int(label)) for p, label in expected]
  )


def _size_rule(spec, short_side, even):
  if short_side is None:
    rule = media.Size('height', spec.height) if spec.height else media.Size('keep')
  elif short_side == 0:
    rule = media.Size('keep')
  else:
    rule = media.Size('short', int(short_side))
  return dataclasses.replace(rule, even=even)


def _run(tasks, workers, progress, desc, on_result):
  """media.run_task over tasks ('spawn' processes if workers > 1), on_result(result) as they finish."""
  from tqdm import tqdm  # pylint: disable=import-outside-toplevel

  bar = tqdm(
      total=len(tasks),
      desc=desc,
      unit='video',
      dynamic_ncols=True,
      disable=not progress,
      file=sys.stderr,
  )
  failed = 0
  results = fileio.map_unordered(media.run_task, tasks, workers, tasks_per_worker=8, max_chunk=16)
  try:
    for result in results:
      failed += result['status'] != 'ok'
      on_result(result)
      bar.set_postfix(failed=failed, refresh=False)
      bar.update()
  finally:
    results.close()  # an error in on_result: the pool is terminated
    bar.close()


# ----------------------------------------------------------------------------------------------------
# the run


def prepare(
    dataset,
    source,
    out,
    fmt='frames',
    *,
    short_side=None,
    workers=1,
    split=1,
    annotations=None,
    label_map=None,
    quality=media.JPEG_QUALITY,
    keyframe_interval=media.KEYFRAME_INTERVAL,
    crf=media.CRF,
    preset=media.PRESET,
    retry_failed=False,
    progress=True,
):
  """Prepares `dataset` from the download at `source` into `out` (see the package docstring).

  Phases: check the arguments, read the annotations (the dataset's `Plan`), check the output
  settings, work out what is left to do, decode / re-encode it in worker processes, turn the
  outcomes into list records and problems, write the lists and class names, pack or write TFDS,
  then the report.

  Args:
    dataset: a key of SPECS ('kinetics400', 'something_v1', 'something_v2', 'ucf101', 'hmdb51').
    source: the download (videos / frame folders and, unless `annotations` is given, annotation files).
    out: the dataset root the trainer reads (`config.data.root`).
    fmt: 'frames', 'arrayrecord' or 'videos'.
    short_side: None = the original's frame height (Kinetics 331, others 256, Something-V1 as released);
      0 = frames as decoded; N = the shorter side scaled to N.
    workers: worker processes (also the packer's).
    split: UCF101 / HMDB51 split number (1..3).
    annotations: folder holding the annotation files (default: searched under `source`).
    label_map: Kinetics class-name file (default: the original's, bundled).
    quality: JPEG quality of written frames.
    keyframe_interval, crf, preset: H.264 settings of format 'videos'.
    retry_failed: retry sources that failed before (else they are reported again without decoding).
    progress: show progress bars.
  Returns:
    the summary dict (also in the report's 'summary').
  Raises:
    PrepareError (AnnotationError for malformed annotation rows, naming file and line).
  """
  start = time.perf_counter()
  dataset, spec = _check_args(dataset, fmt, split, quality, keyframe_interval, workers, short_side)
  source, out, annotations = _absolute_paths(source, out, annotations)

  plan = spec.reader(source, annotations, int(split), label_map, exclude=(out,))
  layout = Layout(spec, out, split)
  kind = 'videos' if fmt == 'videos' else 'frames'
  size = _size_rule(spec, short_side, even=kind == 'videos')
  sources = _unique_sources(plan)
  state = State(layout.state)
  settings = _output_settings(kind, size, quality, keyframe_interval, crf, preset)
  _check_output_settings(state, layout, kind, settings, sources)

  failed = {} if retry_failed else _failed_before(state, sources)  # name -> (kind, detail)
  # ArrayRecord: splits whose index already holds exactly what would be listed need no work at all.
  packed = _already_packed(plan, layout, failed) if fmt == 'arrayrecord' else set()
  make_task = _task_maker(plan, layout, kind, size, quality, keyframe_interval, crf, preset)
  tasks, reused = _tasks(plan, sources, packed, failed, layout, kind, make_task)
  outputs = _process(
      tasks, sources, state, kind, failed, int(workers), progress, f'{dataset} {fmt}'
  )
  records, problems, warnings = _records(plan, failed, packed, kind, layout, outputs)
  state.save()

  lists, classes_files, packed_now = _write_outputs(
      layout, fmt, kind, plan.classes, records, packed, workers, progress
  )
  work = _Work(tasks, reused, failed, packed, records, problems, warnings)
  summary = _summary(
      dataset, fmt, source, layout, plan, work, lists, classes_files, packed_now, start
  )
  _write_report(layout.report(fmt), summary, settings, plan, work)
  return summary


@dataclasses.dataclass(frozen=True)
class _Work:
  """What the decode phase did and left to list, which the summary counts.

  tasks: the media.Tasks run; reused: outputs already complete; failed: {name: (kind, detail)} of
  sources that failed (now or before); packed: splits whose ArrayRecord index needed no work;
  records: {split: [(name, num_frames, label)]}; problems, warnings: the report's.
  """

  tasks: list
  reused: int
  failed: dict
  packed: set
  records: dict
  problems: list
  warnings: list


def _write_outputs(layout, fmt, kind, classes, records, packed, workers, progress):
  """Writes the lists (each atomically, only if changed), the class names, then the shards
  (arrayrecord) or the TFDS dataset (tfds), in that order. Returns (lists, class files, splits packed
  now)."""
  lists = _write_lists(layout, kind, records, packed)
  classes_files = _write_classes(layout.out, layout.spec, classes)
  packed_now = (
      _pack_splits(layout, lists, records, packed, classes_files[0], workers, progress)
      if fmt == 'arrayrecord'
      else []
  )
  if fmt == 'tfds' and any(records.values()):
    _write_tfds(
        layout,
        {s: lists[s] for s in ann.SPLITS if records[s]},
        records,
        classes_files[0],
        int(workers),
        progress,
    )
  return lists, classes_files, packed_now


def _summary(dataset, fmt, source, layout, plan, work, lists, classes_files, packed_now, start):
  """The run's summary dict (returned, printed by the command line, the report's 'summary');
  'seconds' counts from `start` (perf_counter)."""
  records, packed, failed = work.records, work.packed, work.failed
  return {
      'dataset': dataset,
      'format': fmt,
      'out': layout.out,
      'source': source,
      'split': layout.n if layout.spec.numbered_splits else None,
      'listed': {s: (len(records[s]) if s not in packed else None) for s in ann.SPLITS},
      'problems': {k: sum(p.kind == k for p in work.problems) for k in ann.PROBLEM_KINDS},
      'warnings': len(work.warnings),
      'empty_splits': [s for s in ann.SPLITS if s not in packed and not records[s]],
      'processed': len(work.tasks),
      'reused': work.reused,
      'failed_before': sum(1 for n in failed if n not in {t.name for t in work.tasks}),
      'packed': packed_now,
      'already_packed': sorted(packed),
      'lists': lists,
      'classes': classes_files[0],
      'num_classes': len(plan.classes),
      'notes': plan.notes,
      'report': layout.report(fmt),
      'config': _config_hint(layout.spec, layout, fmt, lists, layout.out),
      'seconds': round(time.perf_counter() - start, 2),
  }


def _write_report(path, summary, settings, plan, work):
  """Writes the report (JSON, always rewritten: its summary has the run's time): the summary, the
  output settings, the annotation files read, every problem and warning."""
  report = {
      'summary': summary,
      'settings': settings,
      'annotation_files': plan.files,
      'problems': [p.as_dict() for p in work.problems],
      'warnings': work.warnings,
  }
  _write_text(path, json.dumps(report, indent=1) + '\n', only_if_changed=False)


def _absolute_paths(source, out, annotations):
  """(source, out, annotations) as absolute paths (annotations None stays None); a PrepareError if
  the source is not a folder."""
  source = os.path.abspath(source)
  if not os.path.isdir(source):
    raise ann.PrepareError(f'--source {source} is not a folder')
  out = os.path.abspath(out)
  annotations = os.path.abspath(annotations) if annotations else None
  return source, out, annotations


def _check_args(dataset, fmt, split, quality, keyframe_interval, workers, short_side):
  """(the dataset's SPECS key, its Spec) after checking the arguments that need no file; a
  PrepareError naming the first bad one. `dataset` may be the trainer's name (ALIASES)."""
  dataset = ALIASES.get(dataset, dataset)
  if dataset not in SPECS:
    raise ann.PrepareError(f'unknown dataset {dataset!r}; known: {", ".join(SPECS)}')
  if fmt not in FORMATS:
    raise ann.PrepareError(f'format must be one of {FORMATS}, got {fmt!r}')
  spec = SPECS[dataset]
  if spec.numbered_splits and int(split) not in (1, 2, 3):
    raise ann.PrepareError(f'--split must be 1, 2 or 3 for {dataset}, got {split}')
  if not 1 <= int(quality) <= 100 or int(keyframe_interval) < 1 or int(workers) < 1:
    raise ann.PrepareError(
        f'need 1 <= quality <= 100, keyframe_interval >= 1 and workers >= 1, '
        f'got {quality}, {keyframe_interval}, {workers}'
    )
  if short_side is not None and int(short_side) < 0:
    raise ann.PrepareError(f'--short_side must be >= 0, got {short_side}')
  return dataset, spec


def _unique_sources(plan):
  """{output name: source} of the plan's items in annotation order; a PrepareError where two sources
  would be written under one name (one would silently replace the other)."""
  sources = {}
  for item in plan.items:
    other = sources.setdefault(item.name, item.source)
    if other != item.source:
      raise ann.PrepareError(
          f'two videos would be written as {item.name!r}: {other} and '
          f'{item.source} ({item.where}); rename one of them'
      )
  return sources


def _output_settings(kind, size, quality, keyframe_interval, crf, preset):
  """The settings that decide an output's bytes: size and JPEG quality (frames), or size and the
  H.264 settings (videos)."""
  if kind == 'frames':
    return {'size': size.as_dict(), 'quality': int(quality)}
  return {
      'size': size.as_dict(),
      'codec': 'libx264',
      'keyframe_interval': int(keyframe_interval),
      'crf': int(crf),
      'preset': preset,
  }


def _check_output_settings(state, layout, kind, settings, sources):
  """Records `settings` for `kind` in the state; a PrepareError if outputs of these sources exist
  made with other settings (a mix of sizes or codecs in one dataset would go unnoticed)."""
  old = state.data['settings'].get(kind)
  if (
      old is not None
      and old != settings
      and any(os.path.lexists(layout.output(kind, name)) for name in sources)
  ):
    raise ann.PrepareError(
        f'{layout.frame_root if kind == "frames" else layout.videos_dir} holds {kind} prepared '
        f'with other settings ({old}; now {settings}); use another --out, or delete them (and '
        f'{layout.state})'
    )
  state.data['settings'][kind] = settings


def _failed_before(state, sources):
  """{name: (kind, detail)} of sources that failed before and are unchanged since (not retried)."""
  failed = {}
  for name, src in sources.items():
    entry = state.failure(src)
    if entry:
      failed[name] = (entry['kind'], entry['detail'])
  return failed


def _already_packed(plan, layout, failed):
  """The splits whose ArrayRecord index already holds exactly the videos to list, in order."""
  packed = set()
  for split_name in ann.SPLITS:
    expected = [
        (i.name, i.label) for i in plan.items if i.split == split_name and i.name not in failed
    ]
    if expected and _index_matches(layout.arrayrecord_prefix(split_name), expected):
      packed.add(split_name)
  return packed


def _task_maker(plan, layout, kind, size, quality, keyframe_interval, crf, preset):
  """make_task(name, source, output=...): a media.Task with this run's source kind, output kind and
  settings (the source frame rate only for frame-folder sources)."""
  return functools.partial(
      media.Task,
      source_kind=plan.source_kind,
      kind=kind,
      template=layout.template,
      size=size,
      quality=int(quality),
      fps=plan.source_fps if plan.source_kind == 'frames' else None,
      keyframe_interval=int(keyframe_interval),
      crf=int(crf),
      preset=preset,
  )


def _tasks(plan, sources, packed, failed, layout, kind, make_task):
  """(media.Tasks in annotation order, number of outputs reused): one task per needed video (in a
  split not already packed, not failed before) whose output is not complete yet.
  make_task(name, source, output=...) builds a Task with the run's settings."""
  needed = {i.name for i in plan.items if i.split not in packed and i.name not in failed}
  tasks = []
  reused = 0
  order = {name: i for i, name in enumerate(sources)}
  for name in sorted(needed, key=order.__getitem__):
    output = layout.output(kind, name)
    if _is_done(kind, output):
      reused += 1
      continue
    tasks.append(make_task(name, sources[name], output=output))
  return tasks, reused


def _process(tasks, sources, state, kind, failed, workers, progress, desc):
  """Runs the tasks (after removing an interrupted run's partial outputs next to theirs); each
  outcome updates the state (saved at most every SAVE_EVERY_S, and at the end) and, for a failure,
  `failed`. Returns the state's {name: {num_frames, warning}} of `kind` outputs."""
  outputs = state.outputs(kind)

  def on_result(result):
    name, src = result['name'], sources[result['name']]
    if result['status'] == 'ok':
      state.clear_failure(src)
      outputs[name] = {'num_frames': result['num_frames'], 'warning': result['warning']}
    else:
      state.set_failure(src, result['status'], result['detail'])
      failed[name] = (result['status'], result['detail'])
      outputs.pop(name, None)
    state.save(force=False)

  for folder in {os.path.dirname(t.output) for t in tasks}:  # an interrupted run's partial outputs
    fileio.remove_stale_temps(folder)
  try:
    _run(tasks, workers, progress, desc, on_result)
  finally:
    state.save()
  return outputs


def _records(plan, failed, packed, kind, layout, outputs):
  """({split: [(name, num_frames, label)]} in annotation order, problems, warnings): every item
  not listed (failed) becomes a problem; items of already packed splits are left out."""
  problems = list(plan.problems)
  records = {s: [] for s in ann.SPLITS}
  warnings = []
  for item in plan.items:
    if item.name in failed:
      problem_kind, detail = failed[item.name]
      problems.append(ann.Problem(problem_kind, item.split, item.video, item.where, detail))
      continue
    if item.split in packed:
      continue
    num_frames = _num_frames(kind, layout, outputs, item.name)
    records[item.split].append((item.name, num_frames, item.label))
    warnings += _item_warnings(item, num_frames, (outputs.get(item.name) or {}).get('warning'))
  return records, problems, warnings


def _item_warnings(item, num_frames, decode_warning):
  """The report's warnings of a listed video: a partial decode, and fewer than 3 frames (listed,
  but skipped by the loaders in training and validation)."""
  warnings = []
  if decode_warning:
    warnings.append(
        {
            'kind': 'partial_decode',
            'split': item.split,
            'video': item.video,
            'where': item.where,
            'detail': decode_warning,
        }
    )
  if num_frames < 3:
    warnings.append(
        {
            'kind': 'short',
            'split': item.split,
            'video': item.video,
            'where': item.where,
            'detail': f'{num_frames} frames: listed, but the loaders skip videos with < 3 '
            f'frames in training and validation (docs/original.md §3.1)',
        }
    )
  return warnings


def _write_lists(layout, kind, records, packed):
  """Writes each split's list (each atomically, only if changed; splits already packed are left
  alone): the video list, or the frame list and its extra copies. Returns {split: list path}."""
  lists = {}
  for split_name in ann.SPLITS:
    if split_name in packed:
      continue
    recs = records[split_name]
    if kind == 'videos':
      path = layout.video_list(split_name)
      _write_text(
          path, ''.join(f'{layout.list_path_of_video(n)} {f} {label}\n' for n, f, label in recs)
      )
      lists[split_name] = path
      continue
    sep = ',' if layout.info.delimiter == 'comma' else ' '
    path = layout.frame_list(split_name)
    _write_text(path, ''.join(f'{n}{sep}{f}{sep}{label}\n' for n, f, label in recs))
    for extra in layout.extra_lists(split_name):
      _write_text(extra, ''.join(f'{n} {f} {label}\n' for n, f, label in recs))
    lists[split_name] = path
  return lists


def _write_classes(out, spec, classes):
  """Writes the class names (line i = label i) to each of the spec's class files; returns their
  paths."""
  classes_text = ''.join(c + '\n' for c in classes)
  classes_files = [os.path.join(out, p) for p in spec.classes_files]
  for path in classes_files:
    _write_text(path, classes_text)
  return classes_files


def _pack_splits(layout, lists, records, packed, classes_file, workers, progress):
  """Packs each split with records that is not already packed (`pack.pack` of its frame list);
  `lists` then names every split's index instead of its list. Returns the splits packed now."""
  from rnl_jax.data import pack  # pylint: disable=import-outside-toplevel

  packed_now = []
  for split_name in ann.SPLITS:
    prefix = layout.arrayrecord_prefix(split_name)
    if split_name not in packed and records[split_name]:
      pack.pack(
          lists[split_name],
          layout.frame_root,
          prefix,
          template=layout.template,
          workers=int(workers),
          classes_file=classes_file,
          verify='header',
          overwrite=True,
          progress=progress,
      )
      packed_now.append(split_name)
    lists[split_name] = arrayrecord.index_path(prefix)
  return packed_now


def _num_frames(kind, layout, outputs, name):
  """Frames of a finished output: files of the frame folder (as the original's label tools count), or
  the re-encoded video's count (remembered, else read from its container)."""
  path = layout.output(kind, name)
  if kind == 'frames':
    return len(os.listdir(path))
  entry = outputs.get(name)
  if entry and entry.get('num_frames'):
    return int(entry['num_frames'])
  from rnl_jax.data import video  # pylint: disable=import-outside-toplevel

  with video.VideoReader(path) as reader:
    outputs[name] = {'num_frames': reader.num_frames, 'warning': None}
    return reader.num_frames


def _write_tfds(layout, lists, records, classes_file, workers, progress):
  """The TFDS dataset of the lists (splits 'train', 'validation'), unless its metadata index already
  holds exactly `records` [(name, num_frames, label)] per split."""
  from rnl_jax.data import tfds_write  # pylint: disable=import-outside-toplevel

  splits = {'train': tfds_write.TRAIN_SPLIT, 'val': tfds_write.VAL_SPLIT}
  expected = {
      splits[s]: {
          'path': [n for n, _, _ in records[s]],
          'label': [label for _, _, label in records[s]],
          'num_frames': [f for _, f, _ in records[s]],
      }
      for s in lists
  }
  meta = os.path.join(layout.tfds_dir(), layout.tfds_name(), '1.0.0', 'metadata.json')
  try:
    with open(meta) as f:
      index = json.load(f)['rnl_jax']
    if index['splits'] == expected and not any(index['skipped'].values()):
      return
  except (OSError, ValueError, KeyError, TypeError):
    pass
  tfds_write.write(
      layout.tfds_name(),
      layout.tfds_dir(),
      root=layout.frame_root,
      train_list=lists.get('train'),
      val_list=lists.get('val'),
      template=layout.template,
      classes_file=classes_file,
      verify='header',
      workers=workers,
      overwrite=True,
      progress=progress,
  )


def _config_hint(spec, layout, fmt, lists, out):
  """The trainer flags that read this output."""
  if fmt == 'tfds':
    return ' '.join(
        [
            f'--config.data.name={spec.table}',
            f'--config.data.num_classes={layout.info.num_classes}',
            '--config.data.format=tfds',
            f'--config.data.tfds_name={layout.tfds_name()}',
            f'--config.data.tfds_data_dir={layout.tfds_dir()}',
        ]
    )
  flags = [
      f'--config.data.name={spec.table}',
      f'--config.data.num_classes={layout.info.num_classes}',
      f'--config.data.root={out}',
      f'--config.data.format={fmt}',
  ]
  if fmt != 'frames' or spec.numbered_splits and layout.n != 1:
    flags += [
        f'--config.data.train_list={lists.get("train", "")}',
        f'--config.data.val_list={lists.get("val", "")}',
    ]
  return ' '.join(flags)
