"""3x3 convolutions of ResNet-50 on XLA:CPU: the convolution path against the same sum as dots.

  python -m benchmarks.conv3x3 [--frames 16] [--repeats 5]

A 3x3 convolution is the sum over its nine taps of 1x1 products of the shifted input. Two dot forms
of it: im2col (the nine shifted inputs concatenated over channels, one `[N*H*W, 9C] x [9C, O]`
product) and shifted (nine `[N*H*W, C] x [C, O]` products accumulated). Per 3x3 layer shape of an
RNL / TSM ResNet-50 at 224 px (`--frames` frames folded into the batch; stride 2 in the first block
of stages 2-4, ResNet v1.5), prints the median time of the jitted gradient (forward and both backward
products) of each form with the trainer's CPU compiler options, the convolution's rate against the
FLOPs of the three products, and the totals. The forms are checked to give the same gradients.

Then, for the stride-2 shapes, a fourth form: the convolution with a polyphase input gradient.
Autodiff writes the input gradient of a stride-2 convolution as a convolution over the output
gradient with zeros inserted between its pixels (3 of 4 multiplies by zero). By the parity of the
input pixel, each is reached by a fixed subset of the taps (even row 2p: tap 1 of output row p; odd
row 2p+1: tap 2 of row p and tap 0 of row p+1), so the input gradient is four stride-1
convolutions with 1x1, 1x2, 2x1 and 2x2 sub-kernels, interleaved by one padded sum
(`polyphase_input_grad`).
"""

import argparse
import functools

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from benchmarks import conv1x1
from benchmarks.conv1x1 import time_grad

# (H = W of the input, in channels, out channels, stride) of the 3x3 convolutions at 224 px
SHAPES = (
    (56, 64, 64, 1),
    (28, 128, 128, 1),
    (14, 256, 256, 1),
    (7, 512, 512, 1),
    (56, 128, 128, 2),
    (28, 256, 256, 2),
    (14, 512, 512, 2),
)
FORMS = ('convolution', 'im2col', 'shifted')


def as_conv(x, w, stride):
  return conv1x1.as_conv(x, w, stride, padding=((1, 1), (1, 1)))


def taps(x, stride):
  """The nine shifted (and strided) views of x: [N, H, W, C] -> 9 x [N, H_out, W_out, C]."""
  n, h, w, _ = x.shape
  h_out, w_out = (h - 1) // stride + 1, (w - 1) // stride + 1
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return [
      padded[
          :, i : i + stride * (h_out - 1) + 1 : stride, j : j + stride * (w_out - 1) + 1 : stride
      ]
      for i in range(3)
      for j in range(3)
  ]


def as_im2col(x, w, stride):
  cols = jnp.concatenate(taps(x, stride), axis=-1)  # [N, H_out, W_out, 9C], tap-major like w
  return jnp.einsum('nhwk,ko->nhwo', cols, w.reshape(-1, w.shape[-1]))


def as_shifted(x, w, stride):
  products = [
      jnp.einsum('nhwc,co->nhwo', t, w[k // 3, k % 3]) for k, t in enumerate(taps(x, stride))
  ]
  return sum(products[1:], products[0])


# input-row parity -> kernel rows that reach it, in output-row offset order (0, then +1)
POLYPHASE_TAPS = {0: (1,), 1: (2, 0)}


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def as_polyphase(x, w, stride):
  """as_conv for stride 2 (even H and W), with the polyphase input gradient."""
  return as_conv(x, w, stride)


def _polyphase_fwd(x, w, stride):
  return as_conv(x, w, stride), (x, w)


def _polyphase_bwd(stride, residuals, g):
  x, w = residuals
  (dw,) = jax.vjp(lambda w: as_conv(x, w, stride), w)[1](g)  # XLA's weight gradient
  return polyphase_input_grad(g, w).astype(x.dtype), dw


as_polyphase.defvjp(_polyphase_fwd, _polyphase_bwd)


def polyphase_input_grad(g, w):
  """Input gradient of the stride-2, pad-1 3x3 convolution: g [N, P, Q, O], w [3, 3, C, O] ->
  [N, 2P, 2Q, C]. Pixel (2p+a, 2q+b) takes the taps POLYPHASE_TAPS[a] x [b] from output pixels
  (p, q) onward: a stride-1 convolution of g with that sub-kernel (in and out swapped), zero-padded
  after the last output pixel, placed on its parity by interior padding."""
  dx = None
  for a, rows in POLYPHASE_TAPS.items():
    for b, cols in POLYPHASE_TAPS.items():
      taps_ = jnp.stack([jnp.stack([w[r, c] for c in cols]) for r in rows])  # [kh, kw, C, O]
      pad = ((0, len(rows) - 1), (0, len(cols) - 1))
      part = conv1x1.as_conv(g, jnp.swapaxes(taps_, 2, 3), 1, padding=pad)  # [N, P, Q, C]
      part = lax.pad(
          part, jnp.zeros((), part.dtype), ((0, 0, 0), (a, 1 - a, 1), (b, 1 - b, 1), (0, 0, 0))
      )
      dx = part if dx is None else dx + part
  return dx


def check_same(x, w, stride):
  """The gradients of the three forms agree (float32 rounding only)."""
  forms = (as_conv, as_im2col, as_shifted) + ((as_polyphase,) if stride == 2 else ())
  grads = [
      jax.jit(jax.grad(lambda x, w, f=f: jnp.sum(f(x, w, stride) ** 2), argnums=(0, 1)))(x, w)
      for f in forms
  ]
  for other in grads[1:]:
    for got, want in zip(other, grads[0]):
      np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * float(jnp.max(jnp.abs(want))))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--frames', type=int, default=16, help='frames in the batch (2 clips x 8)')
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args()
  key = jax.random.PRNGKey(0)
  totals = dict.fromkeys(FORMS, 0.0)
  strided = []  # (H, C_in, C_out, convolution s, polyphase s) of the stride-2 shapes
  print(
      '| H x W | C_in -> C_out | stride | '
      + ' | '.join(f'{f} ms' for f in FORMS)
      + ' | conv GFLOP/s |'
  )
  print('|---|---|---|---|---|---|---|')
  for hw, cin, cout, stride in SHAPES:
    x = jax.random.normal(key, (args.frames, hw, hw, cin))
    w = 0.01 * jax.random.normal(key, (3, 3, cin, cout))
    check_same(x[:2], w, stride)
    times = {
        form: time_grad(fn, x, w, stride, args.repeats)
        for form, fn in zip(FORMS, (as_conv, as_im2col, as_shifted))
    }
    if stride == 2:
      strided.append(
          (hw, cin, cout, times['convolution'], time_grad(as_polyphase, x, w, 2, args.repeats))
      )
    for form in FORMS:
      totals[form] += times[form]
    out = (hw - 1) // stride + 1
    flops = 3 * 2 * args.frames * out * out * 9 * cin * cout  # forward + two backward products
    print(
        f'| {hw} x {hw} | {cin} -> {cout} | {stride} | '
        + ' | '.join(f'{times[f] * 1e3:.1f}' for f in FORMS)
        + f' | {flops / times["convolution"] / 1e9:.0f} |',
        flush=True,
    )
  print('| all | | | ' + ' | '.join(f'{totals[f] * 1e3:.0f}' for f in FORMS) + ' | |')
  print('\n| H x W | C_in -> C_out | stride | convolution ms | polyphase ms |')
  print('|---|---|---|---|---|')
  for hw, cin, cout, conv_s, polyphase_s in strided:
    print(f'| {hw} x {hw} | {cin} -> {cout} | 2 | {conv_s * 1e3:.1f} | {polyphase_s * 1e3:.1f} |')


if __name__ == '__main__':
  main()
