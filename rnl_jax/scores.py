"""Score files: per-video scores the test protocol writes and `python -m rnl_jax.ensemble` reads.

A scores file (`WORKDIR/{test.output}_scores.npz`) holds
  video_ids    [N] str     the list's video paths
  labels       [N] int64   ground truth
  logits       [N, K] f32  the model's raw logits averaged over a video's views
  class_names  [K] str
  confusion    [K, K] int64  rows: true label, columns: top-1 prediction
Pure NumPy: reading or combining score files needs no JAX, orbax or input pipeline.
Paths are local or URLs (`gs://...`, rnl_jax.fileio).
"""

import builtins
import contextlib

import numpy as np

from rnl_jax import fileio
from rnl_jax.errors import UserError


class ScoresError(UserError, ValueError):
  """A file that is not a usable scores file; the message names it."""


def confusion_matrix(scores, labels):
  """[K, K] counts of (true label, top-1 prediction) of scores [N, K] and labels [N]."""
  k = scores.shape[1]
  m = np.zeros((k, k), np.int64)
  np.add.at(m, (labels, np.argsort(-scores, axis=1, kind='stable')[:, 0]), 1)
  return m


def save_scores(path, video_ids, labels, logits, class_names):
  """Writes a scores file atomically (temporary `{path}.tmp.npz`, then renamed; on a URL a local
  temporary uploaded in one write)."""
  with fileio.atomic_path(path, fileio.temp_path(path, '.tmp.npz')) as tmp:
    # A file object: np.savez would add `.npz` to a name without it, and on a URL the temporary
    # carries the final name, which may lack it.
    with builtins.open(tmp, 'wb') as f:
      np.savez(
          f,
          video_ids=np.asarray(video_ids, dtype=str),
          labels=np.asarray(labels, np.int64),
          logits=np.asarray(logits, np.float32),
          class_names=np.asarray(class_names, dtype=str),
          confusion=confusion_matrix(logits, labels),
      )


def load_scores(path):
  """{video_ids, labels, logits, class_names} of a scores file (ScoresError naming it otherwise)."""
  try:
    # np.load reads a local path itself (its errors as before); a URL through a file object.
    with contextlib.ExitStack() as stack:
      src = stack.enter_context(fileio.open(path, 'rb')) if fileio.is_remote(path) else path
      with np.load(src) as f:
        out = {k: f[k] for k in ('video_ids', 'labels', 'logits', 'class_names')}
  except (OSError, ValueError, KeyError) as e:
    raise ScoresError(f'{path}: not a scores file of the test protocol ({e})') from None
  n = len(out['video_ids'])
  if out['logits'].shape[0] != n or out['labels'].shape != (n,):
    raise ScoresError(
        f'{path}: {n} video ids but logits {out["logits"].shape}, labels ' f'{out["labels"].shape}'
    )
  if len(set(out['video_ids'].tolist())) != n:
    raise ScoresError(f'{path}: duplicate video ids')
  return out
