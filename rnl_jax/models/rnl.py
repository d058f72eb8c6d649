"""Region-based non-local block and channel gate (docs/original.md §1.4-1.6).

Both act on the frames of one clip folded into the batch, `[N*T, H, W, C]`, and see the clip as
`M = T*H*W` positions. Positions are flattened in (t, h, w) order; the attention and the gate are
invariant to that order as long as queries, keys and values share it.
"""

import dataclasses
import functools
from typing import Any, NamedTuple, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from rnl_jax.models.depthwise import depthwise_conv3d
from rnl_jax.models.layers import (
    BatchNorm,
    stat_dtype,
    torch_default_bias,
    torch_default_kernel,
    uniform_init,
)

# Rows per tile of the symmetric affinity P P^T (one 28x28 frame of layer 2): fewer rows per tile
# save more MACs but make smaller matmuls; 784 rows measured fastest on CPU
# (docs/performance.md#symmetric-affinity-tiles).
AFFINITY_TILE = 784
# Rows per streamed tile (CPU) / queries per chunk (accelerators) for evaluation where nothing else
# says (rnl_jax.classify; configs/default.py): streamed tiles of 784 measured fastest on CPU, and
# chunks of 784 cost little time for a fraction of the plain attention's memory
# (docs/performance.md#streamed-eval-attention).
EVAL_QUERY_CHUNK = 784


def affinity(p, dtype):
  """P P^T `[N, M, M]` (`p`: `[N, M, C']`) from the tiles on and above the diagonal, mirrored below.

  The affinity is symmetric, so with k = M // AFFINITY_TILE tiles per side only k (k + 1) / 2 of
  the k^2 tile products are computed: 56 % of the MACs at layer 2 of an 8-frame clip (k = 8), which
  makes the attention faster forward and backward (docs/performance.md#symmetric-affinity-tiles).
  Every entry is the same dot product as in one einsum (tile (j, i) is the transpose of tile
  (i, j)); the gradient follows through the tiles.
  """
  n, m, c = p.shape
  k = m // AFFINITY_TILE
  if k < 2:
    return jnp.einsum('nqc,nkc->nqk', p, p, preferred_element_type=dtype)
  rows = -(-m // k)
  tiles = jnp.pad(p, ((0, 0), (0, rows * k - m), (0, 0))).reshape(n, k, rows, c)
  upper = {
      (i, j): jnp.einsum('nqc,nkc->nqk', tiles[:, i], tiles[:, j], preferred_element_type=dtype)
      for i in range(k)
      for j in range(i, k)
  }
  full = jnp.concatenate(
      [
          jnp.concatenate(
              [upper[i, j] if j >= i else jnp.swapaxes(upper[j, i], 1, 2) for j in range(k)], axis=2
          )
          for i in range(k)
      ],
      axis=1,
  )  # [N, k*rows, k*rows]
  return full[:, :m, :m]


def _attend(queries, keys, values, symmetric=False):
  """softmax(queries keys^T) values, softmax over keys in (at least) float32, no 1/sqrt(d) scaling.

  symmetric: keys are the queries (the plain attention): the affinity is computed by tiles."""
  if symmetric:
    logits = affinity(queries, stat_dtype(queries.dtype))
  else:
    logits = jnp.einsum(
        'nqc,nkc->nqk', queries, keys, preferred_element_type=stat_dtype(queries.dtype)
    )
  weights = jax.nn.softmax(logits, axis=-1).astype(values.dtype)
  return jnp.einsum('nqk,nkc->nqc', weights, values)


def region_attention(p, theta, query_chunk: Optional[int] = None):
  """Region non-local attention of one clip: Y_j = sum_i softmax_i(<P_j, P_i>) theta_i.

  Args:
    p: `[N, M, C']` region-aggregated features (queries and keys).
    theta: `[N, M, C']` un-aggregated features (values).
    query_chunk: None computes the `[N, M, M]` affinity at once; an integer processes at most that
      many queries at a time (rematerialised in the backward pass), so memory is `[N, chunk, M]`;
      the chunks are evened out (M = 8192 in chunks of <= 784: 11 chunks of 745). Each query row's
      softmax is independent, so both paths compute the same function. Chunks are slower than the
      plain (symmetric) path but need a fraction of its memory
      (docs/performance.md#chunked-attention).
  Returns:
    `[N, M, C']`.
  """
  n, m, c = p.shape
  if query_chunk is None or query_chunk >= m:
    return _attend(p, p, theta, symmetric=True)
  chunks = -(-m // query_chunk)
  query_chunk = -(-m // chunks)
  pad = chunks * query_chunk - m
  q = jnp.pad(p, ((0, 0), (0, pad), (0, 0))).reshape(n, chunks, query_chunk, c)
  q = jnp.moveaxis(q, 1, 0)  # [chunks, N, chunk, C']
  body = jax.checkpoint(lambda qc: _attend(qc, p, theta))
  y = jax.lax.map(body, q)  # [chunks, N, chunk, C']
  return jnp.moveaxis(y, 0, 1).reshape(n, chunks * query_chunk, c)[:, :m]


# streamed_attention unrolls its tile pairs into straight-line code while every pair's weights
# (2 x rows^2 floats per pair and clip) fit in STREAM_UNROLL_BYTES, and scans over the pairs beyond
# (one pair's buffers, reused). Unrolled, the pairs run in groups of at most STREAM_GROUP_BYTES of
# weights, each group after the previous one's updates; within a group XLA orders and overlaps the
# pairs freely. Groups keep the unrolled speed with about half the temporaries of one group; pair by
# pair is no faster than the scan (docs/performance.md#streamed-eval-attention).
STREAM_UNROLL_BYTES = 256 * 2**20
STREAM_GROUP_BYTES = 64 * 2**20


def _fold_tile(state, logits, vals, transposed, acc_dtype):
  """Online-softmax update of one query tile's (running max, exp-sum, weighted values) with logits
  [N, queries, keys] against keys with values `vals` [N, keys, C'] ([N, keys, queries] if
  `transposed`: a tile read down its columns, not moved)."""
  top, total, out = state  # [N, rows], [N, rows], [N, rows, C']
  keys = 1 if transposed else 2
  new_top = jnp.maximum(top, jnp.max(logits, axis=keys))
  rescale = jnp.exp(top - new_top)
  weights = jnp.exp(logits - jnp.expand_dims(new_top, keys))
  spec = 'nkq,nkc->nqc' if transposed else 'nqk,nkc->nqc'
  return (
      new_top,
      total * rescale + jnp.sum(weights, axis=keys),
      out * rescale[..., None]
      + jnp.einsum(spec, weights.astype(vals.dtype), vals, preferred_element_type=acc_dtype),
  )


class _StreamTiles(NamedTuple):
  """streamed_attention's operands cut into k tiles of `rows` rows (the last rows zero-padded).

  tiles, values: `[N, k, rows, C']` queries = keys and values; key_bias: `[k, rows]`, 0 for real
  positions and -inf for padding (`pad` rows in all); acc_dtype: the dtype of the running sums.
  """

  tiles: Any
  values: Any
  key_bias: Any
  pad: int
  acc_dtype: Any

  @property
  def shape(self):
    """(N, k, rows, C')."""
    return self.tiles.shape

  def logits(self, i, j, after=None):
    """Tile (i, j) of P P^T [N, rows, rows], and its columns' padded keys masked for tile i's
    queries and its rows' for tile j's (read transposed). `after`: [N, 1, 1] zeros that order the
    product."""
    left, right = self.tiles[:, i], self.tiles[:, j]
    if after is not None:
      left, right = left + after, right + after
    logits = jnp.einsum('nqc,nkc->nqk', left, right, preferred_element_type=self.acc_dtype)
    if not self.pad:
      return logits, logits
    return logits + self.key_bias[j], logits + self.key_bias[i][:, None]


def _stream_tiles(p, theta, tile):
  """p and theta (`[N, M, C']`) as `_StreamTiles` of at most `tile` rows, evened out: k = ceil(M /
  tile) tiles of ceil(M / k) rows."""
  n, m, c = p.shape
  acc_dtype = stat_dtype(theta.dtype)
  k = -(-m // tile)
  rows = -(-m // k)
  pad = k * rows - m
  tiles = jnp.pad(p, ((0, 0), (0, pad), (0, 0))).reshape(n, k, rows, c)  # [N, k, rows, C']
  values = jnp.pad(theta, ((0, 0), (0, pad), (0, 0))).reshape(n, k, rows, c)  # [N, k, rows, C']
  key_bias = jnp.where(jnp.arange(k * rows) < m, 0.0, -jnp.inf).astype(acc_dtype).reshape(k, rows)
  return _StreamTiles(tiles, values, key_bias, pad, acc_dtype)


def _stream_group_size(num_pairs, pair_bytes):
  """Tile pairs per unrolled group, or None to scan: unrolled while all pairs' weights fit in
  STREAM_UNROLL_BYTES, in groups of STREAM_GROUP_BYTES (at least one pair)."""
  if num_pairs * pair_bytes > STREAM_UNROLL_BYTES:
    return None
  return max(STREAM_GROUP_BYTES // pair_bytes, 1)


def _stream_unrolled(t, pairs, group):
  """The tile pairs as straight-line code, `group` pairs at a time, each group after the previous
  one's updates; returns the running maxima and exp-sums `[N, k, rows]` and weighted sums
  `[N, k, rows, C']`."""
  n, k, rows, c = t.shape
  fold = functools.partial(_fold_tile, acc_dtype=t.acc_dtype)
  state = [
      (
          jnp.full((n, rows), -jnp.inf, t.acc_dtype),
          jnp.zeros((n, rows), t.acc_dtype),
          jnp.zeros((n, rows, c), t.acc_dtype),
      )
      for _ in range(k)
  ]
  after = None
  for start in range(0, len(pairs), group):
    for i, j in pairs[start : start + group]:
      rowwise, columnwise = t.logits(i, j, after)
      state[i] = fold(state[i], rowwise, t.values[:, j], False)
      if i != j:
        state[j] = fold(state[j], columnwise, t.values[:, i], True)
    # The next group's products wait for this group's weighted sums, through a zero that XLA
    # cannot fold away (x * 0 is NaN for infinite x), so one group's buffers are live at a time.
    after = 0.0 * sum(s[2][:, :1, :1] for s in state).astype(t.tiles.dtype)
  top = jnp.stack([s[0] for s in state], axis=1)  # [N, k, rows]
  total = jnp.stack([s[1] for s in state], axis=1)  # [N, k, rows]
  out = jnp.stack([s[2] for s in state], axis=1)  # [N, k, rows, C']
  return top, total, out


def _stream_scanned(t, pairs):
  """The tile pairs as a scan (one pair's buffers, reused); returns the running maxima and exp-sums
  `[N, k, rows]` and weighted sums `[N, k, rows, C']`."""
  n, k, rows, c = t.shape
  fold = functools.partial(_fold_tile, acc_dtype=t.acc_dtype)

  def update(state, i, logits, vals, transposed):
    tile_state = fold(tuple(a[:, i] for a in state), logits, vals, transposed)
    return tuple(a.at[:, i].set(b) for a, b in zip(state, tile_state))

  def step(state, pair):
    i, j = pair[0], pair[1]
    rowwise, columnwise = t.logits(i, j)
    state = update(state, i, rowwise, t.values[:, j], False)
    state = jax.lax.cond(
        i != j, lambda s: update(s, j, columnwise, t.values[:, i], True), lambda s: s, state
    )
    return state, None

  init = (
      jnp.full((n, k, rows), -jnp.inf, t.acc_dtype),
      jnp.zeros((n, k, rows), t.acc_dtype),
      jnp.zeros((n, k, rows, c), t.acc_dtype),
  )
  state, _ = jax.lax.scan(step, init, jnp.asarray(pairs, jnp.int32))
  return state


def streamed_attention(p, theta, tile: int):
  """region_attention's function, computed tile pair by tile pair with a running softmax (forward).

  The affinity P P^T is symmetric: with k tiles of at most `tile` rows per side, each of the
  k (k + 1) / 2 tiles on and above the diagonal is computed once and serves twice, for its query
  rows against its key rows and, read down its columns, the other way round. Each query row keeps a
  running maximum, exp-sum and weighted sum of values (online softmax, as in flash attention), and
  the affinity MACs are 56 % of the full product (k = 8). Padded key columns (M not a multiple of
  the tile rows) are masked to -inf. The sums run in a different order from the plain softmax
  (differences ~1e-7 in float32). The tile pairs are unrolled in groups while all their weights
  fit in STREAM_UNROLL_BYTES (memory: one group's tiles), else scanned: memory is then one pair's
  tiles plus `[N, M, C']` accumulators, less than query chunks or the plain path need. The mirrored
  use reads the tile down its columns (a transposed copy was slower). On CPU it is faster than both
  (docs/performance.md#streamed-eval-attention). Differentiable, but the backward keeps every
  step's residuals: training uses tiled_attention (the same forward with a recomputing backward)
  or region_attention.

  Phases: cut into tiles (`_stream_tiles`), run the pairs (`_stream_unrolled` or `_stream_scanned`,
  as `_stream_group_size` decides), divide by the exp-sums.

  Args:
    p: `[N, M, C']` queries = keys; theta: `[N, M, C']` values; tile: rows per tile (evened out);
      tile >= M is one tile: the plain path (region_attention), bit for bit.
  Returns:
    `[N, M, C']` in theta's dtype.
  """
  n, m, c = p.shape
  if tile >= m:
    return region_attention(p, theta)
  y, _ = _streamed_forward(_stream_tiles(p, theta, tile))
  return y.reshape(n, -1, c)[:, :m].astype(theta.dtype)


def _streamed_forward(t):
  """(y `[N, k, rows, C']` in the accumulation dtype, log-sum-exp of every query row's logits
  `[N, k, rows]`) of the tiles `t` (streamed_attention's forward)."""
  n, k, rows, _ = t.shape
  pairs = [(i, j) for i in range(k) for j in range(i, k)]
  pair_bytes = n * 2 * rows * rows * jnp.dtype(t.acc_dtype).itemsize  # one pair's weights
  group = _stream_group_size(len(pairs), pair_bytes)
  if group is not None:
    top, total, out = _stream_unrolled(t, pairs, group)
  else:
    top, total, out = _stream_scanned(t, pairs)
  return out / total[..., None], top + jnp.log(total)


def tiled_attention(p, theta, tile: int):
  """region_attention's function for training with memory linear in M: flash-attention style.

  Forward: streamed_attention's tile pairs (each tile of the symmetric affinity computed once,
  running softmax), keeping only the output and each query row's log-sum-exp. Backward (a
  custom_vjp): the same tile pairs again, each tile's logits recomputed from p and turned back
  into softmax weights with the saved log-sum-exp, so no `[M, M]` array exists in either pass:
  memory is one tile pair's `[N, rows, rows]` buffers plus `[N, M, C']` accumulators. Per pair of
  tiles (i, j), i < j, both directions (queries of i on keys of j and of j on keys of i) share one
  recomputed product; the gradients are the plain path's up to summation order.

  Args:
    p: `[N, M, C']` queries = keys; theta: `[N, M, C']` values; tile: rows per tile (evened out);
      tile >= M is the plain path (region_attention).
  Returns:
    `[N, M, C']` in theta's dtype.
  """
  if tile >= p.shape[1]:
    return region_attention(p, theta)
  return _tiled(p, theta, tile)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _tiled(p, theta, tile):
  return streamed_attention(p, theta, tile)


def _tiled_forward(p, theta, tile):
  """The output and the residuals (p, theta, y and the rows' log-sum-exp in tiles)."""
  n, m, c = p.shape
  y, lse = _streamed_forward(_stream_tiles(p, theta, tile))  # [N, k, rows, C'], [N, k, rows]
  return y.reshape(n, -1, c)[:, :m].astype(theta.dtype), (p, theta, y, lse)


def _tiled_backward(tile, residuals, dy):
  """(dp, dtheta) from the tile pairs, diagonal pairs first (one scan each: one pair's buffers;
  tile < M, so there are at least two tiles and both kinds of pairs)."""
  p, theta, y, lse = residuals
  n, m, c = p.shape
  t = _stream_tiles(p, theta, tile)
  _, k, rows, _ = t.shape
  dy = jnp.pad(dy, ((0, 0), (0, t.pad), (0, 0))).reshape(n, k, rows, c)  # [N, k, rows, C']
  # The softmax backward's per-row term sum_c dy * y (zero on padded rows: dy is zero there).
  delta = jnp.einsum('nkrc,nkrc->nkr', dy.astype(t.acc_dtype), y)
  grads = (jnp.zeros((n, k, rows, c), t.acc_dtype), jnp.zeros((n, k, rows, c), t.acc_dtype))
  for diagonal in (True, False):
    pairs = [(i, j) for i in range(k) for j in range(i, k) if (i == j) == diagonal]

    def step(state, pair, diagonal=diagonal):
      dp_i, dp_j, dv_i, dv_j = _pair_gradients(t, dy, lse, delta, pair[0], pair[1], diagonal)
      dp, dv = state
      dp = dp.at[:, pair[0]].add(dp_i).at[:, pair[1]].add(dp_j)
      dv = dv.at[:, pair[0]].add(dv_i).at[:, pair[1]].add(dv_j)
      return (dp, dv), None

    grads, _ = jax.lax.scan(step, grads, jnp.asarray(pairs, jnp.int32))
  dp, dtheta = (g.reshape(n, -1, c)[:, :m] for g in grads)
  return dp.astype(p.dtype), dtheta.astype(theta.dtype)


def _pair_gradients(t, dy, lse, delta, i, j, diagonal):
  """Tile pair (i, j)'s parts of (dp_i, dp_j, dtheta_i, dtheta_j), `[N, rows, C']` each.

  With S = P_i P_j^T recomputed and L the saved log-sum-exps: the weights of tile i's queries on
  tile j's keys are A = exp(S - L_i) and those of j's queries on i's keys, read down S's columns,
  B = exp(S - L_j)^T. The softmax backward gives dS = A (dy_i theta_j^T - delta_i) + B (theta_i
  dy_j^T - delta_j), and S's own backward dp_i = dS P_j, dp_j = dS^T P_i. A diagonal pair (i = j)
  has one direction only."""
  acc, vdt = t.acc_dtype, t.values.dtype
  p_i, p_j, v_i, v_j, dy_i, dy_j = (
      t.tiles[:, i],
      t.tiles[:, j],
      t.values[:, i],
      t.values[:, j],
      dy[:, i],
      dy[:, j],
  )
  rowwise, columnwise = t.logits(i, j)  # [N, rows_i, rows_j], padded keys masked either way
  a = jnp.exp(rowwise - lse[:, i][:, :, None])
  dv_j = jnp.einsum('nqk,nqc->nkc', a.astype(vdt), dy_i, preferred_element_type=acc)
  da = jnp.einsum('nqc,nkc->nqk', dy_i, v_j, preferred_element_type=acc)
  ds = a * (da - delta[:, i][:, :, None])
  if diagonal:
    dv_i = jnp.zeros_like(dv_j)
  else:
    b = jnp.exp(columnwise - lse[:, j][:, None, :])
    dv_i = jnp.einsum('nqk,nkc->nqc', b.astype(vdt), dy_j, preferred_element_type=acc)
    db = jnp.einsum('nqc,nkc->nqk', v_i, dy_j, preferred_element_type=acc)
    ds = ds + b * (db - delta[:, j][:, None, :])
  ds = ds.astype(t.tiles.dtype)
  dp_i = jnp.einsum('nqk,nkc->nqc', ds, p_j, preferred_element_type=acc)
  dp_j = jnp.einsum('nqk,nqc->nkc', ds, p_i, preferred_element_type=acc)
  return dp_i, dp_j, dv_i, dv_j


_tiled.defvjp(_tiled_forward, _tiled_backward)


# How training (train=True) bounds the attention's memory when query_chunk is set.
TRAIN_ATTENTION = ('auto', 'tiled', 'chunked')


def train_attention_method(setting: str, backend: Optional[str] = None) -> str:
  """'tiled' or 'chunked' for a setting; 'auto' = tiled on CPU (faster than chunks there),
  chunked on accelerators (measured there; tiled is not yet: docs/performance.md#rnl-attention)."""
  if setting not in TRAIN_ATTENTION:
    raise ValueError(f'train_attention={setting!r}: expected one of {TRAIN_ATTENTION}')
  if setting != 'auto':
    return setting
  return 'tiled' if (backend or jax.default_backend()) == 'cpu' else 'chunked'


# Rows per tile of the tiled training attention for query_chunk='auto' on CPU: the fastest tile size
# measured there (docs/performance.md, "Training attention with linear memory").
AUTO_CPU_TRAIN_TILE = 784


def train_query_chunk(setting, backend: Optional[str] = None) -> Optional[int]:
  """Rows per tile or chunk of the training attention (None = plain) for a query_chunk setting:
  None (plain), rows > 0, or 'auto' = AUTO_CPU_TRAIN_TILE on CPU (the tiled path, faster than plain
  there, memory linear in M) and plain on accelerators (the training path timed on one).

  Resolved when the attention is traced, not when the model is built: asking for the backend
  initialises it, which must wait for jax.distributed.initialize() in a multi-process run.
  """
  if setting == 'auto':
    return AUTO_CPU_TRAIN_TILE if (backend or jax.default_backend()) == 'cpu' else None
  if setting is not None and (isinstance(setting, (bool, str)) or setting <= 0):
    raise ValueError(f"query_chunk={setting!r}: expected None (plain), 'auto' or rows > 0")
  return setting


# How evaluation (train=False) bounds the attention's memory when eval_query_chunk is set.
EVAL_ATTENTION = ('auto', 'streamed', 'chunked')


def eval_attention_method(setting: str, backend: Optional[str] = None) -> str:
  """'streamed' or 'chunked' for a setting; 'auto' = streamed on CPU (fastest there), chunked on
  accelerators (faster than plain on an H200, where streamed is unmeasured;
  docs/performance.md#streamed-eval-attention)."""
  if setting not in EVAL_ATTENTION:
    raise ValueError(f'eval_attention={setting!r}: expected one of {EVAL_ATTENTION}')
  if setting != 'auto':
    return setting
  return 'streamed' if (backend or jax.default_backend()) == 'cpu' else 'chunked'


@dataclasses.dataclass(frozen=True)
class AttentionSettings:
  """How every RegionNonLocal of a model bounds its attention's memory: the same function either
  way, only memory and speed differ. Built by `build_model` (config.model keys of the same names)
  and passed down TSN -> ResNet -> Block -> RegionNonLocal as one object.

  Attributes:
    query_chunk: train=True: None for the plain `[M, M]` affinity, else rows per tile of the tiled
      attention or queries per chunk, as `train_attention` says; 'auto' = `train_query_chunk`.
    train_attention: 'auto', 'tiled' or 'chunked' (TRAIN_ATTENTION; `train_attention_method`).
    eval_query_chunk: train=False (validation, test protocol, classify): None for the plain
      attention, else rows per tile of the streamed attention or queries per chunk, as
      `eval_attention` says.
    eval_attention: 'auto', 'streamed' or 'chunked' (EVAL_ATTENTION; `eval_attention_method`).
  """

  query_chunk: Union[int, str, None] = None
  eval_query_chunk: Optional[int] = None
  eval_attention: str = 'auto'
  train_attention: str = 'auto'

  def __post_init__(self):
    eval_attention_method(self.eval_attention, 'cpu')  # ValueError for an unknown setting
    train_attention_method(self.train_attention, 'cpu')
    train_query_chunk(self.query_chunk, 'cpu')

  def attend(self, p, theta, train: bool):
    """The region attention of p (queries = keys) over theta (values), `[N, M, C']`, as set."""
    chunk = train_query_chunk(self.query_chunk) if train else self.eval_query_chunk
    if train and chunk and train_attention_method(self.train_attention) == 'tiled':
      return tiled_attention(p, theta, chunk)
    if (
        not train
        and self.eval_query_chunk
        and eval_attention_method(self.eval_attention) == 'streamed'
    ):
      return streamed_attention(p, theta, self.eval_query_chunk)
    return region_attention(p, theta, chunk)


def penta_groups(inner: int) -> int:
  """Channels per group of the original's masked grouped conv (32 unless fewer channels)."""
  return inner // max(inner // 32, 1)


class DepthwiseConv3D(nn.Module):
  """Depthwise 3-D conv, stride 1, zero 'same' padding, no bias; kernel `[kt, kh, kw, 1, C]` (the
  layout of `nn.Conv(feature_group_count=C)`), computed by `depthwise_conv3d` (XLA:CPU's grouped
  convolution is far slower: docs/performance.md#depthwise-region-conv)."""

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
  attention: AttentionSettings = AttentionSettings()  # plain, chunked or streamed attention
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, v, train: bool):
    nt, h, w, c = v.shape
    t = self.num_segments
    n, inner = nt // t, c // 2
    x = v.reshape(n, t, h, w, c)
    theta = nn.Dense(
        inner,
        dtype=self.dtype,
        kernel_init=torch_default_kernel,
        bias_init=torch_default_bias(c),
        name='theta',
    )(
        x
    )  # [N, T, H, W, C']
    k = tuple(self.kernel_size)
    vol = k[0] * k[1] * k[2]
    # Xavier-uniform over the original's stored grouped tensor [C', g, kt, kh, kw].
    bound = (6.0 / (penta_groups(inner) * vol + inner * vol)) ** 0.5
    p = DepthwiseConv3D(k, uniform_init(bound), self.dtype, name='penta')(theta)  # [N, T, H, W, C']
    # The attention's queries = keys, for attention maps (rnl_jax.classify): S = softmax(P P^T).
    self.sow('intermediates', 'region_features', p)
    p, theta = p.reshape(n, -1, inner), theta.reshape(n, -1, inner)  # [N, M, C']
    y = self.attention.attend(p, theta, train)
    z = nn.Dense(
        c,
        dtype=self.dtype,
        kernel_init=torch_default_kernel,
        bias_init=torch_default_bias(inner),
        name='W_0',
    )(y.reshape(n, t, h, w, inner))
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
    logits = nn.Dense(
        1,
        dtype=self.dtype,
        kernel_init=torch_default_kernel,
        bias_init=torch_default_bias(c),
        name='W_k',
    )(x)[
        ..., 0
    ]  # [N, M]
    weights = jax.nn.softmax(logits.astype(stat_dtype(x.dtype)), axis=-1).astype(x.dtype)
    context = jnp.einsum('nm,nmc->nc', weights, x)  # [N, C]
    g = nn.Dense(
        c // 2,
        dtype=self.dtype,
        kernel_init=torch_default_kernel,
        bias_init=torch_default_bias(c),
        name='W_v1',
    )(context)
    g = nn.relu(
        BatchNorm(momentum=0.01, dtype=self.dtype, name='bn1')(g, train)
    )  # stats over clips
    g = nn.Dense(
        c,
        dtype=self.dtype,
        kernel_init=nn.initializers.zeros,
        bias_init=nn.initializers.zeros,
        name='W_v2',
    )(
        g
    )  # [N, C]
    return (x + g[:, None, :]).reshape(v.shape)
