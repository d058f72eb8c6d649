"""Score ensembles (docs/original.md §6.4): `python -m rnl_jax.ensemble A.npz B.npz [--coeff 1,1]`.

Reads the per-video scores written by the test protocol (`WORKDIR/test_scores.npz`), checks that every
file holds the same videos with the same labels (matched by video id, so file order does not matter),
and averages the raw logits as the original does (each model's scores times its `--coeff`, summed,
divided by the number of models). Prints top-1, top-5 and mean class accuracy; `--out F.json` writes
them, `--scores_out F.npz` writes the ensemble's scores (an input for further ensembles).

The seed's (16+8) x 10 Kinetics row is `python -m rnl_jax.ensemble k400_16f/test_scores.npz
k400_8f/test_scores.npz`. Every path may be a URL (`gs://bucket/...`; rnl_jax.fileio).
"""

import json
import sys

import numpy as np

from rnl_jax import cli
from rnl_jax import fileio
from rnl_jax import metrics as metrics_lib
from rnl_jax import scores as scores_lib


class EnsembleError(scores_lib.ScoresError):
  """Score files that cannot be combined; the message names the file."""


def combine(score_files, coeffs=None):
  """(video_ids, labels, logits, class_names) of the ensemble of loaded score dicts, in the first
  file's video order."""
  coeffs = [1.0] * len(score_files) if coeffs is None else list(coeffs)
  if len(coeffs) != len(score_files):
    raise EnsembleError(f'{len(coeffs)} coefficients for {len(score_files)} score files')
  (name0, first), rest = score_files[0], score_files[1:]
  ids = first['video_ids'].tolist()
  total = coeffs[0] * first['logits'].astype(np.float64)
  for (name, s), c in zip(rest, coeffs[1:]):
    if s['logits'].shape[1] != first['logits'].shape[1]:
      raise EnsembleError(
          f'{name}: {s["logits"].shape[1]} classes, {name0} has {first["logits"].shape[1]}'
      )
    pos = {v: i for i, v in enumerate(s['video_ids'].tolist())}
    missing = [v for v in ids if v not in pos]
    if missing or len(pos) != len(ids):
      extra = sorted(set(pos) - set(ids))
      what = (
          f'lacks {missing[0]!r} ({len(missing)} videos)' if missing else f'has extra {extra[0]!r}'
      )
      raise EnsembleError(
          f'{name} {what} compared with {name0}: the files must score the same videos'
      )
    order = np.array([pos[v] for v in ids])
    labels = s['labels'][order]
    bad = np.flatnonzero(labels != first['labels'])
    if bad.size:
      v = ids[bad[0]]
      raise EnsembleError(
          f'{name}: video {v!r} has label {labels[bad[0]]}, {name0} says '
          f'{first["labels"][bad[0]]}'
      )
    total += c * s['logits'][order].astype(np.float64)
  return ids, first['labels'], total / len(score_files), first['class_names'].tolist()


def main(argv=None):
  p = cli.ArgumentParser(prog='python -m rnl_jax.ensemble', description=__doc__.split('\n')[0])
  p.add_argument('scores', nargs='+', help='test-protocol scores files (WORKDIR/test_scores.npz)')
  p.add_argument(
      '--coeff',
      type=cli.comma_list(float),
      nargs='+',
      default=None,
      help='weights, one per file: `1,2` or `1 2` (default all 1)',
  )
  p.add_argument('--out', default='', help='write the metrics as JSON here')
  p.add_argument('--scores_out', default='', help='write the ensemble scores (.npz) here')
  args = p.parse_args(argv)
  coeffs = cli.flatten_lists(args.coeff) if args.coeff else None
  with cli.user_errors(args.debug):  # EnsembleError: `error: ..`, exit 2
    return _run(args, coeffs)


def _run(args, coeffs):
  loaded = [(path, scores_lib.load_scores(path)) for path in args.scores]
  ids, labels, logits, names = combine(loaded, coeffs)
  m = metrics_lib.classification_metrics(logits, labels)
  result = dict(
      m, files=[fileio.absolute(s) for s in args.scores], coeffs=coeffs or [1.0] * len(loaded)
  )
  for path, s in loaded:
    one = metrics_lib.classification_metrics(s['logits'], s['labels'])
    print(
        f'{path}: top-1 {one["top1"]:.4f}  top-5 {one["top5"]:.4f}  mean class acc '
        f'{one["mean_class_acc"]:.4f}'
    )
  print(
      f'ensemble of {len(loaded)} over {m["num_videos"]} videos: top-1 {m["top1"]:.4f}  top-5 '
      f'{m["top5"]:.4f}  mean class acc {m["mean_class_acc"]:.4f}'
  )
  if args.out:  # local: open() as before (same errors); a URL: one upload when the file closes
    with fileio.open(args.out, 'w') as f:
      json.dump(result, f, indent=1)
  if args.scores_out:
    scores_lib.save_scores(args.scores_out, ids, labels, logits, names)
  return 0


if __name__ == '__main__':
  sys.exit(main())
