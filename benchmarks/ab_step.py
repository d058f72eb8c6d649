"""Two train steps compared in one process, their steps alternated: an A/B that this noisy machine
cannot blur.

  python -m benchmarks.ab_step --config configs/k400_8f.py --batch 2 --set model.variant=tsm \
      --b model.query_chunk=0 [--pairs 12]
  python -m benchmarks.ab_step --set model.variant=tsm \
      --b_xla_option xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_CONCURRENCY_OPTIMIZED
  python -m benchmarks.ab_step --set model.variant=tsm --b_off store_block_outputs

Separate runs of `benchmarks.train_step` drift by 10-15 % between minutes on a shared VM, which
hides any lever under ~5 %. Here both programs (A: the config with --set and --a overrides and
--a_xla_option; B likewise) are compiled first, then their steps run as pairs in alternating order
(AB, BA, AB, ...), so drift hits both alike, and the statistic is the paired difference B - A:
its median, its mean with the standard error, and how often B was faster. A difference is called
resolved when the mean is more than twice its standard error from zero.
"""

import argparse
import ast
import contextlib
import importlib
import time

import flax.linen as nn
import jax
import numpy as np

from benchmarks import train_step as bench


def _block_output_as_is(x, anchor):
  del anchor
  return x


def _autodiff_max_pool(x, window, stride, padding):
  pad = (padding, padding)
  return nn.max_pool(x, (window, window), (stride, stride), padding=(pad, pad))


# Adopted CPU levers that a side can switch off (--a_off / --b_off), so that what each gives can be
# measured on any machine (docs/performance.md, "The levers on each machine"):
# name -> (module, attribute, what the attribute was before the lever).
LEVERS = {
    'store_block_outputs': ('rnl_jax.models.resnet', 'materialize', _block_output_as_is),
    'pool_tap_index': ('rnl_jax.models.resnet', 'max_pool', _autodiff_max_pool),
}


@contextlib.contextmanager
def levers_off(names):
  """Within it, the named levers are replaced by what they replaced; programs traced within keep
  that. Unknown names fail with the known ones."""
  unknown = sorted(set(names) - set(LEVERS))
  if unknown:
    raise KeyError(f'{unknown}: no such lever (known: {sorted(LEVERS)})')
  saved = []
  try:
    for name in names:
      module_name, attribute, before = LEVERS[name]
      module = importlib.import_module(module_name)
      saved.append((module, attribute, getattr(module, attribute)))
      setattr(module, attribute, before)
    yield
  finally:
    for module, attribute, value in reversed(saved):
      setattr(module, attribute, value)


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


def build(config_path, overrides, xla_options, batch, off=()):
  """(jitted step, state, batch) of the config with `overrides` and the levers `off` switched off,
  compiled and run once (warm)."""
  config = bench.load_config(config_path)
  for assignment in overrides:
    apply_override(config, assignment)
  with levers_off(off):  # the step is traced within, so it keeps what the levers were
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


def _arguments():
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
    parser.add_argument(
        f'--{side}_off',
        action='append',
        default=[],
        choices=sorted(LEVERS),
        help=f'adopted lever switched off on side {side.upper()} (repeatable)',
    )
  return parser.parse_args()


def main():
  args = _arguments()
  sides = {
      side.upper(): build(
          args.config,
          args.set + getattr(args, side),
          getattr(args, f'{side}_xla_option'),
          args.batch,
          getattr(args, f'{side}_off'),
      )
      for side in ('a', 'b')
  }
  times = compare(sides, args.pairs)
  s = paired_summary(times['A'], times['B'])
  for side in ('a', 'b'):
    off = getattr(args, f'{side}_off')
    print(
        f'{side.upper()}: {args.set + getattr(args, side)} {getattr(args, f"{side}_xla_option")}'
        + (f' levers off: {off}' if off else '')
    )
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
