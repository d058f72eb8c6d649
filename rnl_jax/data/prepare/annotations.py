"""What the dataset readers return (a `Plan`), and the helpers they share.

A reader turns one official download (annotation files + videos or frame folders) into a `Plan`: the
class names in label order, one `Item` per annotation row whose video exists on disk, and a `Problem`
for every row that cannot become an item (its video is missing, or it names an unknown class). Rows
left out on purpose (a split the tool does not prepare, HMDB51's unused videos) are counted in `notes`.
Nothing is dropped without being listed. Malformed rows raise `AnnotationError` naming file and line.

Pure Python: no decoding here (that is `media`, in worker processes).
"""

import dataclasses
import os
import re
from typing import Optional

from rnl_jax.errors import UserError

SPLITS = ('train', 'val')
VIDEO_EXTENSIONS = (
    '.mp4',
    '.webm',
    '.mkv',
    '.avi',
    '.mov',
    '.m4v',
    '.flv',
    '.mpg',
    '.mpeg',
    '.3gp',
    '.ogv',
)
PROBLEM_KINDS = ('missing', 'undecodable', 'zero_frames', 'unknown_class')


class PrepareError(UserError, ValueError):
  """The preparation cannot go on (no annotations found, clashing outputs, changed settings, ...)."""


class AnnotationError(PrepareError):
  """A malformed annotation row or file; the message starts with `file:line`."""


@dataclasses.dataclass(frozen=True)
class Item:
  """One annotation row whose video exists.

  split: 'train' or 'val' (= the test list, docs/original.md §3.2).
  name: output name: the frame folder relative to the frame root, and (plus '.mp4') the re-encoded
    video relative to the videos folder; no whitespace (list files are space-separated).
  label: 0-based class index.
  source: the video file (or, Something-V1, the frame folder) on disk.
  where: 'annotation_file:line' of the row.
  video: the annotation's name of the video (what the report calls it).
  """

  split: str
  name: str
  label: int
  source: str
  where: str
  video: str


@dataclasses.dataclass(frozen=True)
class Problem:
  """A row (or video) that is not in the lists: kind in PROBLEM_KINDS, with a human-readable detail."""

  kind: str
  split: str
  video: str
  where: str
  detail: str

  def as_dict(self):
    return dataclasses.asdict(self)


@dataclasses.dataclass
class Plan:
  """A reader's result: classes (line i = label i), items and problems in annotation order, notes
  ({what: count}) for rows left out on purpose, and the annotation files read."""

  classes: list
  items: list
  problems: list
  notes: dict = dataclasses.field(default_factory=dict)
  files: list = dataclasses.field(default_factory=list)
  source_kind: str = 'video'  # 'video' (files) or 'frames' (Something-V1's JPEG folders)
  source_fps: Optional[float] = None  # frame rate of frame-folder sources (re-encoding)


def safe_name(name):
  """`name` with every whitespace character replaced by '_' (list files are space-separated)."""
  return re.sub(r'\s', '_', name)


def stem(path):
  """File name without folder and extension."""
  return os.path.splitext(os.path.basename(path))[0]


def walk_files(root, extensions=None, max_depth=None, exclude=()):
  """Sorted paths of the files under `root` (symbolic links followed; optionally only these extensions,
  lower-case, and at most `max_depth` folders deep); hidden entries (our `.tmp-*` leftovers too) and the
  folders in `exclude` (e.g. the output, when it lies inside the download) are skipped."""
  root = os.path.abspath(root)
  exclude = {os.path.abspath(e) for e in exclude}
  out = []
  base_depth = root.rstrip(os.sep).count(os.sep)
  for folder, dirs, files in os.walk(root, followlinks=True):
    dirs[:] = sorted(
        d for d in dirs if not d.startswith('.') and os.path.join(folder, d) not in exclude
    )
    if max_depth is not None and folder.count(os.sep) - base_depth >= max_depth:
      dirs[:] = []
    for f in sorted(files):
      if f.startswith('.'):
        continue
      if extensions is None or os.path.splitext(f)[1].lower() in extensions:
        out.append(os.path.join(folder, f))
  return out


def find_file(root, names, what, max_depth=2):
  """The annotation file called one of `names` in `root` or a folder at most `max_depth` below it: the
  shallowest wins, then the first name (breadth-first, so the huge video/frame folders of a download
  are only looked into when nothing is found above them). PrepareError if none."""
  level = [os.path.abspath(root)]
  for _ in range(max_depth + 1):
    for folder in level:
      for name in names:
        if os.path.isfile(os.path.join(folder, name)):
          return os.path.join(folder, name)
    deeper = []
    for folder in level:
      try:
        with os.scandir(folder) as entries:
          deeper += sorted(e.path for e in entries if e.is_dir() and not e.name.startswith('.'))
      except OSError:
        continue
    level = deeper
  raise PrepareError(
      f'no {what} found under {root} (looked for {", ".join(names)}); pass the folder '
      f'holding it with --annotations'
  )


def first_dir(*candidates):
  """The first existing folder of `candidates` (the last one if none exists)."""
  for c in candidates:
    if os.path.isdir(c):
      return c
  return candidates[-1]


def read_lines(path):
  """(1-based line number, stripped line) of the non-blank lines of a text file (BOM and CR tolerated)."""
  with open(path, encoding='utf-8-sig') as f:
    return [(i, line.strip()) for i, line in enumerate(f, 1) if line.strip()]


def index_by_basename(paths, lower=False):
  """{basename: path} (first path wins), optionally keyed by the lower-case basename."""
  out = {}
  for p in paths:
    key = os.path.basename(p)
    out.setdefault(key.lower() if lower else key, p)
  return out
