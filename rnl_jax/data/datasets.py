"""Dataset table and list-file parsing (docs/original.md §3.1, 3.2, 7.11, 7.13, 7.15).

A list file has one record per video, `<folder> <num_frames> <label>` (0-based label). Upstream reads
Kinetics lists with a CSV reader and every other list by splitting on spaces, while the TSM label tools
write space-separated Kinetics lists (docs/original.md §7.13); `parse_list_file` therefore detects the delimiter
per file from its first record. Folders are relative to the dataset's frame root (docs/original.md §7.15: the
Something-V1 label tool's `something/v1/img/` prefix must be stripped) or absolute (the authors' Kinetics
lists; a `gs://` URL counts as absolute: `join_root`). Malformed lines raise ValueError naming the
file and line instead of failing later in a loader. Lists, class-name files and roots may be local
paths or URLs (`gs://bucket/...`, read through rnl_jax.fileio).

Pure Python/NumPy: no jax or torch, so loader worker processes stay light.
"""

import dataclasses
import os
from typing import Optional

from rnl_jax import fileio
from rnl_jax.data import sampling
from rnl_jax.errors import DataError

DELIMITERS = ('space', 'comma')


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """One row of docs/original.md §3.2; paths are relative to a dataset root (`../data/` upstream).

  `num_classes` is None when the class count comes from `classes_file` (the synthetic dataset).
  `flip` is False where the label depends on left/right (Something-Something, Jester, synthetic).
  `delimiter` is what upstream expects ('comma' only for Kinetics); parsing auto-detects anyway.
  `classes_file` (line i = name of label i) is written by `rnl_jax.data.prepare`; optional except for
  the synthetic dataset, whose class count it gives.
  """

  name: str
  frame_root: str
  train_list: str
  val_list: str  # doubles as the test list (docs/original.md §3.2)
  template: str  # 1-based frame file name, e.g. 'img_{:05d}.jpg'
  num_classes: Optional[int]
  flip: bool
  delimiter: str = 'space'
  classes_file: Optional[str] = None

  def frame_dir(self, root):
    """Absolute-or-root-relative folder the list's video folders are joined onto."""
    return os.path.join(root, self.frame_root)

  def list_path(self, root, split):
    """Path of the 'train' or 'val' (= 'test') list file under `root`."""
    if split == 'train':
      return os.path.join(root, self.train_list)
    if split in ('val', 'test'):
      return os.path.join(root, self.val_list)
    raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")

  def resolve_num_classes(self, root):
    """`num_classes`, or the number of names in `root/classes_file` when the table leaves it open."""
    if self.num_classes is not None:
      return self.num_classes
    return len(read_class_names(os.path.join(root, self.classes_file)))


# `python -m rnl_jax.data.prepare` names the downloads; the trainer accepts those names too.
ALIASES = {'kinetics400': 'kinetics', 'something_v1': 'something', 'something_v2': 'somethingv2'}


class _Table(dict):
  """A dict that also takes the prepare command's names and whose KeyError lists the known ones."""

  def __missing__(self, key):
    if key in ALIASES:
      return self[ALIASES[key]]
    raise KeyError(f'unknown dataset {key!r}; known datasets: {", ".join(sorted(self))}')

  def __contains__(self, key):
    return super().__contains__(ALIASES.get(key, key))


DATASETS = _Table(
    {
        d.name: d
        for d in (
            # Upstream's frame root is the authors' absolute path and its lists hold absolute folders;
            # relative lists (as written by the TSM label tool) are joined onto `kinetics/images`.
            DatasetInfo(
                'kinetics',
                'kinetics/images',
                'kinetics/shuffled_train_videofolder.csv',
                'kinetics/shuffled_val_videofolder.csv',
                'img_{:05d}.jpg',
                400,
                True,
                'comma',
                classes_file='kinetics/classes.txt',
            ),
            DatasetInfo(
                'something',
                'something/v1/img',
                'something/v1/train_videofolder.txt',
                'something/v1/val_videofolder.txt',
                '{:05d}.jpg',
                174,
                False,
                classes_file='something/v1/classes.txt',
            ),
            DatasetInfo(
                'somethingv2',
                'something/v2/20bn-something-something-v2-frames',
                'something/v2/train_videofolder.txt',
                'something/v2/val_videofolder.txt',
                '{:06d}.jpg',
                174,
                False,
                classes_file='something/v2/classes.txt',
            ),
            DatasetInfo(
                'ucf101',
                'UCF101/jpg',
                'UCF101/file_list/ucf101_rgb_train_split_1.txt',
                'UCF101/file_list/ucf101_rgb_val_split_1.txt',
                'img_{:05d}.jpg',
                101,
                True,
                classes_file='UCF101/classes.txt',
            ),
            DatasetInfo(
                'hmdb51',
                'HMDB51/images',
                'HMDB51/splits/hmdb51_rgb_train_split_1.txt',
                'HMDB51/splits/hmdb51_rgb_val_split_1.txt',
                'img_{:05d}.jpg',
                51,
                True,
                classes_file='HMDB51/classes.txt',
            ),
            DatasetInfo(
                'jester',
                'jester/20bn-jester-v1',
                'jester/train_videofolder.txt',
                'jester/val_videofolder.txt',
                '{:05d}.jpg',
                27,
                False,
            ),
            # rnl_jax.data.synthetic's layout (root = its out_dir); classes are time-reversal pairs and
            # left/right-sensitive (moves_right vs moves_left), so no flip.
            DatasetInfo(
                'synthetic',
                'frames',
                'train.txt',
                'val.txt',
                'img_{:05d}.jpg',
                None,
                False,
                classes_file='classes.txt',
            ),
        )
    }
)


def get_dataset(name):
  """`DATASETS[name]`, with a KeyError naming the known datasets for an unknown name."""
  return DATASETS[name]


def join_root(root, path):
  """`os.path.join(root, path)`, except that a URL `path` stays as it is (a list may name its
  videos by URL; os.path.join keeps only absolute local paths)."""
  path = os.fspath(path)
  return path if fileio.is_remote(path) else os.path.join(os.fspath(root), path)


def read_class_names(path):
  """Non-blank lines of a class-name file (line i = name of label i); local or a URL."""
  with fileio.open(path) as f:
    names = [line.strip() for line in f]
  names = [n for n in names if n]
  if not names:
    raise DataError(f'{path}: no class names')
  return names


def default_class_names(num_classes):
  """Names for a model without its own: Kinetics-400's (normalised as the TSM label tool does, the
  original's label order) for 400 classes, else `class_<i>`."""
  if num_classes == 400:
    from rnl_jax.data import kinetics400_classes  # pylint: disable=import-outside-toplevel

    return kinetics400_classes.normalised_names()
  return [f'class_{i}' for i in range(num_classes)]


# ----------------------------------------------------------------------------------------------------
# list files


@dataclasses.dataclass(frozen=True)
class VideoRecord:
  """One list-file line: video folder (relative to the frame root, or absolute), F and 0-based label."""

  path: str
  num_frames: int
  label: int


def _split(line, delimiter):
  """[folder, num_frames, label] strings: the last two fields, the folder may contain the delimiter."""
  parts = line.rsplit(',', 2) if delimiter == 'comma' else line.rsplit(None, 2)
  return [p.strip() for p in parts]


def _looks_like_comma(line):
  """A first record `folder,F,label` (both numbers integers) makes the whole file comma-separated."""
  parts = _split(line, 'comma')
  if len(parts) != 3 or not parts[0]:
    return False
  try:
    int(parts[1]), int(parts[2])
  except ValueError:
    return False
  return True


def detect_delimiter(lines):
  """'comma' or 'space', from the first non-blank line (docs/original.md §7.13: Kinetics lists come in both)."""
  for line in lines:
    if line.strip():
      return 'comma' if _looks_like_comma(line.strip()) else 'space'
  return 'space'


def _read_lines(path):
  """(path as str, the file's lines); local or a URL."""
  path = os.fspath(path)
  return path, fileio.read_text(path).splitlines()


def _parse_lines(path, lines, parse_line):
  """[parse_line(line, where, raw)] over the non-blank lines, in file order: `line` stripped, `raw`
  as in the file, `where` = 'path:lineno' (1-based) for the error messages."""
  records = []
  for lineno, raw in enumerate(lines, 1):
    line = raw.strip()
    if line:
      records.append(parse_line(line, f'{path}:{lineno}', raw))
  return records


def _int_label(label_str, where, raw):
  try:
    return int(label_str)
  except ValueError:
    raise DataError(f'{where}: label {label_str!r} is not an integer (line {raw!r})') from None


def _check_label(label, num_classes, where, raw):
  """A label must lie in [0, num_classes) (be >= 0 without num_classes)."""
  if label < 0 or (num_classes is not None and label >= num_classes):
    bound = f'[0, {num_classes})' if num_classes is not None else '>= 0'
    raise DataError(f'{where}: label {label} outside {bound} (line {raw!r})')
  return label


def parse_list_file(path, num_classes=None, delimiter=None):
  """Records of a list file, in file order; blank lines skipped.

  Args:
    path: the list file.
    num_classes: if given, labels must lie in [0, num_classes).
    delimiter: 'space' (any whitespace), 'comma', or None to detect it from the first record.
  Returns:
    list of `VideoRecord`.
  Raises:
    ValueError naming the file and 1-based line number for a line with fewer than 3 fields, a
    non-integer frame count or label, a negative frame count or an out-of-range label.
  """
  path, lines = _read_lines(path)
  if delimiter is None:
    delimiter = detect_delimiter(lines)
  elif delimiter not in DELIMITERS:
    raise ValueError(f'delimiter must be one of {DELIMITERS} or None, got {delimiter!r}')
  sep = 'commas' if delimiter == 'comma' else 'spaces'

  def parse_line(line, where, raw):
    parts = _split(line, delimiter)
    if len(parts) < 3 or not parts[0]:
      raise DataError(
          f'{where}: expected 3 fields `folder num_frames label` separated by {sep}, '
          f'got {raw!r}'
      )
    folder, frames_str, label_str = parts
    try:
      num_frames = int(frames_str)
    except ValueError:
      raise DataError(
          f'{where}: frame count {frames_str!r} is not an integer (line {raw!r})'
      ) from None
    label = _int_label(label_str, where, raw)
    if num_frames < 0:
      raise DataError(f'{where}: negative frame count {num_frames} (line {raw!r})')
    return VideoRecord(folder, num_frames, _check_label(label, num_classes, where, raw))

  return _parse_lines(path, lines, parse_line)


@dataclasses.dataclass(frozen=True)
class VideoFileRecord:
  """One line of a raw-video list: video file (relative to a root, or absolute), 0-based label and the
  list's frame count if it gives one (a hint only: video sources count the frames in the container).
  """

  path: str
  label: int
  num_frames: Optional[int] = None


def parse_video_list_file(path, num_classes=None):
  """Records of a raw-video list file, in file order; blank lines skipped.

  Lines are `<path> <label>` or `<path> <num_frames> <label>`, whitespace-separated and split from the
  right, so the path may contain spaces. A line whose second-to-last field is an integer is read as the
  3-field form (a path ending in ` <integer>` must therefore be given with its frame count).

  Args:
    path: the list file.
    num_classes: if given, labels must lie in [0, num_classes).
  Returns:
    list of `VideoFileRecord`.
  Raises:
    ValueError naming the file and 1-based line number for a line with fewer than 2 fields, a
    non-integer label, a negative frame count or an out-of-range label.
  """
  path, lines = _read_lines(path)

  def parse_line(line, where, raw):
    parts = line.rsplit(None, 2)
    if len(parts) < 2:
      raise DataError(
          f'{where}: expected `path label` or `path num_frames label` separated by '
          f'spaces, got {raw!r}'
      )
    num_frames = None
    if len(parts) == 3:
      try:
        num_frames = int(parts[1])
      except ValueError:  # the path contains a space: `path with spaces label`
        parts = line.rsplit(None, 1)
      else:
        parts = [parts[0], parts[2]]
    video, label_str = parts
    label = _int_label(label_str, where, raw)
    if num_frames is not None and num_frames < 0:
      raise DataError(f'{where}: negative frame count {num_frames} (line {raw!r})')
    return VideoFileRecord(video, _check_label(label, num_classes, where, raw), num_frames)

  return _parse_lines(path, lines, parse_line)


def filter_records(records, mode, remove_missing=True):
  """Drops records upstream drops (F < 3, except ensemble testing; docs/original.md §3.1, 7.11).

  Returns (kept records, number dropped).
  """
  kept = [r for r in records if sampling.keep_record(r.num_frames, mode, remove_missing)]
  return kept, len(records) - len(kept)


def load_records(name, root, split, mode=None, remove_missing=True):
  """Parsed and filtered records of a table dataset's split; returns (records, dropped, frame_dir).

  `mode` defaults to 'train' for the train split and 'val' otherwise.
  """
  info = DATASETS[name]
  records = parse_list_file(info.list_path(root, split), info.resolve_num_classes(root))
  mode = mode or ('train' if split == 'train' else 'val')
  kept, dropped = filter_records(records, mode, remove_missing)
  return kept, dropped, info.frame_dir(root)
