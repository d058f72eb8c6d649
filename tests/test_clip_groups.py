"""Evaluation forwards in groups of clips (rnl_jax/models/clip_groups.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnl_jax.models import build_model, clip_groups
from rnl_jax.models.tsn import Architecture


@pytest.mark.parametrize(
    'b,clips,shards', [(6, 2, 1), (7, 3, 1), (8, 3, 2), (12, 1, 4), (5, 0, 1), (4, 9, 1)]
)
def test_groups_give_the_same_rows_and_each_pass_has_its_size(b, clips, shards):
  x = jnp.arange(b * 3, dtype=jnp.float32).reshape(b, 3)
  seen = []

  def fn(rows):  # per-row function; records the pass size at trace time
    seen.append(rows.shape[0])
    return jnp.stack([rows.sum(-1), rows[:, 0] * 2], -1)

  y = clip_groups.apply_in_groups(fn, x, clips, shards)
  np.testing.assert_array_equal(y, fn(x))
  per_shard = b // shards
  expected = shards * clips if 0 < clips < per_shard else b
  assert seen[0] == expected


def test_auto_is_one_full_size_clip_per_pass_on_cpu_and_all_at_once_elsewhere():
  assert clip_groups.clips_per_pass(-1, 8, 224, backend='cpu') == 1
  assert clip_groups.clips_per_pass(-1, 16, 224, backend='cpu') == 1
  assert clip_groups.clips_per_pass(-1, 4, 32, backend='cpu') == 64
  assert clip_groups.clips_per_pass(-1, 8, 224, backend='gpu') == 0
  assert clip_groups.clips_per_pass(3, 8, 224, backend='gpu') == 3


def test_rnl_model_logits_in_passes_equal_one_pass():
  model = build_model(Architecture.from_variant('rnl', 5, depth=18, width=8), normalize_input=True)
  x = np.random.default_rng(0).integers(0, 256, (5, 4, 32, 32, 3), dtype=np.uint8)
  variables = jax.jit(lambda x: model.init(jax.random.PRNGKey(0), x, train=False))(x[:1])
  apply = lambda f: model.apply(variables, f, train=False)
  one = jax.jit(apply)(x)
  grouped = jax.jit(lambda x: clip_groups.apply_in_groups(apply, x, 2))(x)
  np.testing.assert_allclose(grouped, one, rtol=1e-5, atol=1e-5)
