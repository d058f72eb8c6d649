"""ResNet blocks: how their convolutions reach XLA (the numbers are checked against the original in
test_parity_fixture.py and test_models_vs_torch.py)."""

import jax
from jax.extend import core as jax_core
import jax.numpy as jnp
import pytest

from rnl_jax.models.resnet import Block


def _convolutions(jaxpr):
  """Every conv_general_dilated equation in `jaxpr`, sub-jaxprs included."""
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'conv_general_dilated':
      yield eqn
    for sub in jax_core.jaxprs_in_params(eqn.params):
      yield from _convolutions(sub)


@pytest.mark.parametrize('bottleneck', [True, False])
def test_strided_downsample_weight_gradient_is_not_dilated(bottleneck):
  # A 1x1 conv with stride 2 differentiates into a 2x-dilated convolution over the full-resolution
  # input, which XLA:CPU runs after transposing that input; the block subsamples first, so the
  # weight gradient of every 1x1 kernel is a plain (undilated) product.
  block = Block(4, 2, bottleneck, downsample=True, num_segments=2)
  x = jnp.ones((2, 8, 8, 8), jnp.float32)  # [N*T, H, W, C]
  variables = block.init(jax.random.PRNGKey(0), x, train=False)

  def loss(params):
    y, _ = block.apply({**variables, 'params': params}, x, train=True, mutable=['batch_stats'])
    return jnp.sum(y)

  jaxpr = jax.make_jaxpr(jax.grad(loss))(variables['params']).jaxpr
  one_by_one = [e for e in _convolutions(jaxpr) if tuple(e.outvars[0].aval.shape[:2]) == (1, 1)]
  assert one_by_one, 'expected the weight gradients of the 1x1 kernels'
  for eqn in one_by_one:
    assert tuple(eqn.params['rhs_dilation']) == (1, 1), eqn
    assert tuple(eqn.params['window_strides']) == (1, 1), eqn
