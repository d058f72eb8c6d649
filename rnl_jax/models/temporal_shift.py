"""Temporal shift (TSM): part of the channels move one frame forward / backward in time.

For `u` viewed as `[N, T, ..., C]` and `f = C // shift_div` (docs/original.md §1.3):
  channels [0, f):   out[:, t] = u[:, t + 1], out[:, T - 1] = 0   (information moves backward in time)
  channels [f, 2f):  out[:, t] = u[:, t - 1], out[:, 0] = 0       (information moves forward in time)
  channels [2f, C):  unchanged.
The vacated frame is zero-filled at clip boundaries (a plain cyclic roll would be wrong). Written as
`jnp.roll` over the channel slices with the wrapped frame zeroed. The transpose of a zero-filled shift
is the zero-filled shift in the opposite direction, which a `custom_vjp` uses directly (autodiff of a
masked roll is needlessly slow on CPU, in bfloat16 in particular).
"""

import functools

import jax
import jax.numpy as jnp


def _roll_zero(x, direction):
  """x: [N, T, ...]; direction -1 takes frame t+1 (zero at T-1), +1 takes frame t-1 (zero at 0)."""
  t = x.shape[1]
  rolled = jnp.roll(x, direction, axis=1)
  frame = jnp.arange(t).reshape((1, t) + (1,) * (x.ndim - 2))
  wrapped = t - 1 if direction < 0 else 0
  return jnp.where(frame == wrapped, jnp.zeros((), x.dtype), rolled)


def _shift(x, fold, reverse):
  """Shift of the two leading channel slices of x: [N, T, ..., C]; reverse swaps the directions."""
  if fold == 0:
    return x
  back, fwd = (1, -1) if reverse else (-1, 1)
  return jnp.concatenate(
      [
          _roll_zero(x[..., :fold], back),
          _roll_zero(x[..., fold : 2 * fold], fwd),
          x[..., 2 * fold :],
      ],
      axis=-1,
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _shift_vjp(x, fold):
  return _shift(x, fold, reverse=False)


def _shift_fwd(x, fold):
  return _shift(x, fold, reverse=False), None


def _shift_bwd(fold, _, g):
  return (_shift(g, fold, reverse=True),)


_shift_vjp.defvjp(_shift_fwd, _shift_bwd)


def temporal_shift(x, num_segments, shift_div=8):
  """Temporal shift of frames folded into the batch.

  Args:
    x: `[N*T, H, W, C]` (frame `t` of clip `n` at row `n*T + t`) or `[N, T, H, W, C]`.
    num_segments: T, frames per clip (ignored for 5-D input).
    shift_div: 1/shift_div of the channels moves each way.
  Returns:
    an array of x's shape.
  """
  fold = x.shape[-1] // shift_div
  if x.ndim == 5:
    return _shift_vjp(x, fold)
  nt = x.shape[0]
  if nt % num_segments:
    raise ValueError(f'batch of {nt} frames is not a multiple of num_segments={num_segments}')
  y = _shift_vjp(
      x.reshape((nt // num_segments, num_segments) + x.shape[1:]), fold
  )  # [N, T, H, W, C]
  return y.reshape(x.shape)
