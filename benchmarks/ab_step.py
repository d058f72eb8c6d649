"""Two train steps compared in one process, their steps alternated: an A/B that this noisy machine
cannot blur.

  python -m benchmarks.ab_step --config configs/k400_8f.py --batch 2 --set model.variant=tsm \
      --b model.query_chunk=0 [--pairs 12]
  python -m benchmarks.ab_step --set model.variant=tsm \
      --b_xla_option xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_CONCURRENCY_OPTIMIZED

Separate runs of `benchmarks.train_step` drift by 10-15 % between minutes on a shared VM, which
hides any lever under ~5 %. Here both programs (A: the config with --set and --a overrides and
--a_xla_option; B likewise) are compiled first, then their steps run as pairs in alternating order
(AB, BA, AB, ...), so drift hits both alike, and the statistic is the paired difference B - A:
its median, its mean with the standard error, and how often B was faster. A difference is called
resolved when the mean is more than twice its standard error from zero.
"""

import argparse
import ast
import time

import jax
import numpy as np

from benchmarks import train_step as bench


def apply_override(config, assignment):
  """Sets `config` at a dotted path from 'path=value' (value a Python literal, else a string).
  Unknown keys fail with the key's name: a typo must not silently compare a program with itself."""
  path, sep, text = assignment.partition('=')
  if not sep:
    raise ValueError(f'{assignment!r}: expected path=value')
  *parents, leaf = path.split('.')
  node = config
  for i, key in enumerate(parents):
    if key not in node:
      raise KeyError(f'{".".join(parents[: i + 1])}: no such config key (in {assignment!r})')
    node = node[key]
  if leaf not in node:
    raise KeyError(f'{path}: no such config key (in {assignment!r})')
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = text
  node[leaf] = value


def paired_summary(a, b):
  """Statistics of the paired step times (seconds): medians, B - A's median, mean and standard
  error, the count of pairs where B was faster, and a verdict."""
  a, b = np.asarray(a, float), np.asarray(b, float)
  d = b - a
  se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float('inf')
  mean = float(d.mean())
  if abs(mean) <= 2 * se:
    verdict = 'not resolved'
  else:
    verdict = 'B faster' if mean < 0 else 'B slower'
  return {
      'a_median': float(np.median(a)),
      'b_median': float(np.median(b)),
      'diff_median': float(np.median(d)),
      'diff_mean': mean,
      'diff_se': se,
      'b_faster': int((d < 0).sum()),
      'pairs': len(d),
      'verdict': verdict,
  }


def build(config_path, overrides, xla_options, batch):
  """(jitted step, state, batch) of the config with `overrides`, compiled and run once (warm)."""
  config = bench.load_config(config_path)
  for assignment in overrides:
    apply_override(config, assignment)
  step, state, data, _ = bench.setup(
      config, batch or config.batch_size, bench.compiler_options(xla_options)
  )
  for _ in range(2):  # compile, then one step to touch the memory
    state, metrics = step(state, data)
    jax.block_until_ready(metrics)
  return [step, state, data]


def compare(sides, pairs):
  """Alternates the sides' steps for `pairs` pairs; returns each side's step times."""
  times = {name: [] for name in sides}
  for i in range(pairs):
    for name in list(sides) if i % 2 == 0 else list(sides)[::-1]:
      side = sides[name]
      start = time.perf_counter()
      side[1], metrics = side[0](side[1], side[2])
      jax.block_until_ready(metrics)
      times[name].append(time.perf_counter() - start)
  return times


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='configs/k400_8f.py')
  parser.add_argument('--batch', type=int, default=None, help='clips per step (default: config)')
  parser.add_argument('--pairs', type=int, default=12)
  for flag, what in (('set', 'both sides'), ('a', 'side A'), ('b', 'side B')):
    parser.add_argument(
        f'--{flag}', action='append', default=[], metavar='PATH=VALUE', help=f'override for {what}'
    )
  for side in ('a', 'b'):
    parser.add_argument(
        f'--{side}_xla_option',
        action='append',
        default=[],
        metavar='NAME=VALUE',
        help=f'XLA compiler option for side {side.upper()} (as benchmarks.train_step)',
    )
  args = parser.parse_args()
  sides = {
      'A': build(args.config, args.set + args.a, args.a_xla_option, args.batch),
      'B': build(args.config, args.set + args.b, args.b_xla_option, args.batch),
  }
  times = compare(sides, args.pairs)
  s = paired_summary(times['A'], times['B'])
  print(f'A: {args.set + args.a} {args.a_xla_option}\nB: {args.set + args.b} {args.b_xla_option}')
  print(
      f'{args.config}, {s["pairs"]} pairs: A median {s["a_median"]:.3f} s, B median '
      f'{s["b_median"]:.3f} s; B - A median {s["diff_median"] * 1e3:+.0f} ms, mean '
      f'{s["diff_mean"] * 1e3:+.0f} +- {s["diff_se"] * 1e3:.0f} ms (s.e.), B faster in '
      f'{s["b_faster"]}/{s["pairs"]}: {s["verdict"]}'
  )
  print('A', np.round(times['A'], 3).tolist())
  print('B', np.round(times['B'], 3).tolist())


if __name__ == '__main__':
  main()
