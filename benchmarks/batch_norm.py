"""Train-mode BatchNorm on XLA:CPU: its closed-form backward against autodiff of the statistics.

  python -m benchmarks.batch_norm [--frames 16] [--repeats 7]

`rnl_jax.models.layers.batch_norm_train` differentiates BatchNorm in closed form (one reduction pass
over (dy, x), one element-wise pass); autodiff of the same two-pass statistics
(`layers.batch_norm_values`) differentiates the mean and the variance separately. Per activation shape of a ResNet-50 at 224 px (`--frames` frames
folded into the batch), prints the median time of the jitted gradient of `sum(relu(BN(x)) * w)` with
respect to x, scale and bias in both forms, with the trainer's CPU compiler options.
"""

import argparse

import jax
import jax.numpy as jnp

from benchmarks.conv1x1 import median_seconds
from rnl_jax import sharding
from rnl_jax.models.layers import batch_norm_train, batch_norm_values

# (H = W, channels) of BatchNorm inputs in ResNet-50 at 224 px
SHAPES = ((112, 64), (56, 64), (56, 256), (28, 128), (28, 512), (14, 256), (14, 1024), (7, 2048))


def compiled_grad(batch_norm, x, scale, bias, w):
  def loss(x, scale, bias):
    y, mean, var = batch_norm(x, scale, bias, 1e-5)
    stats = jax.lax.stop_gradient(jnp.sum(mean) + jnp.sum(var))  # the running-statistics update
    return jnp.sum(jax.nn.relu(y) * w) + 0.0 * stats

  grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
  return grad.lower(x, scale, bias).compile(sharding.compiler_options())


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--frames', type=int, default=16, help='frames in the batch (2 clips x 8)')
  parser.add_argument('--repeats', type=int, default=7)
  args = parser.parse_args()
  key = jax.random.PRNGKey(0)
  totals = [0.0, 0.0]
  print('| H x W | C | autodiff ms | closed form ms | autodiff / closed form |')
  print('|---|---|---|---|---|')
  for hw, c in SHAPES:
    x = jax.random.normal(key, (args.frames, hw, hw, c))
    w = jax.random.normal(jax.random.PRNGKey(1), x.shape)
    scale, bias = jnp.ones((c,)), jnp.zeros((c,))
    times = []
    for batch_norm in (batch_norm_values, batch_norm_train):  # autodiff, closed form
      compiled = compiled_grad(batch_norm, x, scale, bias, w)
      times.append(median_seconds(lambda: compiled(x, scale, bias), args.repeats))
    totals = [t + s for t, s in zip(totals, times)]
    print(
        f'| {hw} x {hw} | {c} | {times[0] * 1e3:.1f} | {times[1] * 1e3:.1f} | '
        f'{times[0] / times[1]:.2f} |',
        flush=True,
    )
  print(f'| all | | {totals[0] * 1e3:.0f} | {totals[1] * 1e3:.0f} | {totals[0] / totals[1]:.2f} |')


if __name__ == '__main__':
  main()
