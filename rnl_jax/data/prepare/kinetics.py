"""Kinetics-400: official CSV annotations and downloaded clips (docs/original.md §3.5, 7.13, 7.14).

Annotations: `train.csv` and `validate.csv` (or `kinetics_400_train.csv` / `kinetics_400_val.csv`,
`kinetics_train.csv` / `kinetics_val.csv`, ...) with the header `label,youtube_id,time_start,time_end,split`
(`is_cc` and other extra columns are ignored). The `split` column decides the list ('train'; 'val' or
'validate'); rows of other splits (the unlabelled test set) are counted in the notes.

Videos: anywhere under --source, in class folders (the official downloader's `<split>/<label>/` layout)
or flat, named `<youtube_id>_<start:06d>_<end:06d>.<ext>` as the official downloader names them; a row
is matched by (youtube_id, start, end), whatever the folder.

Classes and labels are the original's (`gen_label_kinetics.py`): the 400 names of
`kinetics_label_map.txt` (bundled; `--label_map` for another file) in file order, normalised by
spaces -> `_` and removing `"`, `(`, `)`, `'`; a row's label is normalised the same way. Frame folders
are `<normalised class>/<video file name without extension>` (docs/original.md §7.14:
named after what the download produced, i.e. what the original's `vid2img_kinetics.py` creates).
"""

import csv

from rnl_jax.data import kinetics400_classes
from rnl_jax.data.kinetics400_classes import normalise
from rnl_jax.data.prepare import annotations as ann

TRAIN_FILES = ('train.csv', 'kinetics_400_train.csv', 'kinetics400_train.csv', 'kinetics_train.csv')
VAL_FILES = (
    'validate.csv',
    'val.csv',
    'kinetics_400_val.csv',
    'kinetics_400_validate.csv',
    'kinetics400_val.csv',
    'kinetics_val.csv',
)
COLUMNS = ('label', 'youtube_id', 'time_start', 'time_end')
SPLIT_NAMES = {'train': 'train', 'val': 'val', 'validate': 'val', 'validation': 'val'}


def class_names(label_map=None):
  """Normalised class names in label order: the bundled original map, or `label_map` (one per line)."""
  if label_map:
    raw = [line for _, line in ann.read_lines(label_map)]
  else:
    raw = list(kinetics400_classes.NAMES)
  names = [normalise(n) for n in raw]
  if len(set(names)) != len(names):
    dup = sorted({n for n in names if names.count(n) > 1})
    raise ann.PrepareError(
        f'{label_map or "the bundled label map"}: class names {dup} are not unique '
        f'after normalisation'
    )
  return names


def _time(value, where, column):
  """Integer seconds of a time_start / time_end field ('14', '14.0')."""
  try:
    number = float(value)
  except ValueError:
    raise ann.AnnotationError(f'{where}: {column} {value!r} is not a number') from None
  if number != int(number) or number < 0:
    raise ann.AnnotationError(f'{where}: {column} {value!r} is not a whole number of seconds >= 0')
  return int(number)


def clip_key(path):
  """(youtube_id, start, end) of a downloaded clip `<id>_<start>_<end>.<ext>`, or None."""
  parts = ann.stem(path).rsplit('_', 2)
  if len(parts) != 3 or not parts[0] or not (parts[1].isdigit() and parts[2].isdigit()):
    return None
  return parts[0], int(parts[1]), int(parts[2])


def _read_csv(path, file_split):
  """[(where, row dict)] of one annotation CSV; AnnotationError naming file:line for bad rows."""
  with open(path, newline='', encoding='utf-8-sig') as f:
    rows = list(csv.reader(f))
  if not rows:
    raise ann.AnnotationError(
        f'{path}:1: empty file (expected the header {",".join(COLUMNS)},split)'
    )
  header = [h.strip() for h in rows[0]]
  missing = [c for c in COLUMNS if c not in header]
  if missing:
    raise ann.AnnotationError(
        f'{path}:1: header {rows[0]} lacks the column(s) {missing} (expected '
        f'{",".join(COLUMNS)},split)'
    )
  out = []
  for lineno, row in enumerate(rows[1:], 2):
    if not any(field.strip() for field in row):
      continue
    where = f'{path}:{lineno}'
    if len(row) != len(header):
      raise ann.AnnotationError(f'{where}: {len(row)} fields, the header has {len(header)} ({row})')
    fields = dict(zip(header, row))
    fields.setdefault('split', file_split)
    out.append((where, fields))
  return out


def read(source, annotations=None, split=None, label_map=None, exclude=()):
  """The Plan of a Kinetics-400 download (see the module docstring). `split` is unused."""
  del split
  root = annotations or source
  classes = class_names(label_map)
  index = {c: i for i, c in enumerate(classes)}
  files = [
      (ann.find_file(root, TRAIN_FILES, 'Kinetics train annotation CSV'), 'train'),
      (ann.find_file(root, VAL_FILES, 'Kinetics validation annotation CSV'), 'val'),
  ]
  clips = {}
  for path in ann.walk_files(source, ann.VIDEO_EXTENSIONS, exclude=exclude):
    key = clip_key(path)
    if key is not None:
      clips.setdefault(key, path)
  plan = ann.Plan(classes, [], [], files=[f for f, _ in files])
  seen = set()
  for path, file_split in files:
    for where, row in _read_csv(path, file_split):
      split = SPLIT_NAMES.get(row['split'].strip().lower())
      yid = row['youtube_id'].strip()
      start = _time(row['time_start'], where, 'time_start')
      end = _time(row['time_end'], where, 'time_end')
      video = f'{yid}_{start:06d}_{end:06d}'
      if split is None:
        note = f'rows of split {row["split"].strip()!r} (not prepared)'
        plan.notes[note] = plan.notes.get(note, 0) + 1
        continue
      if (split, yid, start, end) in seen:  # the same clip twice (e.g. in two CSVs): listed once
        plan.notes['duplicate rows'] = plan.notes.get('duplicate rows', 0) + 1
        continue
      seen.add((split, yid, start, end))
      label = normalise(row['label'])
      if label not in index:
        plan.problems.append(
            ann.Problem(
                'unknown_class',
                split,
                video,
                where,
                f'class {row["label"].strip()!r} (normalised {label!r}) is not '
                f'one of the {len(classes)} classes',
            )
        )
        continue
      found = clips.get((yid, start, end))
      if found is None:
        plan.problems.append(
            ann.Problem('missing', split, video, where, f'no file {video}.<ext> under {source}')
        )
        continue
      plan.items.append(
          ann.Item(
              split, f'{label}/{ann.safe_name(ann.stem(found))}', index[label], found, where, video
          )
      )
  return plan
