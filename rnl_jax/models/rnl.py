"""Region-based non-local block and channel gate (REFERENCE 1.4-1.6).

Both act on the frames of one clip folded into the batch, `[N*T, H, W, C]`, and see the clip as
`M = T*H*W` positions. Positions are flattened in (t, h, w) order; the attention and the gate are
invariant to that order as long as queries, keys and values share it.
"""
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from rnl_jax.models.depthwise import depthwise_conv3d
from rnl_jax.models.layers import (BatchNorm, stat_dtype, torch_default_bias, torch_default_kernel,
                                   uniform_init)


def _attend(queries, keys, values):
  """softmax(queries keys^T) values, softmax over keys in (at least) float32, no 1/sqrt(d) scaling."""
  logits = jnp.einsum('nqc,nkc->nqk', queries, keys,
                      preferred_element_type=stat_dtype(queries.dtype))
  weights = jax.nn.softmax(logits, axis=-1).astype(values.dtype)
  return jnp.einsum('nqk,nkc->nqc', weights, values)


def region_attention(p, theta, query_chunk: Optional[int] = None):
  """Region non-local attention of one clip: Y_j = sum_i softmax_i(<P_j, P_i>) theta_i.

  Args:
    p: `[N, M, C']` region-aggregated features (queries and keys).
    theta: `[N, M, C']` un-aggregated features (values).
    query_chunk: None computes the `[N, M, M]` affinity at once; an integer processes that many
      queries at a time (rematerialised in the backward pass), so memory is `[N, chunk, M]`. Each
      query row's softmax is independent, so both paths compute the same function.
  Returns:
    `[N, M, C']`.
  """
  n, m, c = p.shape
  if query_chunk is None or query_chunk >= m:
    return _attend(p, p, theta)
  chunks = -(-m // query_chunk)
  pad = chunks * query_chunk - m
  q = jnp.pad(p, ((0, 0), (0, pad), (0, 0))).reshape(n, chunks, query_chunk, c)
  q = jnp.moveaxis(q, 1, 0)  # [chunks, N, chunk, C']
  body = jax.checkpoint(lambda qc: _attend(qc, p, theta))
  y = jax.lax.map(body, q)  # [chunks, N, chunk, C']
  return jnp.moveaxis(y, 0, 1).reshape(n, chunks * query_chunk, c)[:, :m]


def penta_groups(inner: int) -> int:
  """Channels per group of the original's masked grouped conv (32 unless fewer channels)."""
  return inner // max(inner // 32, 1)


class DepthwiseConv3D(nn.Module):
  """Depthwise 3-D conv, stride 1, zero 'same' padding, no bias; kernel `[kt, kh, kw, 1, C]` (the
  layout of `nn.Conv(feature_group_count=C)`), computed by `depthwise_conv3d` (XLA:CPU's grouped
  convolution is ~100x slower here)."""
  kernel_size: Sequence[int]
  kernel_init: Any = nn.initializers.lecun_normal()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):  # [N, T, H, W, C]
    c = x.shape[-1]
    kernel = self.param('kernel', self.kernel_init, tuple(self.kernel_size) + (1, c), jnp.float32)
    return depthwise_conv3d(x.astype(self.dtype), kernel.astype(self.dtype))


class RegionNonLocal(nn.Module):
  """theta (1x1x1 conv) -> depthwise region conv -> softmax(P P^T) theta -> W conv + BN -> residual."""
  num_segments: int
  kernel_size: Sequence[int]  # (kt, kh, kw)
  query_chunk: Optional[int] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, v, train: bool):
    nt, h, w, c = v.shape
    t = self.num_segments
    n, inner = nt // t, c // 2
    x = v.reshape(n, t, h, w, c)
    theta = nn.Dense(inner, dtype=self.dtype, kernel_init=torch_default_kernel,
                     bias_init=torch_default_bias(c), name='theta')(x)  # [N, T, H, W, C']
    k = tuple(self.kernel_size)
    vol = k[0] * k[1] * k[2]
    # Xavier-uniform over the original's stored grouped tensor [C', g, kt, kh, kw].
    bound = (6.0 / (penta_groups(inner) * vol + inner * vol)) ** 0.5
    p = DepthwiseConv3D(k, uniform_init(bound), self.dtype, name='penta')(theta)  # [N, T, H, W, C']
    # The attention's queries = keys, for attention maps (rnl_jax.classify): S = softmax(P P^T).
    self.sow('intermediates', 'region_features', p)
    y = region_attention(p.reshape(n, -1, inner), theta.reshape(n, -1, inner), self.query_chunk)
    z = nn.Dense(c, dtype=self.dtype, kernel_init=torch_default_kernel,
                 bias_init=torch_default_bias(inner), name='W_0')(y.reshape(n, t, h, w, inner))
    z = BatchNorm(scale_init=nn.initializers.zeros, dtype=self.dtype, name='W_1')(z, train)
    return (z + x).reshape(v.shape)


class ChannelGate(nn.Module):
  """GCNet-style context block: softmax-pooled clip context -> MLP with BN1d -> added to every position."""
  num_segments: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, v, train: bool):
    nt, h, w, c = v.shape
    n = nt // self.num_segments
    x = v.reshape(n, -1, c)  # [N, M, C]
    logits = nn.Dense(1, dtype=self.dtype, kernel_init=torch_default_kernel,
                      bias_init=torch_default_bias(c), name='W_k')(x)[..., 0]  # [N, M]
    weights = jax.nn.softmax(logits.astype(stat_dtype(x.dtype)), axis=-1).astype(x.dtype)
    context = jnp.einsum('nm,nmc->nc', weights, x)  # [N, C]
    g = nn.Dense(c // 2, dtype=self.dtype, kernel_init=torch_default_kernel,
                 bias_init=torch_default_bias(c), name='W_v1')(context)
    g = nn.relu(BatchNorm(momentum=0.01, dtype=self.dtype, name='bn1')(g, train))  # stats over clips
    g = nn.Dense(c, dtype=self.dtype, kernel_init=nn.initializers.zeros,
                 bias_init=nn.initializers.zeros, name='W_v2')(g)  # [N, C]
    return (x + g[:, None, :]).reshape(v.shape)
