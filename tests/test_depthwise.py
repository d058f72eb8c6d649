"""The fast depthwise 3-D conv (fused taps / FFT paths) against XLA's grouped convolution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnl_jax.models.depthwise import depthwise_conv3d


def lax_depthwise(x, k):
  pad = [(s // 2, s // 2) for s in k.shape[:3]]
  return jax.lax.conv_general_dilated(
      x,
      k,
      (1, 1, 1),
      pad,
      dimension_numbers=('NDHWC', 'DHWIO', 'NDHWC'),
      feature_group_count=x.shape[-1],
  )


@pytest.mark.parametrize(
    'x_shape,k_shape',
    [
        ((2, 3, 9, 11, 8), (3, 7, 7)),  # many taps: FFT path
        ((1, 4, 6, 5, 16), (3, 3, 3)),  # few taps: fused path
        ((2, 1, 8, 8, 4), (3, 5, 5)),  # T = 1: every temporal tap but the centre reads zeros
        ((1, 2, 5, 7, 3), (1, 1, 9)),
    ],
)
def test_forward_and_gradients_match_lax(x_shape, k_shape):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
  k = jnp.asarray(rng.normal(size=k_shape + (1, x_shape[-1])), jnp.float32)
  g = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
  y, vjp = jax.vjp(depthwise_conv3d, x, k)
  y_ref, vjp_ref = jax.vjp(lax_depthwise, x, k)
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  for ours, ref in zip(vjp(g), vjp_ref(g)):
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-4 * float(jnp.abs(ref).max()))


def test_bfloat16_in_bfloat16_out():
  x = jnp.ones((1, 2, 8, 8, 4), jnp.bfloat16)
  k = jnp.full((3, 7, 7, 1, 4), 0.5, jnp.bfloat16)
  y = depthwise_conv3d(x, k)
  assert y.dtype == jnp.bfloat16
  ref = lax_depthwise(x.astype(jnp.float32), k.astype(jnp.float32))
  np.testing.assert_allclose(np.asarray(y, np.float32), ref, rtol=1e-2)


def test_even_kernel_is_rejected():
  with pytest.raises(ValueError, match='odd'):
    depthwise_conv3d(jnp.ones((1, 2, 4, 4, 2)), jnp.ones((2, 3, 3, 1, 2)))
