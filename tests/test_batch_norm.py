"""Train-mode BatchNorm's closed-form backward (`rnl_jax.models.layers.batch_norm_train`): the same
gradients as autodiff of the two-pass statistics, in fewer passes over the activations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpr_utils import equations
from rnl_jax.models.layers import BatchNorm, batch_norm_train, batch_norm_values


def _inputs(dtype, shape=(3, 4, 5, 6), seed=0):
  rng = np.random.default_rng(seed)
  c = shape[-1]
  x = rng.normal(0.5, 2.0, shape)
  scale, bias = rng.normal(1.0, 0.3, c), rng.normal(0.0, 0.3, c)
  return [jnp.asarray(a, dtype) for a in (x, scale, bias)]


@pytest.mark.parametrize('with_stat_cotangents', [False, True])
def test_gradients_equal_autodiff_in_float64(with_stat_cotangents):
  with jax.enable_x64():
    x, scale, bias = _inputs(jnp.float64)
    rng = np.random.default_rng(1)
    gy = jnp.asarray(rng.normal(size=x.shape))
    gm, gv = (jnp.asarray(rng.normal(size=x.shape[-1:])) for _ in range(2))

    def loss(fn):
      def f(x, scale, bias):
        y, mean, var = fn(x, scale, bias, 1e-5)
        out = jnp.sum(jnp.tanh(y) * gy)  # a non-linear consumer, so dy is not a constant
        if with_stat_cotangents:
          out = out + jnp.sum(mean * gm) + jnp.sum(var * gv)
        else:  # the running-statistics update: symbolic-zero cotangents for mean and var
          out = out + 0.0 * jnp.sum(jax.lax.stop_gradient(mean) + jax.lax.stop_gradient(var))
        return out

      return jax.jit(jax.grad(f, argnums=(0, 1, 2)))

    got = loss(batch_norm_train)(x, scale, bias)
    want = loss(batch_norm_values)(x, scale, bias)
    for g, w in zip(got, want):
      assert g.dtype == jnp.float64
      np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10)
    # and the forward values are the same computation
    for a, b in zip(
        batch_norm_train(x, scale, bias, 1e-5), batch_norm_values(x, scale, bias, 1e-5)
    ):
      np.testing.assert_array_equal(a, b)


def test_bfloat16_input_gives_bfloat16_input_gradient_and_float32_statistics():
  x, scale, bias = _inputs(jnp.float32)
  xb = x.astype(jnp.bfloat16)
  y, mean, var = batch_norm_train(xb, scale, bias, 1e-5)
  assert (y.dtype, mean.dtype, var.dtype) == (jnp.float32,) * 3
  dx, dscale, dbias = jax.grad(lambda *a: jnp.sum(batch_norm_train(*a, 1e-5)[0] ** 2), (0, 1, 2))(
      xb, scale, bias
  )
  assert (dx.dtype, dscale.dtype, dbias.dtype) == (jnp.bfloat16, jnp.float32, jnp.float32)
  want = jax.grad(lambda *a: jnp.sum(batch_norm_values(*a, 1e-5)[0] ** 2), (0, 1, 2))(
      xb, scale, bias
  )
  np.testing.assert_allclose(
      dx.astype(jnp.float32), want[0].astype(jnp.float32), rtol=2e-2, atol=2e-2
  )


def _reductions(jaxpr):
  """How many reduce_sum equations `jaxpr` holds, sub-jaxprs included."""
  return sum(eqn.primitive.name == 'reduce_sum' for eqn in equations(jaxpr))


def test_module_train_step_takes_four_reductions():
  # Two for the forward statistics (mean, then variance), two for the backward (sum(dy) and
  # sum(dy * xhat)); autodiff of the statistics takes more, each a pass over a full-size tensor.
  bn = BatchNorm()
  x = jnp.ones((2, 3, 3, 4), jnp.float32)
  variables = bn.init(jax.random.PRNGKey(0), x, train=True)

  def loss(params, x):
    y, _ = bn.apply({**variables, 'params': params}, x, train=True, mutable=['batch_stats'])
    return jnp.sum(y**2)

  grad = jax.grad(loss, argnums=(0, 1))
  assert _reductions(jax.make_jaxpr(grad)(variables['params'], x).jaxpr) == 4 + 1  # + the loss' sum
