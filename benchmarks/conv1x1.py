"""1x1 convolutions of ResNet-50 on XLA:CPU: the convolution path against the same product as a dot.

  python -m benchmarks.conv1x1 [--frames 16] [--repeats 5]

A 1x1 convolution is a matmul over channels; written as `einsum('nhwc,co->nhwo')` (strided ones
after slicing) it takes XLA's dot path instead of its convolution path. Per layer shape of an RNL /
TSM ResNet-50 at 224 px (`--frames` frames folded into the batch), prints the median time of the
jitted gradient (forward and both backward products) of each form, with the trainer's CPU compiler
options, and the totals.
"""

import argparse
import time

import jax
import jax.numpy as jnp

from rnl_jax import sharding

# (H = W, in channels, out channels, stride) of the 1x1 convolutions of ResNet-50 at 224 px
SHAPES = (
    (56, 64, 64, 1),
    (56, 64, 256, 1),
    (56, 256, 64, 1),
    (28, 512, 128, 1),
    (28, 128, 512, 1),
    (14, 1024, 256, 1),
    (14, 256, 1024, 1),
    (7, 2048, 512, 1),
    (7, 512, 2048, 1),
    (56, 256, 512, 2),
    (28, 512, 1024, 2),
)


def as_conv(x, w, stride, padding='VALID'):
  dims = ('NHWC', 'HWIO', 'NHWC')
  return jax.lax.conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=dims)


def as_dot(x, w, stride):
  if stride > 1:
    x = x[:, ::stride, ::stride]
  return jnp.einsum('nhwc,co->nhwo', x, w[0, 0])


def median_seconds(call, repeats):
  """Median seconds of `call()` (waited for) over `repeats` calls after one warm-up call."""
  jax.block_until_ready(call())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(call())
    times.append(time.perf_counter() - start)
  return sorted(times)[len(times) // 2]


def time_grad(fn, x, w, stride, repeats):
  """Median seconds of the compiled gradient of sum(fn(x, w)^2) with respect to x and w."""
  loss = lambda x, w: jnp.sum(fn(x, w, stride) ** 2)
  compiled = (
      jax.jit(jax.grad(loss, argnums=(0, 1))).lower(x, w).compile(sharding.compiler_options())
  )
  return median_seconds(lambda: compiled(x, w), repeats)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--frames', type=int, default=16, help='frames in the batch (2 clips x 8)')
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args()
  key = jax.random.PRNGKey(0)
  totals = [0.0, 0.0]
  print('| H x W | C_in -> C_out | stride | convolution ms | dot ms | convolution / dot |')
  print('|---|---|---|---|---|---|')
  for hw, cin, cout, stride in SHAPES:
    x = jax.random.normal(key, (args.frames, hw, hw, cin))
    w = 0.01 * jax.random.normal(key, (1, 1, cin, cout))
    conv = time_grad(as_conv, x, w, stride, args.repeats)
    dot = time_grad(as_dot, x, w, stride, args.repeats)
    totals[0] += conv
    totals[1] += dot
    print(
        f'| {hw} x {hw} | {cin} -> {cout} | {stride} | {conv * 1e3:.1f} | {dot * 1e3:.1f} | '
        f'{conv / dot:.2f} |',
        flush=True,
    )
  print(
      f'| all | | | {totals[0] * 1e3:.0f} | {totals[1] * 1e3:.0f} | {totals[0] / totals[1]:.2f} |'
  )


if __name__ == '__main__':
  main()
