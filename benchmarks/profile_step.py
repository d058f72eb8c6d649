"""Per-op profile of one train step (or --eval forward): where XLA spends the time, op by op and by kind.

  python -m benchmarks.profile_step --config configs/k400_8f.py --batch 2 [--variant tsm] [--size 224]
      [--eval] [--top 25] [--warmup 1] [--trace_dir /tmp/profile_step] [--hlo_out step.hlo.txt]

Builds and jits `rnl_jax.train.train_step` exactly as benchmarks/train_step.py does (one micro-batch
of --batch random uint8 clips, BatchNorm in training mode, the original's SGD), compiles it ahead of
time, runs --warmup untraced steps, then one step under `jax.profiler.trace`. The trace's op events
are matched by name to the optimized HLO (`compiled.as_text()`), and the report lists:
  - the top --top ops by total time, with their HLO opcode (fusions: kind and main fused op), shape,
    direction (fwd / bwd: the op_name holds `transpose(` for the backward pass) and layer;
  - totals grouped by kind (convolution, fusion[...], fft, reduce-window, select-and-scatter, copy,
    transpose, ...) and by fwd / bwd / other.
Op times are summed over all runtime threads, so totals can exceed the step's wall time when ops
overlap; ops the runtime hands to a thread pool asynchronously (Eigen convolutions and dots) may
be under-counted, so compare the op sum with the step's wall time. --hlo_out writes the optimized
HLO to look ops up (`grep '%name = '`); --xla_option NAME=VALUE passes XLA compiler options to the
step's jit, on top of `sharding.compiler_options()` (an empty VALUE drops one; e.g.
xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_REDUCE).
"""

import argparse
import collections
import glob
import gzip
import json
import os
import re
import shutil
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import train_step as train_step_benchmark
from benchmarks.train_step import load_config
from rnl_jax import config as config_lib

# Fused ops that name a fusion's category, most telling first.
_MAIN_OPS = (
    'convolution',
    'dot',
    'fft',
    'custom-call',
    'select-and-scatter',
    'reduce-window',
    'scatter',
    'gather',
    'sort',
    'reduce',
    'transpose',
    'concatenate',
    'pad',
    'dynamic-update-slice',
    'dynamic-slice',
    'reverse',
    'slice',
    'broadcast',
    'copy',
)
_INSTR = re.compile(r'^\s*(?:ROOT\s+)?%([\w.\-]+) = ')
_COMP = re.compile(r'^(?:ENTRY\s+)?%([\w.\-]+) .*\{\s*$')


def _split_type(rest):
  """'f32[2,3]{1,0} add(...)' or '(f32[2], s32[]) tuple(...)' -> (type, remainder)."""
  if rest.startswith('('):
    depth = 0
    for i, ch in enumerate(rest):
      depth += {'(': 1, ')': -1}.get(ch, 0)
      if depth == 0:
        return rest[: i + 1], rest[i + 1 :].lstrip()
  head, _, tail = rest.partition(' ')
  return head, tail


def parse_hlo(text):
  """Optimized HLO text -> {instruction name: info dict} over all computations."""
  instrs, comp_ops, comp = {}, collections.defaultdict(set), None
  for line in text.splitlines():
    m = _COMP.match(line)
    if m and not _INSTR.match(line):
      comp = m.group(1)
      continue
    m = _INSTR.match(line)
    if not m:
      continue
    shape, rest = _split_type(line[m.end() :])
    opcode = rest.split('(', 1)[0].strip()
    comp_ops[comp].add(opcode)
    info = {'opcode': opcode, 'shape': re.sub(r'\{[^{}]*\}', '', shape), 'line': line.strip()}
    for key, pattern in (
        ('kind', r'kind=(\w+)'),
        ('calls', r'calls=%([\w.\-]+)'),
        ('op_name', r'op_name="([^"]*)"'),
        ('target', r'custom_call_target="([^"]*)"'),
        ('dims', r'dim_labels=(\S+?)[,}]'),
        ('window', r'window=\{([^}]*)\}'),
    ):
      found = re.search(pattern, line)
      info[key] = found.group(1) if found else ''
    instrs[m.group(1)] = info
  for info in instrs.values():
    info['category'] = _category(info, comp_ops)
  return instrs


def _category(info, comp_ops):
  op = info['opcode']
  if op == 'fusion':
    ops = comp_ops.get(info['calls'], set())
    main = next((o for o in _MAIN_OPS if o in ops), 'elementwise')
    return f'fusion[{main}]'
  if op == 'custom-call':
    return f'custom-call[{info["target"]}]'
  if op == 'convolution' and (
      'rhs_reversal' in info['window']
      or 'feature_group' in info['line']
      or 'batch_group' in info['line']
  ):
    return 'convolution(non-canonical)'
  return op


def _direction(op_name):
  if not op_name:
    return 'other'
  return 'bwd' if 'transpose(' in op_name else 'fwd'


def _layer(op_name):
  """'jit(train_step)/transpose(jvp(TSN))/base_model/layer2_0/conv1/conv_general_dilated' -> shorter."""
  parts = [p for p in op_name.split('/') if not p.startswith(('jit(', 'jvp(', 'transpose('))]
  return '/'.join(parts)[-70:]


def read_trace(trace_dir):
  """Sum of 'X' event durations (us) and counts per event name, over all threads."""
  files = glob.glob(os.path.join(trace_dir, '**', '*.trace.json.gz'), recursive=True)
  if not files:
    raise FileNotFoundError(f'no *.trace.json.gz under {trace_dir}')
  events = json.load(gzip.open(max(files, key=os.path.getmtime)))['traceEvents']
  total, count = collections.Counter(), collections.Counter()
  for e in events:
    if e.get('ph') == 'X' and 'dur' in e:
      total[e['name']] += e['dur']
      count[e['name']] += 1
  return total, count, [e for e in events if e.get('ph') == 'X' and 'dur' in e]


def idle_gaps(events, instrs):
  """Time (us) when no traced op runs, per the kind of the async op last started before each gap.

  Convolutions and dots that XLA runs on its Eigen thread pool return before their work is done, so
  their time shows up as gaps between op events rather than as their own duration.
  """
  ops = sorted((e for e in events if e['name'] in instrs), key=lambda e: e['ts'])
  gaps, end, last_async = collections.Counter(), None, 'no async op yet'
  for e in ops:
    if end is not None and e['ts'] > end:
      gaps[last_async] += e['ts'] - end
    category = instrs[e['name']]['category']
    if category in ('convolution', 'dot', 'fft') or category.startswith('custom-call'):
      last_async = category
    end = e['ts'] + e['dur'] if end is None else max(end, e['ts'] + e['dur'])
  return gaps


def report(total, count, events, instrs, wall_s, top):
  ops = {n: d for n, d in total.items() if n in instrs}
  op_sum = sum(ops.values()) / 1e3
  print(
      f'\nstep wall {wall_s * 1e3:.0f} ms; {len(ops)} HLO ops traced, {op_sum:.0f} ms summed over threads'
  )
  print(f'\ntop {top} ops:')
  print(f'{"ms":>9} {"%":>5} {"n":>3}  {"dir":3}  {"op":34} {"category":26} {"shape":34} layer')
  for name, dur in sorted(ops.items(), key=lambda kv: -kv[1])[:top]:
    info = instrs[name]
    extra = f' dims={info["dims"]}' if info['dims'] else ''
    print(
        f'{dur / 1e3:9.1f} {100 * dur / 1e3 / max(op_sum, 1e-9):5.1f} {count[name]:3d}  '
        f'{_direction(info["op_name"]):3}  {name[:34]:34} {info["category"][:26]:26} '
        f'{info["shape"][:34]:34} {_layer(info["op_name"])}{extra}'
    )
  for title, key in (
      ('kind', lambda i: i['category']),
      ('direction', lambda i: _direction(i['op_name'])),
      ('direction x kind', lambda i: f'{_direction(i["op_name"])} {i["category"]}'),
  ):
    groups, ngroup = collections.Counter(), collections.Counter()
    for name, dur in ops.items():
      groups[key(instrs[name])] += dur
      ngroup[key(instrs[name])] += 1
    print(f'\nby {title}:')
    for k, dur in groups.most_common(20 if title == 'direction x kind' else None):
      print(
          f'{dur / 1e3:9.1f} ms {100 * dur / 1e3 / max(op_sum, 1e-9):5.1f}%  {ngroup[k]:4d} ops  {k}'
      )
  gaps = idle_gaps(events, instrs)
  print(
      f'\nidle (no traced op running): {sum(gaps.values()) / 1e3:.0f} ms, by the kind of the last '
      'async op started before each gap (its untraced work):'
  )
  for k, dur in gaps.most_common():
    print(f'{dur / 1e3:9.1f} ms  {k}')
  other = sorted(((d, n) for n, d in total.items() if n not in instrs), reverse=True)[:5]
  print('\nlargest non-op events (runtime / python):')
  for dur, name in other:
    print(f'{dur / 1e3:9.1f} ms  {name[:100]}')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='configs/k400_8f.py')
  parser.add_argument(
      '--batch', type=int, default=None, help='clips per step (default: the config)'
  )
  parser.add_argument('--variant', default=None, help='tsn | tsm | rnl (default: the config)')
  parser.add_argument('--size', type=int, default=None, help='crop size (default: the config)')
  parser.add_argument('--dtype', default=None, help='float32 | bfloat16 (default: the config)')
  parser.add_argument('--query_chunk', type=int, default=None)
  parser.add_argument(
      '--eval', action='store_true', help='profile the eval forward instead of a step'
  )
  parser.add_argument('--top', type=int, default=25)
  parser.add_argument('--warmup', type=int, default=1, help='untraced steps before the traced one')
  parser.add_argument('--trace_dir', default=None, help='keep the trace here (default: a temp dir)')
  parser.add_argument('--hlo_out', default=None, help='write the optimized HLO text here')
  train_step_benchmark.add_xla_option_flag(parser)
  args = parser.parse_args()
  config = load_config(args.config)
  for key in ('dtype', 'variant', 'query_chunk'):
    if getattr(args, key) is not None:
      config.model[key] = getattr(args, key)
  if args.size:
    config.image_size = args.size
  batch = args.batch or config.batch_size
  options = train_step_benchmark.compiler_options(args.xla_option)  # training's + --xla_option
  t, s = config.num_segments, config.image_size
  if args.eval:
    model = config_lib.model_from_config(config)
    x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (batch, t, s, s, 3), dtype=np.uint8))
    variables = jax.jit(lambda x: model.init(jax.random.PRNGKey(0), x, train=False))(x[:1])
    fn = jax.jit(lambda v, x: model.apply(v, x, train=False), compiler_options=options or None)
    args_ = (variables, x)
  else:
    fn, state, data, _ = train_step_benchmark.setup(config, batch, options)
    args_ = (state, data)
  start = time.perf_counter()
  compiled = fn.lower(*args_).compile()
  compile_s = time.perf_counter() - start

  def run():
    nonlocal args_
    out = compiled(*args_)
    if not args.eval:
      args_ = (out[0], args_[1])
    jax.block_until_ready(out)

  hlo = compiled.as_text()
  if args.hlo_out:
    with open(args.hlo_out, 'w') as f:
      f.write(hlo)
  instrs = parse_hlo(hlo)
  print(
      f'{args.config}: {config.model.variant} R{config.model.depth} width {config.model.width}, '
      f'{batch} clips x {t} x {s}px, {config.model.dtype}, compiler options {options}: compile {compile_s:.1f} s, '
      f'{len(instrs)} HLO instructions'
  )
  for i in range(args.warmup):
    start = time.perf_counter()
    run()
    print(f'warm-up step {i}: {time.perf_counter() - start:.3f} s')
  trace_dir = args.trace_dir or tempfile.mkdtemp(prefix='profile_step_')
  try:
    with jax.profiler.trace(trace_dir):
      start = time.perf_counter()
      run()
      wall_s = time.perf_counter() - start
    total, count, events = read_trace(trace_dir)
  finally:
    if args.trace_dir is None:
      shutil.rmtree(trace_dir, ignore_errors=True)
  report(total, count, events, instrs, wall_s, args.top)


if __name__ == '__main__':
  main()
