"""RNL attention alone: plain vs query-chunked vs streamed, time and peak memory, at layer2's size for
8 and 16 frames.

  python -m benchmarks.attention [--frames 8,16] [--chunks 0,784,1568,3136,6272] [--streamed 784]
      [--modes eval,train] [--batch 2] [--dtype float32] [--repeats 5]
      [--out benchmarks/results/attention.json]

`rnl_jax.models.rnl.region_attention(P, Theta, query_chunk)` on random `[B, M, 256]` inputs with
M = T x 28 x 28 (layer2 of R50 at 224 px, where the attention costs 2 x 10.07 G MACs per block at
8 frames and 4x that at 16): 'eval' is the forward, 'train' the forward and the vjp of both inputs
(what a train step runs per block). --streamed lists tile sizes for
`rnl_jax.models.rnl.streamed_attention` (eval cases only: evaluation's method on CPU). GFLOP/s is
nominal, from the full 2 x M^2 x C' MACs (streamed computes 56 % of the affinity's). Each case is a
subprocess; memory is its peak RSS minus its RSS
with the inputs in place (the temporaries of that one call: plain attention holds [B, M, M] logits
and weights, a chunk holds [B, chunk, M]). Times are medians of --repeats after a warm-up.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

from benchmarks.model import peak_rss_gb, rss_gb, time_calls

REPO = pathlib.Path(__file__).resolve().parent.parent


def run_case(case, repeats):
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from rnl_jax.models.rnl import region_attention, streamed_attention, tiled_attention  # pylint: disable=import-outside-toplevel

  m = case['frames'] * 28 * 28
  dtype = getattr(jnp, case['dtype'])
  kp, kt, kg = jax.random.split(jax.random.PRNGKey(0), 3)
  shape = (case['batch'], m, case['channels'])
  p = (0.05 * jax.random.normal(kp, shape)).astype(dtype)
  theta = jax.random.normal(kt, shape).astype(dtype)
  g = jax.random.normal(kg, shape).astype(dtype)
  chunk = case['chunk'] or None
  if case.get('method') == 'streamed':
    fn = jax.jit(lambda p, t: streamed_attention(p, t, chunk))
    args = (p, theta)
  elif case['mode'] == 'eval':
    fn = jax.jit(lambda p, t: region_attention(p, t, chunk))
    args = (p, theta)
  else:

    if case.get('method') == 'tiled':
      attend = lambda p, t: tiled_attention(p, t, chunk)
    else:
      attend = lambda p, t: region_attention(p, t, chunk)

    def fwd_bwd(p, t, g):
      y, pull = jax.vjp(attend, p, t)
      return y, pull(g)

    fn = jax.jit(fwd_bwd)
    args = (p, theta, g)
  jax.block_until_ready(args)
  start = time.perf_counter()
  compiled = fn.lower(*args).compile()
  compile_s = time.perf_counter() - start
  base = rss_gb()
  times = time_calls(lambda: jax.block_until_ready(compiled(*args)), repeats)
  macs = 2 * case['batch'] * m * m * case['channels'] * (3 if case['mode'] == 'train' else 1)
  med = sorted(times)[len(times) // 2]
  return dict(
      case,
      compile_s=compile_s,
      times_s=times,
      median_s=med,
      gflops=2 * macs / med / 1e9,
      temp_gb=peak_rss_gb() - base,
      peak_rss_gb=peak_rss_gb(),
  )


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ints = lambda s: [int(x) for x in s.split(',') if x]
  parser.add_argument('--frames', type=ints, default=[8, 16])
  parser.add_argument('--chunks', type=ints, default=[0, 784, 1568, 3136, 6272])
  parser.add_argument(
      '--streamed', type=ints, default=[784], help='tile rows of streamed eval cases'
  )
  parser.add_argument(
      '--tiled', type=ints, default=[784], help='tile rows of tiled (flash-style) train cases'
  )
  parser.add_argument('--modes', type=lambda s: s.split(','), default=['eval', 'train'])
  parser.add_argument('--batch', type=int, default=2)
  parser.add_argument('--channels', type=int, default=256)
  parser.add_argument('--dtype', default='float32')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--out', default='benchmarks/results/attention.json')
  parser.add_argument('--case', default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.case:
    print(json.dumps(run_case(json.loads(args.case), args.repeats)))
    return
  results = []
  for frames in args.frames:
    for mode in args.modes:
      methods = [('chunked', c) for c in args.chunks] + [
          ('streamed' if mode == 'eval' else 'tiled', c)
          for c in (args.streamed if mode == 'eval' else args.tiled)
      ]
      for method, chunk in methods:
        if chunk >= frames * 28 * 28:
          continue
        case = {
            'frames': frames,
            'mode': mode,
            'chunk': chunk,
            'batch': args.batch,
            'channels': args.channels,
            'dtype': args.dtype,
        }
        if method != 'chunked':
          case['method'] = method
        proc = subprocess.run(
            [
                sys.executable,
                '-m',
                'benchmarks.attention',
                '--case',
                json.dumps(case),
                '--repeats',
                str(args.repeats),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode:
          r = dict(
              case, error=proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'killed'
          )
        else:
          r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        print(
            json.dumps(
                {
                    k: (round(v, 3) if isinstance(v, float) else v)
                    for k, v in r.items()
                    if k != 'times_s'
                }
            ),
            flush=True,
        )
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(
      json.dumps(
          {
              'date': time.strftime('%Y-%m-%d'),
              'cpus': os.cpu_count(),
              'command': ' '.join(['python -m benchmarks.attention'] + sys.argv[1:]),
              'results': results,
          },
          indent=1,
      )
  )
  lines = [
      '| frames | M | mode | attention | median s | GFLOP/s (nominal) | temporaries GB | peak RSS GB |',
      '|---|---|---|---|---|---|---|---|',
  ]
  for r in results:
    method = r.get('method', 'chunked')
    attention = (
        'plain'
        if not r['chunk']
        else f"chunks of {r['chunk']}"
        if method == 'chunked'
        else f"{method}, tiles of {r['chunk']}"
    )
    if 'error' in r:
      lines.append(
          f"| {r['frames']} | {r['frames'] * 784} | {r['mode']} | {attention} | "
          f"{r['error'][:60]} ||||"
      )
      continue
    lines.append(
        f"| {r['frames']} | {r['frames'] * 784} | {r['mode']} | {attention} | "
        f"{r['median_s']:.3f} | {r['gflops']:.1f} | {r['temp_gb']:.2f} | {r['peak_rss_gb']:.2f} |"
    )
  md = '\n'.join(lines)
  out.with_suffix('.md').write_text(md + '\n')
  print(md)


if __name__ == '__main__':
  main()
