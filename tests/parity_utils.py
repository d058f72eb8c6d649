"""Helpers for comparing the Flax model with PyTorch results: eval, one train step, key lookup."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rnl_jax import convert


def eval_logits_and_features(model, variables, x):
  """Eval-mode consensus logits [N, K] and pre-fc features [N*T, D]."""
  fn = jax.jit(lambda v, a: model.apply(v, a, train=False, mutable=['intermediates']))
  logits, state = fn(variables, x)
  return np.asarray(logits), np.asarray(state['intermediates']['features'][0])


def train_step_check(model, variables, x, labels):
  """One train-mode forward/backward as the fixture's check: mean cross-entropy over the clips.

  Returns (loss, logits, grads, new batch_stats).
  """

  def loss_fn(params, batch_stats, a, y):
    logits, updates = model.apply(
        {'params': params, 'batch_stats': batch_stats}, a, train=True, mutable=['batch_stats']
    )
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, (logits, updates['batch_stats'])

  grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
  (loss, (logits, stats)), grads = grad_fn(
      variables['params'], variables['batch_stats'], x, jnp.asarray(labels)
  )
  return float(loss), np.asarray(logits), grads, stats


def lookup(tree, path):
  for p in path:
    tree = tree[p]
  return np.asarray(tree)


@functools.lru_cache(maxsize=None)
def _key_map(arch):
  """{torch key: (collection, Flax path, Flax shape)} of `arch` (computed once per architecture)."""
  from rnl_jax.models import build_model  # pylint: disable=g-import-not-at-top

  return convert.key_map(convert.abstract_variables(build_model(arch, dropout=0.0)), arch)


def flax_value(variables_or_grads, arch, torch_key):
  """The Flax leaf (or gradient) that corresponds to a PyTorch state_dict key, in Flax layout."""
  col, path, _ = _key_map(arch)[torch_key]
  tree = variables_or_grads[col] if col in variables_or_grads else variables_or_grads
  return lookup(tree, path)


def torch_in_flax_layout(arch, torch_key, value):
  return convert.torch_to_flax(torch_key, value, _key_map(arch)[torch_key][2])


def rel_l2(a, b):
  a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def cosine(a, b):
  a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
  return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
