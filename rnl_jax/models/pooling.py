"""The stem's 3x3 / stride-2 max pool (PyTorch's MaxPool2d(3, 2, 1)) with a gradient that XLA:CPU
runs as a few element-wise passes.

Autodiff of `lax.reduce_window(max)` is `select_and_scatter_add`, which XLA:CPU expands into an
argmax over (value, index) pairs of the whole padded input, with s32 iotas and a scatter: ~0.3 s of
a 4 s TSM-R50 train step on 2 cores. Written by hand: the forward also keeps which of the window's
taps holds the max (the first one, row-major, as select_and_scatter scans and as PyTorch's pool
does), and the gradient is one pass per tap: tap (i, j) of output pixel (p, q) is input pixel
(s*p + i - pad, s*q + j - pad), which receives the output gradient where the index says so, put
back in place by interior padding (docs/performance.md#cpu-training-levers).
"""

import functools

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp


def max_pool(x, window: int = 3, stride: int = 2, padding: int = 1):
  """Max pool of x: [N, H, W, C] over `window` x `window` pixels, -inf padded (PyTorch's); the
  hand-written gradient on CPU, autodiff's elsewhere (unmeasured there). Decided when traced."""
  if jax.default_backend() == 'cpu':
    return _max_pool(x, window, stride, padding, tuple(x.shape[1:3]))
  return _pool(x, window, stride, padding)


def _pool(x, window, stride, padding):
  pad = (padding, padding)
  return nn.max_pool(x, (window, window), (stride, stride), padding=(pad, pad))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def _max_pool(x, window, stride, padding, hw):
  """hw: x's (H, W), static: the gradient's size, which the pooled size does not fix."""
  return _pool(x, window, stride, padding)


def _taps(x, window, stride, padding, out_hw):
  """The window's taps in row-major order, each [N, Ho, Wo, C], from x padded with -inf."""
  pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
  xp = jnp.pad(x, pad, constant_values=-jnp.inf)  # [N, Hp, Wp, C]
  span_h, span_w = (stride * (n - 1) + 1 for n in out_hw)
  return [
      xp[:, i : i + span_h : stride, j : j + span_w : stride, :]
      for i in range(window)
      for j in range(window)
  ]


def _max_pool_fwd(x, window, stride, padding, hw):
  """The max and the index of its first tap (int8 [N, Ho, Wo, C]), as PyTorch's pool keeps its
  indices, from one scan over the taps (no separate reduce_window for the max). The backward
  routes by this index rather than by comparing the input with the max again: XLA may recompute
  the input there (BatchNorm and ReLU fused in) rounded differently, and an equality test would
  then lose or misplace gradients."""
  ho, wo = ((n + 2 * padding - window) // stride + 1 for n in hw)
  taps = _taps(x, window, stride, padding, (ho, wo))
  best, index = taps[0], jnp.zeros(taps[0].shape, jnp.int8)
  for k, tap in enumerate(taps[1:], start=1):
    # Strictly greater: ties keep the first tap, as XLA's and PyTorch's gradients do. A NaN wins,
    # so that the max is NaN wherever a window holds one, as reduce_window's max is.
    better = (tap > best) | jnp.isnan(tap)
    best, index = jnp.where(better, tap, best), jnp.where(better, jnp.int8(k), index)
  return best, index


def _max_pool_bwd(window, stride, padding, hw, index, g):
  """dx: [N, H, W, C] from g: [N, Ho, Wo, C]: each tap's share put back in place by interior
  padding (stride - 1 zeros between pixels) in the padded frame, then cropped."""
  (h, w), (ho, wo) = hw, g.shape[1:3]
  hp, wp = h + 2 * padding, w + 2 * padding
  span_h, span_w = stride * (ho - 1) + 1, stride * (wo - 1) + 1
  zero = jnp.zeros((), g.dtype)
  dxp = None
  for k in range(window * window):
    i, j = divmod(k, window)
    part = lax.pad(
        jnp.where(index == k, g, zero),
        zero,
        ((0, 0, 0), (i, hp - i - span_h, stride - 1), (j, wp - j - span_w, stride - 1), (0, 0, 0)),
    )  # [N, Hp, Wp, C]
    dxp = part if dxp is None else dxp + part
  return (dxp[:, padding : padding + h, padding : padding + w, :],)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)
