"""Evaluation forwards in groups of clips: the same logits, with the memory of one group; and
`eval_step`, the pure per-view forward that validation (rnl_jax.train) and the test protocol
(rnl_jax.protocol) jit.

In evaluation BatchNorm uses its running statistics, so clips are independent and one forward over B
clips equals B/k forwards over k clips. On a CPU a larger batch buys no speed, so running the groups
one after another inside the jitted call (`lax.map`) keeps XLA's temporary arena at one group's
size: one clip per pass was no slower and took a fraction of the memory
(docs/performance.md#clip-groups).
"""

import math

import jax
import jax.numpy as jnp

AUTO = -1
# 'auto' on CPU: passes of at least this many frame pixels (T x H x W): one clip of 8 x 224^2, whole
# batches of small inputs (4 x 32^2 x 64 clips), where per-pass overheads would dominate.
AUTO_CPU_PIXELS = 2**18


def clips_per_pass(setting, frames, size, backend=None):
  """Clips per forward pass for a config setting: 0 = all at once, k > 0 = k, AUTO (-1) = on CPU
  enough clips for AUTO_CPU_PIXELS frame pixels, on accelerators all at once."""
  if setting != AUTO:
    return setting
  if (backend or jax.default_backend()) != 'cpu':
    return 0
  return max(1, math.ceil(AUTO_CPU_PIXELS / (frames * size * size)))


def apply_in_groups(fn, x, clips, shards=1):
  """fn(x) computed `clips` clips (per shard) at a time; fn maps [G, ...] -> [G, ...].

  x: [B, ...] with B divisible by `shards` (the devices its batch axis is sharded over; each pass
  takes `clips` clips from every shard, so no clip changes device). B per shard is padded (with
  the shard's first clip) to a multiple of `clips`; clips = 0 or >= B per shard: one call of fn.
  """
  b = x.shape[0] // shards
  if not clips or clips >= b:
    return fn(x)
  n = -(-b // clips)  # passes
  per_shard = x.reshape((shards, b) + x.shape[1:])  # [D, b, ...]
  pad = n * clips - b
  if pad:
    fill = jnp.broadcast_to(per_shard[:, :1], (shards, pad) + x.shape[1:])
    per_shard = jnp.concatenate([per_shard, fill], axis=1)  # [D, n*k, ...]
  groups = per_shard.reshape((shards, n, clips) + x.shape[1:])
  groups = jnp.moveaxis(groups, 1, 0).reshape((n, shards * clips) + x.shape[1:])  # [n, D*k, ...]
  y = jax.lax.map(fn, groups)  # [n, D*k, ...]
  y = y.reshape((n, shards, clips) + y.shape[2:])
  y = jnp.moveaxis(y, 0, 1).reshape((shards, n * clips) + y.shape[3:])[:, :b]  # [D, b, ...]
  return y.reshape((shards * b,) + y.shape[2:])


def eval_step(variables, batch, *, model, clips=0, shards=1):
  """Per-view logits [B, K] (float32) and the batch's bookkeeping, returned replicated.

  `clips`: the clips-per-pass setting (config.model.eval_clips_per_pass; AUTO allowed): the forward
  runs over that many views per device at a time (same logits, the memory of one pass); `shards`:
  the devices the batch is split over.
  """
  frames = batch['frames']  # [B, T, S, S, 3]
  clips = clips_per_pass(clips, frames.shape[1], frames.shape[2])
  logits = apply_in_groups(
      lambda f: model.apply(variables, f, train=False), frames, clips, shards
  ).astype(jnp.float32)
  return {
      'logits': logits,
      'label': batch['label'],
      'video_index': batch['video_index'],
      'mask': batch['mask'],
  }
