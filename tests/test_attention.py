"""Chunked region attention equals the plain [M, M] softmax, in values and gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnl_jax.models import region_attention


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
