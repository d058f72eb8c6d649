"""Writes a frame-folder dataset as a TensorFlow Datasets (TFDS) dataset, without TensorFlow.

    python -m rnl_jax.data.tfds_write --name NAME --data_dir DIR --root FRAME_ROOT
        --train_list train.txt --val_list val.txt [--template img_{:05d}.jpg]
        [--classes classes.txt | --num_classes N] [--workers N] [--skip_corrupt]
        [--verify decode|header] [--overwrite] [--no_progress]
    python -m rnl_jax.data.tfds_write --name NAME --data_dir DIR --dataset synthetic --root ROOT

Any dataset the trainer reads as frame folders (a list file `<folder> <num_frames> <label>`, a frame
root and a frame template) becomes the TFDS dataset DIR/NAME/1.0.0 (ArrayRecord shards, one example
per video: the list line's JPEG frames, unchanged, the label with the class names, the path and the
frame count; layout in `rnl_jax/data/tfds_builder.py`). Splits: --train_list -> 'train', --val_list
-> 'validation' (either may be left out). With --dataset (a config.data.name of the dataset table:
synthetic, ucf101, ...), --root is the dataset root (config.data.root) and the lists, template and
classes default to the table's. Anyone then reads it with plain TFDS (no rnl_jax, no TensorFlow):

    tfds.data_source('NAME', split='train', data_dir='DIR')

and the trainer with `--config.data.format=tfds --config.data.tfds_name=NAME
--config.data.tfds_data_dir=DIR` (docs/data.md#tensorflow-datasets).

Frames are read as `pack.read_frame_folder` reads them for the packed format: frames 1..F of the
list line, each decoded once with the reader's default decoder (--verify decode) or only its JPEG
header parsed (--verify header), all of one size. A missing or unreadable video stops the run
naming it; with --skip_corrupt it is left out and listed in the metadata (`skipped`). NAME must not
be a TFDS catalog name (plain `tfds.data_source(NAME)` would run the catalog's code instead of
reading the files). TFDS writes the shards under a temporary folder and renames it when complete.
Needs `pip install -e '.[tfds]'`.

DIR, --root, the lists and --classes may be `gs://` URLs (read through rnl_jax.fileio).
ArrayRecord's writer writes local files only, so for a URL DIR the dataset is built in a local
temporary data_dir (TMPDIR: room for the whole dataset) and its folder uploaded, dataset_info.json
last.
"""

import glob
import json
import os
import re
import shutil
import sys
import tempfile
import time

from rnl_jax import cli
from rnl_jax import fileio
from rnl_jax.data import datasets, pack
from rnl_jax.data.sources import CorruptVideoError, check_template
from rnl_jax.errors import UserError

DEFAULT_TEMPLATE = 'img_{:05d}.jpg'
TRAIN_SPLIT, VAL_SPLIT = 'train', 'validation'
VERIFY = pack.VERIFY
NAME_RE = re.compile(r'^[a-z][a-z0-9_]*$')
INSTALL = "pip install -e '.[tfds]'"


class TfdsWriteError(UserError, ValueError):
  """The writer cannot go on (a bad name or list, an unreadable video without --skip_corrupt, an
  existing dataset)."""


def import_tfds():
  """tensorflow_datasets, or a TfdsWriteError saying what to install."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise TfdsWriteError(
        f'writing a TFDS dataset needs tensorflow-datasets: {INSTALL} ({e})'
    ) from None
  return tfds


# --------------------------------------------------------------------------------------------------
# reading the frame folders (worker processes: module-level, argument-only)


def read_one(task):
  """('ok', JPEG bytes of frames 1..F) or ('corrupt', message, path) of one video;
  task = (folder, F, template, verify)."""
  folder, num_frames, template, verify = task
  try:
    frames, _, _ = pack.read_frame_folder(folder, num_frames, template, verify)
  except CorruptVideoError as e:
    return ('corrupt', str(e), e.path)
  return ('ok', frames)


def frame_reader(root, template, verify, workers, skip_corrupt, lists, progress):
  """`Plan.read_all` of one run: (index, record, frames) of a split's readable records, in order."""

  def read_all(records, on_skip, split):
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel

    tasks = ((datasets.join_root(root, r.path), r.num_frames, template, verify) for r in records)
    results = fileio.map_ordered(read_one, tasks, workers)
    bar = tqdm(
        results,
        total=len(records),
        desc=f'{split}',
        unit='video',
        disable=not progress,
        dynamic_ncols=True,
        file=sys.stderr,
    )
    skipped = 0
    try:
      for i, (record, result) in enumerate(zip(records, bar)):
        if result[0] == 'corrupt':
          if not skip_corrupt:
            raise TfdsWriteError(
                f'{result[1]} (list {lists[split]}, entry {record.path!r}); pass '
                f'--skip_corrupt to leave unreadable videos out'
            )
          on_skip(record, result[1])
          skipped += 1
          bar.set_postfix(skipped=skipped)
          continue
        yield i, record, result[1]
    finally:
      bar.close()
      results.close()

  return read_all


# --------------------------------------------------------------------------------------------------
# writing


def check_name(tfds, name):
  """TfdsWriteError unless `name` is a valid TFDS dataset name that is not in the TFDS catalog."""
  if not NAME_RE.match(name or ''):
    raise TfdsWriteError(
        f'--name {name!r}: a TFDS name is lower case letters, digits and _, '
        f'starting with a letter (e.g. rnl_ucf101)'
    )
  # Catalog builders register on import (some only with TensorFlow installed): look for their module.
  package = os.path.dirname(tfds.__file__)
  catalog = os.path.isdir(os.path.join(package, 'datasets', name)) or glob.glob(
      os.path.join(glob.escape(package), '*', f'{name}.py')
  )
  if not catalog:
    try:
      tfds.builder_cls(name)
    except tfds.core.registered.DatasetNotFoundError:
      return
  raise TfdsWriteError(
      f'--name {name!r} is a TFDS catalog dataset: tfds.data_source({name!r}) '
      f"would run the catalog's builder, not read these files; choose another "
      f'name, e.g. rnl_{name}'
  )


def write(
    name,
    data_dir,
    *,
    root,
    train_list=None,
    val_list=None,
    template=DEFAULT_TEMPLATE,
    classes_file=None,
    num_classes=None,
    skip_corrupt=False,
    verify='decode',
    workers=1,
    overwrite=False,
    progress=True,
):
  """Writes DATA_DIR/NAME/1.0.0 (module docstring); returns a summary dict.

  Raises:
    TfdsWriteError naming the file for a bad name, list or template, an unreadable video (unless
    skip_corrupt), an existing dataset (unless overwrite), or a split left without videos.
  """
  start = time.perf_counter()
  tfds = import_tfds()
  if not progress:
    tfds.disable_progress_bar()
  lists = _check_args(tfds, name, verify, template, train_list, val_list)
  splits, classes = _read_lists(lists, classes_file, num_classes)

  from rnl_jax.data import tfds_builder  # pylint: disable=import-outside-toplevel

  data_dir = fileio.absolute(data_dir)
  out = tfds_builder.dataset_dir(data_dir, name)
  _replace_existing(out, overwrite)
  root = fileio.absolute(root)
  source = {
      'lists': {s: fileio.absolute(p) for s, p in lists.items()},
      'root': root,
      'template': template,
      'verify': verify,
  }
  plan = tfds_builder.Plan(
      splits=splits,
      classes=list(classes),
      source=source,
      read_all=frame_reader(root, template, verify, int(workers), skip_corrupt, lists, progress),
  )
  builder = _build(tfds, tfds_builder.builder_class(name, plan), name, data_dir)
  index = builder.info.metadata[tfds_builder.METADATA_KEY]
  return _summary(name, data_dir, out, index, classes, start)


def _check_args(tfds, name, verify, template, train_list, val_list):
  """{split: list path} of the lists given, after checking the arguments that need no list read;
  a TfdsWriteError naming the first bad one (name, verify, template, no list)."""
  check_name(tfds, name)
  if verify not in VERIFY:
    raise TfdsWriteError(f'--verify must be one of {VERIFY}, got {verify!r}')
  try:
    check_template(template)
  except ValueError as e:
    raise TfdsWriteError(f'--template: {e}') from None
  lists = {s: os.fspath(p) for s, p in ((TRAIN_SPLIT, train_list), (VAL_SPLIT, val_list)) if p}
  if not lists:
    raise TfdsWriteError('give --train_list and/or --val_list (the splits to write)')
  return lists


def _read_lists(lists, classes_file, num_classes):
  """({split: [records]}, class names) of the lists and the classes file (or `num_classes`, or the
  largest label + 1, default names); a TfdsWriteError for a missing or empty list, a class count
  that disagrees with the file, or repeated class names (a TFDS ClassLabel needs unique ones)."""
  if classes_file:
    classes = datasets.read_class_names(classes_file)
    if num_classes is not None and num_classes != len(classes):
      raise TfdsWriteError(
          f'--num_classes {num_classes} but {classes_file} names {len(classes)} ' f'classes'
      )
  splits = {}
  for split, path in lists.items():
    if not fileio.isfile(path):
      raise TfdsWriteError(f'{split} list {path} does not exist')
    splits[split] = datasets.parse_list_file(path, len(classes) if classes_file else num_classes)
    if not splits[split]:
      raise TfdsWriteError(f'{path}: no videos')
  if not classes_file:
    count = num_classes or 1 + max(r.label for records in splits.values() for r in records)
    classes = datasets.default_class_names(count)
  if len(set(classes)) != len(classes):
    raise TfdsWriteError(f'{classes_file}: class names must be unique (a TFDS ClassLabel)')
  return splits, classes


def _replace_existing(out, overwrite):
  """Removes an earlier TFDS dataset at `out` (the dataset's DATA_DIR/NAME/1.0.0) if `overwrite`; a
  TfdsWriteError if it exists without `overwrite`, or is not a TFDS dataset (never deleted)."""
  if fileio.exists(out):
    if not overwrite:
      raise TfdsWriteError(f'{out} exists; pass --overwrite to replace the TFDS dataset')
    if not fileio.isfile(os.path.join(out, 'dataset_info.json')):
      raise TfdsWriteError(f'{out} exists but is not a TFDS dataset; not replacing it')
    if fileio.is_remote(out):
      fileio.remove(out)
    else:
      shutil.rmtree(out)


def _build(tfds, builder_class, name, data_dir):
  """The builder after `download_and_prepare` into `data_dir` (ArrayRecord shards); a TfdsWriteError
  if a split was left without examples (all skipped). Its download folder DATA_DIR/downloads/NAME
  is removed either way, and DATA_DIR/downloads too if nothing else is in it.

  A URL `data_dir`: TFDS's ArrayRecord writer opens local files only (riegeli: 'open() failed ...
  opening gs://...'), so the dataset is built in a local temporary data_dir and its folder uploaded.
  """
  if fileio.is_remote(data_dir):
    from rnl_jax.data import tfds_builder  # pylint: disable=import-outside-toplevel

    with tempfile.TemporaryDirectory(prefix='rnl-tfds-') as local:
      builder = _build(tfds, builder_class, name, local)
      _upload_folder(
          tfds_builder.dataset_dir(local, name), tfds_builder.dataset_dir(data_dir, name)
      )
    return builder  # its info (the metadata index) is in memory: the local files are not needed
  builder = builder_class(data_dir=data_dir, file_format='array_record')
  config = tfds.download.DownloadConfig(
      download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
  )
  try:
    builder.download_and_prepare(
        download_dir=os.path.join(data_dir, 'downloads', name), download_config=config
    )
  except ValueError as e:
    if 'total number of generated examples is 0' in str(e):  # every entry of a split was skipped
      raise TfdsWriteError(f'a split of {name} has no readable video ({e})') from None
    raise
  finally:
    shutil.rmtree(os.path.join(data_dir, 'downloads', name), ignore_errors=True)
    try:
      os.rmdir(os.path.join(data_dir, 'downloads'))
    except OSError:
      pass
  return builder


def _upload_folder(local, url):
  """Uploads the files under the local folder `local` to `url`, dataset_info.json last: TFDS takes
  a dataset folder that has it as complete, so an interrupted upload is not read as a dataset."""
  files = [
      os.path.relpath(os.path.join(folder, name), local)
      for folder, _, names in os.walk(local)
      for name in names
  ]
  for rel in sorted(files, key=lambda rel: (rel == 'dataset_info.json', rel)):
    fileio.upload(os.path.join(local, rel), os.path.join(url, rel))


def _summary(name, data_dir, out, index, classes, start):
  """`write`'s summary: videos per split, skipped, size and speed, how to read and train on it.
  `index` is the dataset's metadata index; `start` the run's perf_counter start."""
  total = sum(fileio.getsize(os.path.join(out, f)) for f in fileio.listdir(out))
  seconds = time.perf_counter() - start
  videos = sum(len(c['path']) for c in index['splits'].values())
  return {
      'name': name,
      'data_dir': data_dir,
      'dataset_dir': out,
      'splits': {s: len(c['path']) for s, c in index['splits'].items()},
      'skipped': sum(len(v) for v in index['skipped'].values()),
      'num_classes': len(classes),
      'bytes': total,
      'seconds': round(seconds, 2),
      'videos_per_second': round(videos / seconds, 1),
      'read_with': f'tfds.data_source({name!r}, split={TRAIN_SPLIT!r}, data_dir={data_dir!r})',
      'config': (
          f'--config.data.format=tfds --config.data.tfds_name={name} '
          f'--config.data.tfds_data_dir={data_dir} '
          f'--config.data.num_classes={len(classes)}'
      ),
  }


def table_defaults(dataset, root):
  """(frame root, train list, val list, template, classes file or None) of a table dataset."""
  try:
    info = datasets.get_dataset(dataset)
  except KeyError as e:
    raise TfdsWriteError(f'--dataset: {cli.message(e)}') from None
  classes = os.path.join(root, info.classes_file) if info.classes_file else None
  return (
      info.frame_dir(root),
      info.list_path(root, 'train'),
      info.list_path(root, 'val'),
      info.template,
      classes if classes and fileio.isfile(classes) else None,
  )


def main(argv=None):
  parser = cli.ArgumentParser(
      prog='python -m rnl_jax.data.tfds_write', description=__doc__.split('\n', 1)[0]
  )
  parser.add_argument('--name', required=True, help='TFDS dataset name (lower case, digits, _)')
  parser.add_argument(
      '--data_dir', required=True, help='TFDS data_dir: writes DATA_DIR/NAME/1.0.0 (local or gs://)'
  )
  parser.add_argument(
      '--root',
      required=True,
      help='frame root the list folders are joined onto (with --dataset: the ' 'dataset root)',
  )
  parser.add_argument(
      '--dataset',
      default=None,
      help='a config.data.name of the dataset table (synthetic, ucf101, ...): '
      'lists, template and classes default to its layout under --root',
  )
  parser.add_argument('--train_list', default=None, help="list file of the 'train' split")
  parser.add_argument('--val_list', default=None, help="list file of the 'validation' split")
  parser.add_argument(
      '--template', default=None, help=f'frame file name, 1-based (default {DEFAULT_TEMPLATE})'
  )
  parser.add_argument('--classes', default=None, help='class-name file (line i = label i)')
  parser.add_argument(
      '--num_classes',
      type=int,
      default=None,
      help='without --classes: the class count (default max label + 1; names '
      'as datasets.default_class_names)',
  )
  parser.add_argument('--workers', type=int, default=1, help='frame reader processes (spawn)')
  parser.add_argument(
      '--skip_corrupt',
      action='store_true',
      help='leave unreadable videos out (listed in the metadata) instead of ' 'stopping',
  )
  parser.add_argument(
      '--verify',
      choices=VERIFY,
      default='decode',
      help='decode every frame (default) or only parse its JPEG header',
  )
  parser.add_argument('--overwrite', action='store_true', help='replace an existing dataset')
  parser.add_argument('--no_progress', action='store_true', help='no progress bar')
  args = parser.parse_args(argv)
  # Import ourselves by name: run as `-m`, this file is `__main__`, and spawn workers must find
  # `read_one` under the package path.
  from rnl_jax.data import tfds_write as writer  # pylint: disable=g-import-not-at-top,import-self

  with cli.user_errors(args.debug):  # TfdsWriteError: `error: ..`
    root, train_list, val_list = args.root, args.train_list, args.val_list
    template, classes = args.template, args.classes
    if args.dataset:
      frame_root, t, v, tmpl, c = writer.table_defaults(args.dataset, args.root)
      root, train_list, val_list = frame_root, train_list or t, val_list or v
      template, classes = template or tmpl, classes or c
    summary = writer.write(
        args.name,
        args.data_dir,
        root=root,
        train_list=train_list,
        val_list=val_list,
        template=template or DEFAULT_TEMPLATE,
        classes_file=classes,
        num_classes=args.num_classes,
        skip_corrupt=args.skip_corrupt,
        verify=args.verify,
        workers=args.workers,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
  if summary['skipped']:
    print(
        f'skipped {summary["skipped"]} unreadable videos (listed under "skipped" in the '
        f'metadata)',
        file=sys.stderr,
    )
  print(f'read with: {summary["read_with"]}; train with: {summary["config"]}', file=sys.stderr)
  print(json.dumps(summary))
  return summary


if __name__ == '__main__':
  main()
