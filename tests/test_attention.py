"""Chunked and streamed region attention equal the plain [M, M] softmax, in values and gradients."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnl_jax.models import Architecture, build_model, region_attention, rnl


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
  np.testing.assert_allclose(y[0, 0], 0.0, atol=1e-6)  # query 0 -> key 0's value (0)
  np.testing.assert_allclose(y[0, 1], 1.0, atol=1e-6)  # query 1 -> key 1's value (1)
  np.testing.assert_allclose(y[0, 2], 1.0, atol=1e-6)  # query 2: uniform over keys -> mean 1


def use_stream_driver(monkeypatch, driver):
  """streamed_attention's tile pairs 'unrolled' (one group), 'grouped' (unrolled, one pair per
  group, each after the last) or 'scanned' (with a cond)."""
  monkeypatch.setattr(rnl, 'STREAM_UNROLL_BYTES', 0 if driver == 'scanned' else 2**40)
  monkeypatch.setattr(rnl, 'STREAM_GROUP_BYTES', 1 if driver == 'grouped' else 2**40)


@pytest.fixture(params=['unrolled', 'grouped', 'scanned'])
def stream_driver(request, monkeypatch):
  use_stream_driver(monkeypatch, request.param)
  return request.param


@pytest.mark.parametrize(
    'method', ['chunked', 'streamed-unrolled', 'streamed-grouped', 'streamed-scanned']
)
def test_memory_bounded_gradients_equal_plain(method, monkeypatch):
  # M = 90 in chunks / tiles of at most 32 (3 of 30, 6 tile pairs)
  use_stream_driver(monkeypatch, method.split('-')[-1])
  if method == 'chunked':
    bounded = functools.partial(region_attention, query_chunk=32)
  else:
    bounded = functools.partial(rnl.streamed_attention, tile=32)
  rng = np.random.default_rng(1)
  p = jnp.asarray(rng.normal(size=(2, 90, 8)).astype(np.float32) * 0.5)
  theta = jnp.asarray(rng.normal(size=(2, 90, 8)).astype(np.float32))
  g = jnp.asarray(rng.normal(size=(2, 90, 8)).astype(np.float32))
  _, vjp_plain = jax.vjp(lambda a, b: region_attention(a, b), p, theta)
  _, vjp_bounded = jax.vjp(bounded, p, theta)
  for a, b in zip(vjp_plain(g), vjp_bounded(g)):
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
  np.testing.assert_allclose(
      jax.vjp(tiled, p)[1](g)[0], jax.vjp(direct, p)[1](g)[0], rtol=1e-5, atol=1e-4
  )


def test_tiled_attention_matches_numpy(monkeypatch):
  monkeypatch.setattr(rnl, 'AFFINITY_TILE', 30)
  rng = np.random.default_rng(3)
  p = rng.normal(size=(2, 100, 16)).astype(np.float32) * 0.5
  theta = rng.normal(size=(2, 100, 16)).astype(np.float32)
  y = region_attention(jnp.asarray(p), jnp.asarray(theta))
  np.testing.assert_allclose(y, attention_numpy(p, theta), rtol=1e-5, atol=1e-5)


# tile 1: every pair is 1 x 1 (5050 pairs, scanned); 7: 15 tiles with 5 padded keys (120 pairs);
# 25: 4 tiles (10 pairs); 30: evened out to 4 tiles of 25; 100 and 1000: one tile, the plain path.
@pytest.mark.parametrize(
    'tile,driver',
    [
        (1, 'scanned'),
        (7, 'scanned'),
        (7, 'grouped'),
        (25, 'scanned'),
        (25, 'unrolled'),
        (30, 'grouped'),
        (100, 'scanned'),
        (1000, 'scanned'),
    ],
)
def test_streamed_attention_matches_numpy(tile, driver, monkeypatch):
  use_stream_driver(monkeypatch, driver)
  rng = np.random.default_rng(5)
  p = rng.normal(size=(2, 100, 16)).astype(np.float32) * 0.5
  theta = rng.normal(size=(2, 100, 16)).astype(np.float32)
  y = rnl.streamed_attention(jnp.asarray(p), jnp.asarray(theta), tile)
  np.testing.assert_allclose(y, attention_numpy(p, theta), rtol=1e-5, atol=1e-5)
  if tile >= 100:  # one tile: the same program as the plain attention, so the same bits
    np.testing.assert_array_equal(y, region_attention(jnp.asarray(p), jnp.asarray(theta)))


def test_streamed_attention_rescales_when_a_later_tile_holds_the_maximum(stream_driver):
  # Logits up to ~940 (exp overflows without the running maximum), and 59 of 60 queries have their
  # largest logit in a later key tile than the first one folded in: earlier sums must be rescaled.
  rng = np.random.default_rng(6)
  p = rng.normal(size=(1, 60, 8)).astype(np.float32)
  p *= np.linspace(0.5, 8.0, 60, dtype=np.float32)[None, :, None]  # larger norms in later rows
  theta = rng.normal(size=(1, 60, 8)).astype(np.float32)
  y = np.asarray(rnl.streamed_attention(jnp.asarray(p), jnp.asarray(theta), 20))
  assert np.isfinite(y).all()
  np.testing.assert_allclose(y, attention_numpy(p, theta), rtol=1e-4, atol=1e-4)


def test_streamed_attention_in_bfloat16_keeps_float32_sums(stream_driver):
  rng = np.random.default_rng(7)
  p = rng.normal(size=(1, 96, 16)).astype(np.float32) * 0.5
  theta = rng.normal(size=(1, 96, 16)).astype(np.float32)
  y = rnl.streamed_attention(jnp.asarray(p, jnp.bfloat16), jnp.asarray(theta, jnp.bfloat16), 32)
  assert y.dtype == jnp.bfloat16
  plain = region_attention(jnp.asarray(p, jnp.bfloat16), jnp.asarray(theta, jnp.bfloat16))
  np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(plain, np.float32), atol=3e-2)
  np.testing.assert_allclose(np.asarray(y, np.float32), attention_numpy(p, theta), atol=6e-2)


def test_eval_attention_method():
  assert rnl.eval_attention_method('auto', 'cpu') == 'streamed'
  assert rnl.eval_attention_method('auto', 'gpu') == 'chunked'
  assert rnl.eval_attention_method('auto', 'tpu') == 'chunked'
  assert rnl.eval_attention_method('chunked', 'cpu') == 'chunked'
  assert rnl.eval_attention_method('streamed', 'gpu') == 'streamed'
  with pytest.raises(ValueError, match="eval_attention='flash'"):
    rnl.eval_attention_method('flash')
  with pytest.raises(
      ValueError, match="eval_attention='flash'"
  ):  # at construction, before any trace
    build_model(Architecture.from_variant('rnl', 10, 50), eval_attention='flash')


@pytest.mark.parametrize('method', ['streamed-unrolled', 'streamed-scanned', 'chunked'])
def test_block_chunks_by_mode(method, monkeypatch):
  # query_chunk applies with train=True, eval_query_chunk with train=False. M = 32 in tiles of 8:
  # 10 tile pairs, unrolled (no scan, no cond) or scanned with a cond for the mirrored update;
  # chunked: lax.map -> a scan, no cond.
  use_stream_driver(monkeypatch, method.split('-')[-1])
  attention = rnl.AttentionSettings(
      query_chunk=None, eval_query_chunk=8, eval_attention=method.split('-')[0]
  )
  block = rnl.RegionNonLocal(num_segments=2, kernel_size=(1, 3, 3), attention=attention)
  x = jnp.asarray(
      np.random.default_rng(4).normal(size=(4, 4, 4, 8)).astype(np.float32)
  )  # [N*T, H, W, C]
  variables = block.init(jax.random.PRNGKey(0), x, train=False)
  eval_jaxpr = str(jax.make_jaxpr(lambda v: block.apply(v, x, train=False))(variables))
  train_jaxpr = str(
      jax.make_jaxpr(lambda v: block.apply(v, x, train=True, mutable=['batch_stats']))(variables)
  )
  assert ('scan' in eval_jaxpr) == (method != 'streamed-unrolled') and 'scan' not in train_jaxpr
  assert ('cond' in eval_jaxpr) == (method == 'streamed-scanned')
  plain = block.clone(attention=dataclasses.replace(attention, eval_query_chunk=None))
  np.testing.assert_allclose(
      block.apply(variables, x, train=False),
      plain.apply(variables, x, train=False),
      rtol=1e-5,
      atol=1e-5,
  )


def test_streamed_attention_unrolls_within_the_byte_budget():
  # Layer 2 of 8-frame clips, tiles of 784: 36 pairs of 2 x 784^2 float32 weights = 177 MB per clip.
  # One clip fits STREAM_UNROLL_BYTES (straight-line code, no scan); two clips are scanned.
  def jaxpr(clips):
    spec = jax.ShapeDtypeStruct((clips, 6272, 8), jnp.float32)
    return str(jax.make_jaxpr(lambda p, t: rnl.streamed_attention(p, t, 784))(spec, spec))

  one, two = jaxpr(1), jaxpr(2)
  assert 'scan' not in one and one.count('dot_general') == 36 + 64
  assert 'scan' in two and two.count('dot_general') == 3


def test_stream_group_size(monkeypatch):
  """Unrolled (pairs per group) while all pairs' weights fit the budget, else None (scan)."""
  monkeypatch.setattr(rnl, 'STREAM_UNROLL_BYTES', 1000)
  monkeypatch.setattr(rnl, 'STREAM_GROUP_BYTES', 250)
  assert rnl._stream_group_size(10, 100) == 2  # 1000 bytes fit; groups of 250 // 100 pairs
  assert rnl._stream_group_size(10, 101) is None  # 1010 bytes: scanned
  assert rnl._stream_group_size(3, 300) == 1  # a pair above the group budget: one at a time


def test_stream_tiles_even_out_and_mask_the_padding():
  p = jnp.arange(2 * 10 * 3, dtype=jnp.float32).reshape(2, 10, 3)
  t = rnl._stream_tiles(p, -p, 4)  # M 10 in tiles of <= 4: 3 tiles of 4 rows, 2 padded
  assert t.shape == (2, 3, 4, 3) and t.pad == 2 and t.acc_dtype == jnp.float32
  np.testing.assert_array_equal(t.tiles.reshape(2, 12, 3)[:, :10], p)
  np.testing.assert_array_equal(t.values.reshape(2, 12, 3)[:, 10:], 0.0)
  assert np.asarray(t.key_bias).ravel().tolist() == [0.0] * 10 + [-np.inf] * 2
  rowwise, columnwise = t.logits(0, 2)  # tile 2 holds the padded keys: masked for tile 0's queries
  assert np.isneginf(rowwise[:, :, 2:]).all() and np.isfinite(rowwise[:, :, :2]).all()
  assert np.isfinite(columnwise).all()  # tile 0's rows are real keys for tile 2's queries
  assert rnl._stream_tiles(p[:, :8], p[:, :8], 4).pad == 0


# M = 90 in tiles of 32 (3 of 30: 3 diagonal and 3 off-diagonal pairs), of 7 (13 tiles of 7, one
# padded key), of 45 (2 tiles), of 1 (90 tiles of one row); 90 and more: the plain path.
@pytest.mark.parametrize('tile', [1, 7, 32, 45, 90, 1000])
def test_tiled_training_attention_gradients_equal_plain_float64(tile):
  """The flash-style backward (recomputed tiles, saved log-sum-exps) gives the plain path's
  output and gradients in float64 to rounding (~1e-15 measured; asserted 1e-10)."""
  rng = np.random.default_rng(4)
  with jax.enable_x64(True):
    p, theta, g = (jnp.asarray(rng.normal(size=(2, 90, 8)) * s) for s in (0.5, 1.0, 1.0))
    y_plain, vjp_plain = jax.vjp(lambda a, b: region_attention(a, b), p, theta)
    y_tiled, vjp_tiled = jax.vjp(lambda a, b: rnl.tiled_attention(a, b, tile), p, theta)
    assert y_tiled.dtype == jnp.float64
    np.testing.assert_allclose(y_tiled, y_plain, rtol=1e-10, atol=1e-10)
    for name, a, b in zip(('dp', 'dtheta'), vjp_plain(g), vjp_tiled(g)):
      np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-10, err_msg=name)


def test_tiled_training_attention_holds_no_square_array():
  """No array of the jitted forward + backward is [M, M] (M = 1000 in tiles of 100): the largest
  intermediates are one tile pair's [N, 100, 100]; the plain path's gradient has [N, M, M] ones."""
  p = jnp.zeros((2, 1000, 8))
  grad = lambda f: jax.grad(lambda a, b: jnp.sum(f(a, b) ** 2), argnums=(0, 1))
  shapes = lambda f: {
      tuple(v.aval.shape)
      for eqn in jax.make_jaxpr(grad(f))(p, p).eqns
      for v in eqn.outvars
      if hasattr(v.aval, 'shape')
  }
  assert (2, 1000, 1000) in shapes(lambda a, b: region_attention(a, b))
  tiled = shapes(lambda a, b: rnl.tiled_attention(a, b, 100))
  assert max(np.prod(s) for s in tiled) < 2 * 1000 * 1000 / 10, sorted(tiled)[-5:]


@pytest.mark.parametrize(
    'setting,backend,expected',
    [('auto', 'cpu', rnl.AUTO_CPU_TRAIN_TILE), ('auto', 'gpu', None), ('auto', 'tpu', None)]
    + [(None, 'cpu', None), (392, 'cpu', 392), (392, 'gpu', 392)],
)
def test_train_query_chunk_auto_is_tiles_on_cpu_only(setting, backend, expected):
  assert rnl.train_query_chunk(setting, backend) == expected


@pytest.mark.parametrize('setting', [-1, 0, 'fast', True])
def test_train_query_chunk_rejects_other_settings(setting):
  with pytest.raises(ValueError, match=f'query_chunk={setting!r}'):
    rnl.AttentionSettings(query_chunk=setting)


def test_auto_query_chunk_is_resolved_when_traced(monkeypatch):
  # The backend is asked only when the attention is traced (after jax.distributed.initialize()).
  calls = []
  monkeypatch.setattr(rnl, 'tiled_attention', lambda *a: calls.append(('tiled', a[2])) or a[1])
  monkeypatch.setattr(rnl, 'region_attention', lambda *a: calls.append(('region', a[2])) or a[1])
  settings = rnl.AttentionSettings(query_chunk='auto', train_attention='tiled')
  p = jnp.zeros((1, 10, 4))
  monkeypatch.setattr(jax, 'default_backend', lambda: 'cpu')
  settings.attend(p, p, train=True)
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  settings.attend(p, p, train=True)
  assert calls == [('tiled', rnl.AUTO_CPU_TRAIN_TILE), ('region', None)]
  with pytest.raises(ValueError, match='eval_query_chunk'):
    build_model(Architecture(num_classes=3, depth=18), query_chunk='auto')


@pytest.mark.parametrize('backend,expected', [('cpu', 'tiled'), ('gpu', 'chunked')])
def test_training_uses_the_tiled_attention_where_set(backend, expected, monkeypatch):
  """train_attention 'auto' = tiled on CPU, chunked on accelerators; query_chunk None = plain."""
  assert rnl.train_attention_method('auto', backend) == expected
  calls = []
  monkeypatch.setattr(rnl, 'tiled_attention', lambda *a: calls.append('tiled') or a[1])
  monkeypatch.setattr(rnl, 'region_attention', lambda *a: calls.append(('region', a[2:])) or a[1])
  p = jnp.zeros((1, 10, 4))
  rnl.AttentionSettings(query_chunk=4, train_attention='tiled').attend(p, p, train=True)
  rnl.AttentionSettings(query_chunk=4, train_attention='chunked').attend(p, p, train=True)
  rnl.AttentionSettings(query_chunk=None, train_attention='tiled').attend(p, p, train=True)
  assert calls == ['tiled', ('region', (4,)), ('region', (None,))]
  with pytest.raises(ValueError, match='train_attention'):
    rnl.AttentionSettings(train_attention='flash')
