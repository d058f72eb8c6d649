"""ResNet blocks: how their convolutions reach XLA (the numbers are checked against the original in
test_parity_fixture.py and test_models_vs_torch.py)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpr_utils import equations
from rnl_jax.models.layers import materialize
from rnl_jax.models.resnet import Block, ResNet


def _convolutions(jaxpr):
  """Every conv_general_dilated equation in `jaxpr`, sub-jaxprs included."""
  return [eqn for eqn in equations(jaxpr) if eqn.primitive.name == 'conv_general_dilated']


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


def _batch_norms_read_per_fusion(hlo_text):
  """{fusion name: the BatchNorm scales among its operands} of an optimized HLO module, scales
  being recognised by the entry parameters' names (params...____scale__)."""
  scales = set(re.findall(r'^\s*%(\S*____scale__\S*) = \S+ parameter\(', hlo_text, re.M))
  fusions = re.findall(r'^\s*%(\S+) = .*? fusion\((.*?)\), kind', hlo_text, re.M)
  return scales, {
      name: scales.intersection(re.findall(r'%([^,\s)]+)', operands)) for name, operands in fusions
  }


def test_block_outputs_are_not_recomputed_by_later_fusions():
  # On CPU XLA copied each block's relu(bn3(h) + identity) into its consumers, and with it the
  # identity's own chain: a fusion feeding a weight-gradient convolution or the temporal shift
  # read up to seven BatchNorms' parameters and recomputed as many blocks (layers.materialize).
  # Full size, TSM-R50 at 8 x 224: the fusion choices depend on the shapes. Compiled, not run.
  model = ResNet(depth=50, num_segments=8, non_local=False)
  variables = jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((8, 32, 32, 3)), train=False)
  )
  frames = jax.ShapeDtypeStruct((16, 224, 224, 3), jnp.float32)  # [N*T, H, W, 3]

  def loss(params, batch_stats, x):
    y, _ = model.apply(
        {'params': params, 'batch_stats': batch_stats}, x, train=True, mutable=['batch_stats']
    )
    return jnp.sum(y**2)

  compiled = (
      jax.jit(jax.grad(loss)).lower(variables['params'], variables['batch_stats'], frames).compile()
  )
  scales, read = _batch_norms_read_per_fusion(compiled.as_text())
  assert len(scales) == 53, sorted(scales)[:5]  # the parameter naming this test relies on
  worst = max(read, key=lambda name: len(read[name]))
  # 2: a block's own bn3 and its downsample's BatchNorm, read to recompute its pre-ReLU sum.
  assert len(read[worst]) <= 2, (worst, sorted(read[worst]))


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_materialize_is_exact(dtype):
  x = jnp.asarray([[-1.5, 0.0, 3.25e-30, jnp.inf, jnp.nan]], dtype)
  anchor = jnp.float32(0.37)
  y, vjp = jax.vjp(lambda a: materialize(a, anchor), x)
  np.testing.assert_array_equal(np.asarray(y, np.float32), np.asarray(x, np.float32))
  g = jnp.asarray([[2.0, -0.5, 1e-30, 7.0, 1.0]], dtype)
  np.testing.assert_array_equal(np.asarray(vjp(g)[0], np.float32), np.asarray(g, np.float32))
