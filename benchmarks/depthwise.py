"""Depthwise 3-D convolution on XLA:CPU: forward and vjp timings and errors of several formulations.

  python -m benchmarks.depthwise [--sizes a,b,c,d] [--dtype float32|bfloat16] [--reps 3] [--time-lax]

Prints, per size, method | fwd s | vjp s | max abs err of y, dx, dk against lax.conv_general_dilated with
feature_group_count=C evaluated in float32 on the same (rounded) inputs (also the error scale max|ref|).
Times are medians of --reps runs after one warm-up; the vjp time is jax.vjp (forward included) plus the pullback.
The grouped lax conv itself takes 12-15 s forward on size a, so it is only timed with --time-lax.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from rnl_jax.models.depthwise import (
    _MAX_FUSED_TAPS,
    _fft_conv,
    _fft_kernel_grad,
    _fused_taps,
    depthwise_conv3d,
)

SIZES = {  # name: (x shape, (kt, kh, kw))
    'a': ((2, 8, 28, 28, 256), (3, 7, 7)),
    'b': ((2, 8, 14, 14, 512), (3, 3, 3)),
    'c': ((2, 16, 28, 28, 256), (3, 7, 7)),
    'd': ((4, 8, 32, 32, 256), (3, 7, 7)),
}


def lax_grouped(x, k):
  kt, kh, kw, _, c = k.shape
  return lax.conv_general_dilated(
      x,
      k,
      (1, 1, 1),
      [(kt // 2,) * 2, (kh // 2,) * 2, (kw // 2,) * 2],
      dimension_numbers=('NDHWC', 'DHWIO', 'NDHWC'),
      feature_group_count=c,
  )


def slice_sum(x, k):
  """Naive: all kt*kh*kw shifted slices times weights in one expression (XLA: one scalar loop fusion)."""
  return _fused_taps(x, k, x.dtype)


def _split_taps(x, k):
  """Fused taps, at most _MAX_FUSED_TAPS per fusion: lax.scan over time taps when there are more."""
  kt, kh, kw, _, c = k.shape
  if kt * kh * kw <= _MAX_FUSED_TAPS:
    return _fused_taps(x, k, x.dtype)
  t = x.shape[1]
  cdt = jnp.promote_types(x.dtype, jnp.float32)
  xp = jnp.pad(x.astype(cdt), ((0, 0), (kt // 2,) * 2, (0, 0), (0, 0), (0, 0)))

  def body(acc, i):
    xs = lax.dynamic_slice_in_dim(xp, i, t, axis=1)
    ki = lax.dynamic_index_in_dim(k, i, 0, keepdims=True)
    return acc + _fused_taps(xs, ki, cdt), None

  acc, _ = lax.scan(body, jnp.zeros(x.shape, cdt), jnp.arange(kt))
  return acc.astype(x.dtype)


@jax.custom_vjp
def split_taps(x, k):
  """_split_taps forward; vjp: dx = same with flipped kernel, dk by FFT correlation."""
  return _split_taps(x, k)


split_taps.defvjp(
    lambda x, k: (_split_taps(x, k), (x, k)),
    lambda res, dy: (
        _split_taps(dy, res[1][::-1, ::-1, ::-1]).astype(res[0].dtype),
        _fft_kernel_grad(res[0], dy, res[1].shape, res[1].dtype),
    ),
)

METHODS = {
    'lax grouped conv': lax_grouped,
    'slice-sum (1 fusion)': slice_sum,
    'split taps+cvjp': split_taps,
    'fft2 (autodiff)': _fft_conv,
    'depthwise_conv3d': depthwise_conv3d,
}


def _time(f, args, reps):
  jax.block_until_ready(f(*args))
  ts = []
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(f(*args))
    ts.append(time.perf_counter() - t0)
  return float(np.median(ts))


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--sizes', default='a,b,c,d')
  p.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16'])
  p.add_argument('--reps', type=int, default=3)
  p.add_argument('--time-lax', action='store_true')
  p.add_argument('--methods', default=None, help='comma separated subset of method names')
  a = p.parse_args()
  dtype = jnp.dtype(a.dtype)
  names = a.methods.split(',') if a.methods else list(METHODS)
  print(
      f'jax {jax.__version__}, {jax.devices()[0].device_kind}, dtype {dtype.name}, median of {a.reps}'
  )
  for size in a.sizes.split(','):
    shape, ks = SIZES[size]
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(shape), dtype)
    k = jnp.asarray(rng.standard_normal(ks + (1, shape[-1])) * 0.1, dtype)
    ct = jnp.asarray(rng.standard_normal(shape), dtype)
    f32 = [v.astype(jnp.float32) for v in (x, k, ct)]
    y_ref, pull = jax.vjp(jax.jit(lax_grouped), f32[0], f32[1])
    dx_ref, dk_ref = jax.jit(pull)(f32[2])
    refs = (y_ref, dx_ref, dk_ref)
    print(
        f'\nsize {size}: x {shape}, kernel {ks + (1, shape[-1])}   '
        f'(max|ref|: y {float(jnp.max(jnp.abs(y_ref))):.3g}, dx {float(jnp.max(jnp.abs(dx_ref))):.3g}, '
        f'dk {float(jnp.max(jnp.abs(dk_ref))):.3g})'
    )
    print(f'  {"method":<22} {"fwd s":>8} {"vjp s":>8}   {"err y":>8} {"err dx":>8} {"err dk":>8}')
    for name in names:
      fn = METHODS[name]
      fwd = jax.jit(fn)
      vjp = jax.jit(lambda x, k, ct, fn=fn: (lambda o: (o[0],) + o[1](ct))(jax.vjp(fn, x, k)))
      outs = vjp(x, k, ct)
      errs = [float(jnp.max(jnp.abs(o.astype(jnp.float32) - r))) for o, r in zip(outs, refs)]
      if name == 'lax grouped conv' and not a.time_lax:
        tf = tv = float('nan')
      else:
        tf = _time(fwd, (x, k), a.reps)
        tv = _time(vjp, (x, k, ct), a.reps)
      print(
          f'  {name:<22} {tf:8.4f} {tv:8.4f}   {errs[0]:8.1e} {errs[1]:8.1e} {errs[2]:8.1e}',
          flush=True,
      )


if __name__ == '__main__':
  main()
