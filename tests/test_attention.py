"""Chunked region attention equals the plain [M, M] softmax, in values and gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnl_jax.models import region_attention, rnl


def attention_numpy(p, theta):
  p, theta = p.astype(np.float64), theta.astype(np.float64)
  logits = np.einsum('nqc,nkc->nqk', p, p)
  logits -= logits.max(-1, keepdims=True)
  w = np.exp(logits)
  w /= w.sum(-1, keepdims=True)
  return np.einsum('nqk,nkc->nqc', w, theta)


@pytest.mark.parametrize('chunk', [None, 1, 7, 64, 100, 1000])
def test_attention_matches_numpy(chunk):
  rng = np.random.default_rng(0)
  p = rng.normal(size=(2, 100, 16)).astype(np.float32) * 0.5
  theta = rng.normal(size=(2, 100, 16)).astype(np.float32)
  y = region_attention(jnp.asarray(p), jnp.asarray(theta), chunk)
  np.testing.assert_allclose(y, attention_numpy(p, theta), rtol=1e-5, atol=1e-5)


def test_softmax_runs_over_keys_for_each_query():
  # One query attends to a key far more similar to it: its output must be (nearly) that key's value.
  p = np.zeros((1, 3, 2), np.float32)
  p[0, 0] = [10, 0]
  p[0, 1] = [0, 10]
  p[0, 2] = [0, 0]
  theta = np.broadcast_to(np.arange(3, dtype=np.float32)[None, :, None], (1, 3, 2))
  y = np.asarray(region_attention(jnp.asarray(p), jnp.asarray(theta)))
  np.testing.assert_allclose(y[0, 0], 0.0, atol=1e-6)   # query 0 -> key 0's value (0)
  np.testing.assert_allclose(y[0, 1], 1.0, atol=1e-6)   # query 1 -> key 1's value (1)
  np.testing.assert_allclose(y[0, 2], 1.0, atol=1e-6)   # query 2: uniform over keys -> mean 1


def test_chunked_gradients_equal_plain():
  rng = np.random.default_rng(1)
  p = jnp.asarray(rng.normal(size=(2, 90, 8)).astype(np.float32) * 0.5)
  theta = jnp.asarray(rng.normal(size=(2, 90, 8)).astype(np.float32))
  g = jnp.asarray(rng.normal(size=(2, 90, 8)).astype(np.float32))
  _, vjp_plain = jax.vjp(lambda a, b: region_attention(a, b), p, theta)
  _, vjp_chunk = jax.vjp(lambda a, b: region_attention(a, b, 32), p, theta)
  for a, b in zip(vjp_plain(g), vjp_chunk(g)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('tile', [10, 25, 33, 50])
def test_symmetric_affinity_equals_one_einsum(monkeypatch, tile):
  # P P^T from the upper tiles, mirrored: k = 100 // tile tiles per side (10, 4, 3 with 2 padded
  # rows, 2), values and gradients equal to the direct product.
  monkeypatch.setattr(rnl, 'AFFINITY_TILE', tile)
  rng = np.random.default_rng(2)
  p = jnp.asarray(rng.normal(size=(2, 100, 8)).astype(np.float32))
  g = jnp.asarray(rng.normal(size=(2, 100, 100)).astype(np.float32))
  direct = lambda a: jnp.einsum('nqc,nkc->nqk', a, a)
  tiled = lambda a: rnl.affinity(a, jnp.float32)
  assert 'concatenate' in str(jax.make_jaxpr(tiled)(p))  # the tiled path ran
  np.testing.assert_allclose(tiled(p), direct(p), rtol=1e-6, atol=1e-5)
  np.testing.assert_allclose(jax.vjp(tiled, p)[1](g)[0], jax.vjp(direct, p)[1](g)[0], rtol=1e-5, atol=1e-4)


def test_tiled_attention_matches_numpy(monkeypatch):
  monkeypatch.setattr(rnl, 'AFFINITY_TILE', 30)
  rng = np.random.default_rng(3)
  p = rng.normal(size=(2, 100, 16)).astype(np.float32) * 0.5
  theta = rng.normal(size=(2, 100, 16)).astype(np.float32)
  y = region_attention(jnp.asarray(p), jnp.asarray(theta))
  np.testing.assert_allclose(y, attention_numpy(p, theta), rtol=1e-5, atol=1e-5)


def test_block_chunks_by_mode():
  # query_chunk applies with train=True, eval_query_chunk with train=False (lax.map -> a scan).
  block = rnl.RegionNonLocal(num_segments=2, kernel_size=(1, 3, 3), query_chunk=None, eval_query_chunk=8)
  x = jnp.asarray(np.random.default_rng(4).normal(size=(4, 4, 4, 8)).astype(np.float32))  # [N*T, H, W, C]
  variables = block.init(jax.random.PRNGKey(0), x, train=False)
  eval_jaxpr = str(jax.make_jaxpr(lambda v: block.apply(v, x, train=False))(variables))
  train_jaxpr = str(jax.make_jaxpr(lambda v: block.apply(v, x, train=True, mutable=['batch_stats']))(variables))
  assert 'scan' in eval_jaxpr and 'scan' not in train_jaxpr
  plain = block.clone(eval_query_chunk=None)
  np.testing.assert_allclose(block.apply(variables, x, train=False), plain.apply(variables, x, train=False),
                             rtol=1e-5, atol=1e-5)
