"""Layers with the original's (PyTorch) semantics: BatchNorm running statistics and initialisers."""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

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
      xf = x.astype(stat_dtype(x.dtype))
      axes = tuple(range(x.ndim - 1))
      mean = jnp.mean(xf, axes)
      var = jnp.mean(jnp.square(xf - mean), axes)  # biased, used to normalise
      if not self.is_initializing():
        n = x.size // c
        unbiased = jax.lax.stop_gradient(var) * (n / max(n - 1, 1))
        m = self.momentum
        ra_mean.value = (1 - m) * ra_mean.value + m * jax.lax.stop_gradient(mean)
        ra_var.value = (1 - m) * ra_var.value + m * unbiased
    else:
      mean, var = ra_mean.value, ra_var.value
    mul = scale * jax.lax.rsqrt(var + self.epsilon)
    y = (x.astype(stat_dtype(x.dtype)) - mean) * mul + bias
    return y.astype(self.dtype or x.dtype)
