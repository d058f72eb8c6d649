"""The shift against a slow explicit loop, in both layouts, and its custom VJP against autodiff."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnl_jax.models import temporal_shift
from rnl_jax.models.temporal_shift import _shift


def shift_loop(x, div):
  """docs/original.md §1.3 written out: x [N, T, H, W, C]."""
  n, t, _, _, c = x.shape
  f = c // div
  out = np.array(x, copy=True)
  out[..., : 2 * f] = 0
  for i in range(t):
    if i + 1 < t:
      out[:, i, ..., :f] = x[:, i + 1, ..., :f]
    if i >= 1:
      out[:, i, ..., f : 2 * f] = x[:, i - 1, ..., f : 2 * f]
  return out


@pytest.mark.parametrize('t,c,div', [(8, 16, 8), (4, 64, 8), (1, 16, 8), (3, 10, 4), (5, 7, 8)])
def test_shift_matches_loop(t, c, div):
  x = np.random.default_rng(0).normal(size=(2, t, 3, 5, c)).astype(np.float32)
  expected = shift_loop(x, div)
  np.testing.assert_array_equal(temporal_shift(jnp.asarray(x), t, div), expected)
  folded = temporal_shift(jnp.asarray(x.reshape(2 * t, 3, 5, c)), t, div)
  np.testing.assert_array_equal(folded, expected.reshape(2 * t, 3, 5, c))


def test_shift_zero_fills_instead_of_wrapping():
  x = jnp.broadcast_to(jnp.arange(1, 5, dtype=jnp.float32).reshape(1, 4, 1, 1, 1), (1, 4, 1, 1, 8))
  y = np.asarray(temporal_shift(x, 4, 8))[0, :, 0, 0]  # fold = 1: channel 0 backward, 1 forward
  np.testing.assert_array_equal(y[:, 0], [2, 3, 4, 0])  # frame t takes t+1, last frame zero
  np.testing.assert_array_equal(y[:, 1], [0, 1, 2, 3])  # frame t takes t-1, first frame zero
  np.testing.assert_array_equal(y[:, 2:], np.arange(1, 5)[:, None].repeat(6, 1))


def test_shift_never_mixes_clips():
  x = np.zeros((3 * 4, 2, 2, 16), np.float32)
  x[4:8] = 1.0  # only clip 1 is non-zero
  y = np.asarray(temporal_shift(jnp.asarray(x), 4, 8))
  assert not y[:4].any() and not y[8:].any()


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_custom_vjp_equals_autodiff(dtype):
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 5, 3, 3, 24)), dtype)
  g = jnp.asarray(np.random.default_rng(2).normal(size=x.shape), dtype)
  _, vjp = jax.vjp(lambda a: temporal_shift(a, 5, 8), x)
  _, vjp_ref = jax.vjp(
      lambda a: _shift(a, 3, reverse=False), x
  )  # plain autodiff of the masked roll
  np.testing.assert_array_equal(
      np.asarray(vjp(g)[0], np.float32), np.asarray(vjp_ref(g)[0], np.float32)
  )


def test_rejects_batch_not_multiple_of_segments():
  with pytest.raises(ValueError, match='num_segments=4'):
    temporal_shift(jnp.zeros((6, 2, 2, 8)), 4)
