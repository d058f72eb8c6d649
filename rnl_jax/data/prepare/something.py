"""Something-Something V1 and V2 (docs/original.md §3.5, 7.15).

V1 (`gen_label_sthv1.py`): the released JPEG frame folders `20bn-something-something-v1/<id>/%05d.jpg`
(100 px high) and the semicolon-separated CSVs `something-something-v1-labels.csv` (one class per line;
label = index in SORTED order), `something-something-v1-train.csv` / `-validation.csv` (`id;class`).

V2 (`gen_label_sthv2.py`): the released videos `20bn-something-something-v2/<id>.webm` and the JSON files
`something-something-v2-labels.json` ({class: "index"}, classes in file order, index = position),
`something-something-v2-train.json` / `-validation.json` ([{id, template, ...}]; label = the template
with `[` and `]` removed). The unlabelled test split is not prepared (counted in the notes if present).

Frame folders are named by the video id, relative to the frame root (docs/original.md
§7.15: not the label tool's `something/v1/img/<id>`).
"""

import json
import os

from rnl_jax.data.prepare import annotations as ann

V1_LABELS = 'something-something-v1-labels.csv'
V1_SPLITS = (
    ('train', 'something-something-v1-train.csv'),
    ('val', 'something-something-v1-validation.csv'),
)
V1_FRAMES = '20bn-something-something-v1'
V1_FPS = 12.0
V1_FRAME_PATTERN = r'^(\d+)\.jpg$'  # the release's `%05d.jpg`
V2_LABELS = 'something-something-v2-labels.json'
V2_SPLITS = (
    ('train', 'something-something-v2-train.json'),
    ('val', 'something-something-v2-validation.json'),
)
V2_TEST = 'something-something-v2-test.json'
V2_VIDEOS = '20bn-something-something-v2'


def read_v1(source, annotations=None, split=None, label_map=None, exclude=()):
  """The Plan of the Something-Something V1 release (see the module docstring)."""
  del split, label_map, exclude
  root = annotations or source
  labels_file = ann.find_file(root, (V1_LABELS,), 'Something-V1 class list')
  classes = sorted(line for _, line in ann.read_lines(labels_file))
  if len(set(classes)) != len(classes):
    raise ann.AnnotationError(f'{labels_file}: repeated class names')
  index = {c: i for i, c in enumerate(classes)}
  frames = ann.first_dir(os.path.join(source, V1_FRAMES), source)
  plan = ann.Plan(classes, [], [], files=[labels_file], source_kind='frames', source_fps=V1_FPS)
  for split, name in V1_SPLITS:
    path = ann.find_file(root, (name,), f'Something-V1 {split} annotation CSV')
    plan.files.append(path)
    for lineno, line in ann.read_lines(path):
      where = f'{path}:{lineno}'
      parts = line.split(';')
      if len(parts) != 2 or not parts[0].strip():
        raise ann.AnnotationError(f'{where}: expected `id;class`, got {line!r}')
      vid, label = parts[0].strip(), parts[1].strip()
      if label not in index:
        plan.problems.append(
            ann.Problem(
                'unknown_class',
                split,
                vid,
                where,
                f'class {label!r} is not in {os.path.basename(labels_file)}',
            )
        )
        continue
      folder = os.path.join(frames, vid)
      if not os.path.isdir(folder):
        plan.problems.append(ann.Problem('missing', split, vid, where, f'no frame folder {folder}'))
        continue
      plan.items.append(ann.Item(split, ann.safe_name(vid), index[label], folder, where, vid))
  return plan


def _load_json(path, kind, expected):
  """The JSON document of `path`, which must be a `kind` (AnnotationError saying `expected` otherwise)."""
  with open(path, encoding='utf-8') as f:
    try:
      data = json.load(f)
    except ValueError as e:
      raise ann.AnnotationError(f'{path}: not valid JSON: {e}') from None
  if not isinstance(data, kind):
    raise ann.AnnotationError(f'{path}: expected {expected}')
  return data


def _v2_classes(path):
  """Class names in file order; AnnotationError if an index is not the class's position."""
  data = _load_json(path, dict, 'an object {class: "index"}')
  classes = []
  for position, (name, idx) in enumerate(data.items()):
    try:
      ok = int(idx) == position
    except (TypeError, ValueError):
      ok = False
    if not ok:
      raise ann.AnnotationError(
          f'{path}: class {name!r} has index {idx!r} but is entry {position} '
          f'(the original asserts index == position)'
      )
    classes.append(name)
  return classes


def _v2_entries(path):
  return _load_json(path, list, 'a list of {"id": ..., "template": ...} entries')


def read_v2(source, annotations=None, split=None, label_map=None, exclude=()):
  """The Plan of the Something-Something V2 release (see the module docstring)."""
  del split, label_map, exclude
  root = annotations or source
  labels_file = ann.find_file(root, (V2_LABELS,), 'Something-V2 class list')
  classes = _v2_classes(labels_file)
  index = {c: i for i, c in enumerate(classes)}
  videos = ann.first_dir(os.path.join(source, V2_VIDEOS), source)
  plan = ann.Plan(classes, [], [], files=[labels_file])
  for split, name in V2_SPLITS:
    path = ann.find_file(root, (name,), f'Something-V2 {split} annotation JSON')
    plan.files.append(path)
    for i, entry in enumerate(_v2_entries(path), 1):
      where = f'{path}:entry {i}'
      if not isinstance(entry, dict) or 'id' not in entry or 'template' not in entry:
        raise ann.AnnotationError(
            f'{where}: expected an object with "id" and "template", got {entry!r}'
        )
      vid = str(entry['id']).strip()
      label = str(entry['template']).replace('[', '').replace(']', '')
      if label not in index:
        plan.problems.append(
            ann.Problem(
                'unknown_class',
                split,
                vid,
                where,
                f'template {entry["template"]!r} is not a class of '
                f'{os.path.basename(labels_file)}',
            )
        )
        continue
      video = os.path.join(videos, f'{vid}.webm')
      if not os.path.isfile(video):
        plan.problems.append(ann.Problem('missing', split, vid, where, f'no file {video}'))
        continue
      plan.items.append(ann.Item(split, ann.safe_name(vid), index[label], video, where, vid))
  try:
    test = ann.find_file(root, (V2_TEST,), 'test')
  except ann.PrepareError:
    test = None
  if test:
    plan.notes['test videos (unlabelled, not prepared)'] = len(_v2_entries(test))
  return plan
