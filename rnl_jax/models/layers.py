"""Layers with the original's (PyTorch) semantics: BatchNorm running statistics and initialisers."""

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

Initializer = Callable[..., jax.Array]

# torchvision ResNet convs: kaiming_normal_(mode='fan_out', nonlinearity='relu'), not truncated.
kaiming_normal_fan_out = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
# PyTorch's default Conv/Linear weight init, kaiming_uniform_(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
torch_default_kernel = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')


def torch_default_bias(fan_in: int) -> Initializer:
  """PyTorch's default Conv/Linear bias init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / fan_in**0.5

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def stat_dtype(dtype):
  """Accumulation dtype: float32 for bfloat16/float16/float32 compute, float64 under x64."""
  return jnp.promote_types(dtype, jnp.float32)


def uniform_init(bound: float) -> Initializer:
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def batch_norm_values(x, scale, bias, epsilon):
  """Normalised x and the batch's mean and biased variance, all in the statistics dtype: train-mode
  BatchNorm as plain JAX, whose autodiff is the reference for `batch_norm_train`'s backward.

  Two passes (mean, then the mean squared deviation) rather than E[x^2] - E[x]^2: the one-pass
  form loses float32 digits where |mean| >> std, and parity with the original comes first.
  """
  xf = x.astype(stat_dtype(x.dtype))
  axes = tuple(range(x.ndim - 1))
  mean = jnp.mean(xf, axes)  # [C]
  var = jnp.mean(jnp.square(xf - mean), axes)  # [C], biased: the one that normalises
  y = (xf - mean) * (scale * jax.lax.rsqrt(var + epsilon)) + bias
  return y, mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_train(x, scale, bias, epsilon):
  """Train-mode BatchNorm: (y, mean, var) with y in the statistics dtype; x: [..., C].

  The same values as autodiff of `batch_norm_values`, with the closed-form backward: one reduction
  pass over (dy, x) for dbias and dscale and one element-wise pass for dx. Autodiff of the
  two-pass statistics instead differentiates the mean and the variance separately: 11 reductions
  per BatchNorm in the gradient against 5, each a pass over a full-size activation, in one of the
  largest non-convolution costs of a CPU train step (docs/performance.md#cpu-training-levers).
  """
  return batch_norm_values(x, scale, bias, epsilon)


def _batch_norm_fwd(x, scale, bias, epsilon):
  # symbolic_zeros: the primals come wrapped, with a flag saying whether they are differentiated.
  x, scale, bias = x.value, scale.value, bias.value
  y, mean, var = batch_norm_values(x, scale, bias, epsilon)
  return (y, mean, var), (x, scale, bias, mean, var)


def _batch_norm_bwd(epsilon, residuals, cotangents):
  """dx = scale * rstd * (gy - mean(gy) - xhat * mean(gy * xhat)) + the mean and var outputs' terms."""
  x, scale, bias, mean, var = residuals
  gy, gmean, gvar = cotangents
  axes = tuple(range(x.ndim - 1))
  n = x.size // x.shape[-1]
  rstd = jax.lax.rsqrt(var + epsilon)  # [C]
  xc = x.astype(mean.dtype) - mean
  if isinstance(gy, SymbolicZero):
    gy = jnp.zeros(x.shape, mean.dtype)
  dbias = jnp.sum(gy, axes)  # [C]
  dscale = jnp.sum(gy * xc, axes) * rstd  # [C] = sum(gy * xhat)
  dx = (scale * rstd) * (gy - dbias / n - xc * (rstd * dscale / n))
  # The running-statistics update takes mean and var under stop_gradient, so these cotangents
  # are symbolic zeros in training; they are kept exact for any other use.
  if not isinstance(gmean, SymbolicZero):
    dx = dx + gmean / n
  if not isinstance(gvar, SymbolicZero):
    dx = dx + xc * (2 * gvar / n)
  return dx.astype(x.dtype), dscale.astype(scale.dtype), dbias.astype(bias.dtype)


batch_norm_train.defvjp(_batch_norm_fwd, _batch_norm_bwd, symbolic_zeros=True)


def materialize(x, anchor):
  """x, bit for bit, written to memory once on CPU instead of recomputed inside its consumers.

  XLA's fusion copies cheap element-wise producers into every fusion that reads them. A residual
  block's output, relu(bn(h) + identity), is such a producer, and so is its identity (the previous
  block's output), so on CPU the transposes feeding the weight-gradient convolutions, the temporal
  shift's slices and the ReLU gradients each recomputed the stage's residual chain from the
  convolution outputs, up to seven BatchNorms deep (docs/performance.md#cpu-training-levers). XLA
  does not duplicate a float division, so x / 1 pins x, as long as the 1 is not a constant: it is
  `0 * anchor + 1` (anchor: any finite runtime scalar; XLA keeps 0 * a, for NaN's sake). Its
  gradient, g / 1, pins the gradient likewise. Elsewhere than CPU x is returned as is (unmeasured
  there); decided when traced.
  """
  if jax.default_backend() != 'cpu':
    return x
  one = 0 * jax.lax.stop_gradient(anchor).astype(x.dtype) + 1
  return x / one


class BatchNorm(nn.Module):
  """BatchNorm over all axes but the last, with PyTorch's running-statistics rule.

  Train mode normalises with the biased batch variance and updates
  `running <- (1 - momentum) * running + momentum * batch_stat` with the *unbiased* variance, as
  PyTorch does (Flax's own BatchNorm uses the biased one). `momentum` is PyTorch's convention
  (0.1 for the ResNet and NL BNs, 0.01 for the channel gate's). Statistics are float32. Under a
  `jit` with the batch sharded over a mesh, the means are over the global batch (SyncBatchNorm).
  """

  momentum: float = 0.1
  epsilon: float = 1e-5
  scale_init: Initializer = nn.initializers.ones
  bias_init: Initializer = nn.initializers.zeros
  dtype: Any = None

  @nn.compact
  def __call__(self, x, train: bool):
    c = x.shape[-1]
    scale = self.param('scale', self.scale_init, (c,), jnp.float32)
    bias = self.param('bias', self.bias_init, (c,), jnp.float32)
    ra_mean = self.variable('batch_stats', 'mean', lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable('batch_stats', 'var', lambda: jnp.ones((c,), jnp.float32))
    if train:
      y, mean, var = batch_norm_train(x, scale, bias, self.epsilon)
      if not self.is_initializing():
        n = x.size // c
        unbiased = jax.lax.stop_gradient(var) * (n / max(n - 1, 1))
        m = self.momentum
        ra_mean.value = (1 - m) * ra_mean.value + m * jax.lax.stop_gradient(mean)
        ra_var.value = (1 - m) * ra_var.value + m * unbiased
    else:
      mul = scale * jax.lax.rsqrt(ra_var.value + self.epsilon)
      y = (x.astype(stat_dtype(x.dtype)) - ra_mean.value) * mul + bias
    return y.astype(self.dtype or x.dtype)
