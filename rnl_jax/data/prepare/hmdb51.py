"""HMDB51: the avi files in class folders plus the per-class split files (split N = 1, 2 or 3).

`testTrainMulti_7030_splits/<class>_test_split<N>.txt` lines are `<video>.avi <id>` with id 1 = train,
2 = test (our val list), 0 = unused in this split (counted in the notes, not prepared). Classes and their
order are TSN's `class_list.txt` (the tools the original delegates to, docs/original.md §3.5; the order of the
sorted split-file names, so `kick_ball` comes before `kick`); a split file of any other class is an
unknown class. Frame folders are named by the video file name without extension, flat under the frame
root. Videos are found by file name anywhere under --source.
"""

import os
import re

from rnl_jax.data.prepare import annotations as ann

# TSN's data/hmdb51_splits/class_list.txt (label = line index).
CLASSES = (
    'brush_hair',
    'cartwheel',
    'catch',
    'chew',
    'clap',
    'climb',
    'climb_stairs',
    'dive',
    'draw_sword',
    'dribble',
    'drink',
    'eat',
    'fall_floor',
    'fencing',
    'flic_flac',
    'golf',
    'handstand',
    'hit',
    'hug',
    'jump',
    'kick_ball',
    'kick',
    'kiss',
    'laugh',
    'pick',
    'pour',
    'pullup',
    'punch',
    'push',
    'pushup',
    'ride_bike',
    'ride_horse',
    'run',
    'shake_hands',
    'shoot_ball',
    'shoot_bow',
    'shoot_gun',
    'sit',
    'situp',
    'smile',
    'smoke',
    'somersault',
    'stand',
    'swing_baseball',
    'sword_exercise',
    'sword',
    'talk',
    'throw',
    'turn',
    'walk',
    'wave',
)
USES = {'1': 'train', '2': 'val', '0': None}


def read(source, annotations=None, split=1, label_map=None, exclude=()):
  """The Plan of HMDB51 split `split` (see the module docstring)."""
  del label_map
  root = annotations or source
  pattern = re.compile(rf'^(.+)_test_split{int(split)}\.txt$')
  split_files = [
      (m.group(1), p)
      for p in ann.walk_files(root, ('.txt',), max_depth=3, exclude=exclude)
      for m in [pattern.match(os.path.basename(p))]
      if m
  ]
  if not split_files:
    raise ann.PrepareError(
        f'no HMDB51 split files <class>_test_split{split}.txt under {root}; pass the '
        f'folder holding testTrainMulti_7030_splits with --annotations'
    )
  index = {c: i for i, c in enumerate(CLASSES)}
  videos = ann.index_by_basename(ann.walk_files(source, ann.VIDEO_EXTENSIONS, exclude=exclude))
  plan = ann.Plan(list(CLASSES), [], [], files=[p for _, p in split_files])
  rows = {'train': [], 'val': []}
  for cls, path in split_files:
    for lineno, line in ann.read_lines(path):
      where = f'{path}:{lineno}'
      parts = line.split()
      if len(parts) != 2 or parts[1] not in USES:
        raise ann.AnnotationError(f'{where}: expected `<video>.avi <0|1|2>`, got {line!r}')
      use = USES[parts[1]]
      if use is None:
        note = f'videos unused in split {split}'
        plan.notes[note] = plan.notes.get(note, 0) + 1
        continue
      rows[use].append((cls, parts[0], where, path))
  missing_classes = [c for c in CLASSES if c not in {cls for cls, _ in split_files}]
  if missing_classes:
    plan.notes[
        f'classes without a split file ({", ".join(missing_classes[:5])}'
        f'{", ..." if len(missing_classes) > 5 else ""})'
    ] = len(missing_classes)
  for use in ann.SPLITS:  # train rows first, then val, each in split-file order
    for cls, name, where, path in rows[use]:
      if cls not in index:
        plan.problems.append(
            ann.Problem(
                'unknown_class',
                use,
                name,
                where,
                f'class {cls!r} (split file {os.path.basename(path)}) '
                f'is not one of the 51 HMDB51 classes',
            )
        )
        continue
      found = videos.get(name)
      if found is None:
        plan.problems.append(
            ann.Problem('missing', use, name, where, f'no file {name} under {source}')
        )
        continue
      plan.items.append(
          ann.Item(use, ann.safe_name(ann.stem(name)), index[cls], found, where, name)
      )
  return plan
