"""UCF101: the avi files in class folders plus `ucfTrainTestlist/` (split N = 1, 2 or 3).

As the TSN tools the original delegates to (`build_file_list.py`, docs/original.md §3.5): classes and their order
from `classInd.txt` (`<index> <Class>`, 1-based), the label of a video = its class folder in the list
(`<Class>/<video>.avi`), 0-based; `trainlist0N.txt` lines also carry the 1-based index, which must agree.
`testlist0N.txt` is the validation (= test) list. Frame folders are named by the video file name without
extension, flat under the frame root (`v_ApplyEyeMakeup_g08_c01`).

Videos are found by file name anywhere under --source, case-insensitively (the release's lists write
`HandstandPushups/v_HandStandPushups_...`).
"""

import os

from rnl_jax.data.prepare import annotations as ann


def _classes(path):
  """[names] in index order from classInd.txt; AnnotationError naming file:line for bad lines."""
  entries = {}
  for lineno, line in ann.read_lines(path):
    parts = line.split()
    if len(parts) != 2 or not parts[0].isdigit():
      raise ann.AnnotationError(f'{path}:{lineno}: expected `<index> <ClassName>`, got {line!r}')
    idx = int(parts[0])
    if idx in entries:
      raise ann.AnnotationError(f'{path}:{lineno}: index {idx} given twice')
    entries[idx] = parts[1]
  if sorted(entries) != list(range(1, len(entries) + 1)):
    raise ann.AnnotationError(f'{path}: class indices are not 1..{len(entries)}')
  return [entries[i] for i in range(1, len(entries) + 1)]


def read(source, annotations=None, split=1, label_map=None, exclude=()):
  """The Plan of UCF101 split `split` (see the module docstring)."""
  del label_map
  root = annotations or source
  class_file = ann.find_file(root, ('classInd.txt',), 'UCF101 classInd.txt')
  lists = os.path.dirname(class_file)
  classes = _classes(class_file)
  index = {c.lower(): i for i, c in enumerate(classes)}
  videos = ann.index_by_basename(
      ann.walk_files(source, ann.VIDEO_EXTENSIONS, exclude=exclude), lower=True
  )
  plan = ann.Plan(classes, [], [], files=[class_file])
  for list_split, name, labelled in (
      ('train', f'trainlist{split:02d}.txt', True),
      ('val', f'testlist{split:02d}.txt', False),
  ):
    path = os.path.join(lists, name)
    if not os.path.isfile(path):
      raise ann.PrepareError(f'{path} not found (UCF101 split {split}, next to {class_file})')
    plan.files.append(path)
    for lineno, line in ann.read_lines(path):
      where = f'{path}:{lineno}'
      parts = line.split()
      if not 1 <= len(parts) <= (2 if labelled else 1):
        raise ann.AnnotationError(
            f'{where}: expected `<Class>/<video>.avi{" <index>" if labelled else ""}`, '
            f'got {line!r}'
        )
      rel = parts[0]
      if '/' not in rel:
        raise ann.AnnotationError(f'{where}: expected `<Class>/<video>.avi`, got {rel!r}')
      cls = rel.split('/')[0]
      if cls.lower() not in index:
        plan.problems.append(
            ann.Problem(
                'unknown_class',
                list_split,
                rel,
                where,
                f'class folder {cls!r} is not in {os.path.basename(class_file)}',
            )
        )
        continue
      label = index[cls.lower()]
      if len(parts) == 2:
        if not parts[1].isdigit():
          raise ann.AnnotationError(f'{where}: class index {parts[1]!r} is not an integer')
        if int(parts[1]) - 1 != label:
          raise ann.AnnotationError(
              f'{where}: class index {parts[1]} but {class_file} gives {cls!r} the '
              f'index {label + 1}'
          )
      found = videos.get(os.path.basename(rel).lower())
      if found is None:
        plan.problems.append(
            ann.Problem(
                'missing', list_split, rel, where, f'no file {os.path.basename(rel)} under {source}'
            )
        )
        continue
      plan.items.append(
          ann.Item(list_split, ann.safe_name(ann.stem(rel)), label, found, where, rel)
      )
  return plan
