"""The stem's max pool (rnl_jax/models/pooling.py): autodiff's values and gradients, ties included,
without select_and_scatter in the gradient."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpr_utils import equations
from rnl_jax.models import pooling
from rnl_jax.models.resnet import ResNet


def _reference(x):
  return nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))


def _tied(shape, dtype):
  """ReLU'd values on a coarse grid: many windows hold their max more than once (zeros above all),
  as the stem's ReLU output does."""
  x = jax.random.normal(jax.random.PRNGKey(0), shape)
  return (jnp.round(jax.nn.relu(x) * 2) / 2).astype(dtype)


@pytest.mark.parametrize('shape', [(2, 8, 8, 3), (1, 7, 9, 2), (2, 112, 112, 4)])
def test_values_and_gradients_equal_autodiff_ties_included(shape):
  with jax.enable_x64(True):
    x = _tied(shape, jnp.float64)
    y0, vjp0 = jax.vjp(_reference, x)
    y1, vjp1 = jax.vjp(pooling.max_pool, x)
    # integer cotangents: every sum is exact, so any pixel given another tie's gradient shows
    g = jax.random.randint(jax.random.PRNGKey(1), y0.shape, -8, 9).astype(jnp.float64)
    (dx0,), (dx1,) = vjp0(g), vjp1(g)
    assert (x == 0).mean() > 0.3  # the ties are there
  np.testing.assert_array_equal(y1, y0)
  np.testing.assert_array_equal(dx1, dx0)


def test_bfloat16():
  x = _tied((2, 16, 16, 8), jnp.bfloat16)
  y, vjp = jax.vjp(pooling.max_pool, x)
  g = jnp.ones(y.shape, jnp.bfloat16)
  (dx,) = vjp(g)
  (dx0,) = jax.vjp(_reference, x)[1](g)
  assert y.dtype == dx.dtype == jnp.bfloat16
  np.testing.assert_array_equal(dx.astype(np.float32), dx0.astype(np.float32))


def test_nan_propagates_as_in_reduce_window():
  # The training forward takes the max from its tap scan, not from reduce_window: a window that
  # holds a NaN must still pool to NaN, and the others must not change.
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 9, 3))
  x = x.at[0, 3, 5, 0].set(jnp.nan).at[1, 0, 8, 2].set(jnp.nan)
  y, _ = jax.vjp(pooling.max_pool, x)
  y0 = _reference(x)
  assert (
      int(jnp.isnan(y0).sum()) == 5
  )  # odd rows and columns lie in 2 windows each, row 0 and column 8 in 1
  np.testing.assert_array_equal(y, y0)


def _primitives(jaxpr):
  return [eqn.primitive.name for eqn in equations(jaxpr)]


def test_resnet_gradient_has_no_select_and_scatter():
  # select_and_scatter_add is autodiff's max-pool gradient, which XLA:CPU expands into an argmax
  # over the whole input with index iotas; the stem's pool brings its own gradient instead.
  model = ResNet(depth=18, num_segments=2, width=8, non_local=False)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 32, 32, 3))
  variables = model.init(jax.random.PRNGKey(1), x, train=False)

  def loss(params):
    y, _ = model.apply({**variables, 'params': params}, x, train=True, mutable=['batch_stats'])
    return jnp.sum(y**2)

  names = set(_primitives(jax.make_jaxpr(jax.grad(loss))(variables['params']).jaxpr))
  assert 'conv_general_dilated' in names
  assert not {n for n in names if 'select_and_scatter' in n}, names
  auto = jax.make_jaxpr(jax.grad(lambda x: jnp.sum(_reference(x))))(x).jaxpr
  assert any('select_and_scatter' in n for n in _primitives(auto)), 'the check must see autodiff'
