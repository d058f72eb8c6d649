"""The original's optimiser (docs/original.md §5.2-5.4) as an optax chain, and its LR schedules.

Update of one optimizer step, as PyTorch's SGD with the original's parameter groups does it:

    g <- clip_by_global_norm(g, 20)              # before weight decay, over all gradients
    g <- g + wd * decay_mult * p                 # classic L2 decay, added to the gradient
    buf <- momentum * buf + g                    # buf = g on the first step
    p <- p - lr(step) * lr_mult * buf

`param_groups` assigns each parameter its group by the original's rules (`TSN.get_optim_policies`).
grouping='original' (default) keeps the upstream accident (docs/original.md §7.4): in the region
non-local blocks the first parameter of every module goes to `nl_weight` and the second to `nl_bias`,
so the depthwise region kernel gets lr x2 and no decay, and the output BN scale is weight-decayed.
grouping='clean' treats those like every other conv / BN parameter.

The learning rate is a function of the fractional epoch tau reached at the optimizer step's last
micro-batch, as the original refreshes it every micro-batch: tau(s) = ((s + 1) * M - 1) / L for
optimizer step s (0-based), M micro-batches per step and L micro-batches per epoch.
"""

import math

import flax
import jax
import optax

# group -> (lr multiplier, weight-decay multiplier)   (docs/original.md §5.2)
GROUPS = {
    'first_conv_weight': (1, 1),
    'first_conv_bias': (2, 0),
    'normal_weight': (1, 1),
    'normal_bias': (2, 0),
    'bn': (1, 0),
    'nl_weight': (1, 1),
    'nl_bias': (2, 0),
    'lr5_weight': (5, 1),
    'lr10_bias': (10, 0),
}
GROUPINGS = ('original', 'clean')
SCHEDULES = ('cos', 'step')

# Upstream's order of the parameters inside each region non-local sub-module (first -> nl_weight).
_NL_FIRST = {('theta', 'kernel'), ('W_0', 'kernel'), ('W_1', 'scale')}
_NL_SECOND = {('theta', 'bias'), ('W_0', 'bias'), ('W_1', 'bias'), ('penta', 'kernel')}


def _group(path, siblings, grouping, fc_lr5):
  """Group name of the parameter at `path` (tuple of names); `siblings` = names in its module."""
  leaf = path[-1]
  is_bn = 'scale' in siblings
  if path[0] == 'new_fc':
    if fc_lr5:
      return 'lr5_weight' if leaf == 'kernel' else 'lr10_bias'
    return 'normal_weight' if leaf == 'kernel' else 'normal_bias'
  if 'nl' in path:
    key = path[-2:]
    if grouping == 'original':
      if key in _NL_FIRST:
        return 'nl_weight'
      if key in _NL_SECOND:
        return 'nl_bias'
      raise ValueError(f'unexpected non-local parameter {"/".join(path)}')
  if is_bn:
    return 'bn'
  if path[-2:] == ('conv1', 'kernel') and path[:-2] == ('base_model',):
    return 'first_conv_weight'
  if leaf == 'kernel':
    return 'normal_weight'
  if leaf == 'bias':
    return 'normal_bias'
  raise ValueError(f'cannot place parameter {"/".join(path)} in an optimiser group')


def param_groups(params, grouping='original', fc_lr5=True):
  """A pytree like `params` holding each parameter's group name (a key of GROUPS)."""
  if grouping not in GROUPINGS:
    raise ValueError(f'grouping must be one of {GROUPINGS}, got {grouping!r}')
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params))
  modules = {}
  for path in flat:
    modules.setdefault(path[:-1], set()).add(path[-1])
  labels = {path: _group(path, modules[path[:-1]], grouping, fc_lr5) for path in flat}
  return flax.traverse_util.unflatten_dict(labels)


def sgd(
    params,
    learning_rate,
    *,
    momentum=0.9,
    weight_decay=0.0,
    clip_grad_norm=20.0,
    grouping='original',
    fc_lr5=True,
):
  """The original's SGD (see the module docstring) for `params`' tree structure.

  learning_rate: float or optax schedule of the optimizer step count.
  clip_grad_norm: global-norm bound (None or <= 0: no clipping).
  """
  labels = param_groups(params, grouping, fc_lr5)
  decay_mask = jax.tree.map(lambda g: GROUPS[g][1] > 0, labels)
  lr_labels = jax.tree.map(lambda g: GROUPS[g][0], labels)
  multipliers = sorted({GROUPS[g][0] for g in GROUPS})
  return optax.chain(
      optax.clip_by_global_norm(clip_grad_norm) if clip_grad_norm else optax.identity(),
      optax.add_decayed_weights(weight_decay, mask=decay_mask),
      optax.trace(decay=momentum, nesterov=False),
      optax.scale_by_learning_rate(learning_rate),
      optax.multi_transform({m: optax.scale(float(m)) for m in multipliers}, lr_labels),
  )


def scaled_lr(base_lr, batch_size, reference_batch=64):
  """Linear scaling rule: base_lr is the lr for `reference_batch` clips per optimizer step."""
  return base_lr * batch_size / reference_batch


def lr_schedule(
    lr,
    *,
    schedule='cos',
    num_epochs,
    warmup_epochs=0.0,
    lr_steps=(20, 40),
    micro_batches_per_epoch,
    batch_multiplier=1,
):
  """lr(optimizer step) of the original (docs/original.md §5.3), evaluated at tau of the step's last micro-batch.

  cos: linear warmup from lr/10 to lr over `warmup_epochs`, then half-cosine to 0 at `num_epochs`.
  step: lr * 0.1 ** (number of lr_steps epochs completed), no warmup (as upstream).
  """
  if schedule not in SCHEDULES:
    raise ValueError(f'schedule must be one of {SCHEDULES}, got {schedule!r}')
  per_epoch = float(micro_batches_per_epoch)  # L
  if schedule == 'cos':
    if not 0 <= warmup_epochs < num_epochs:
      raise ValueError(f'warmup_epochs={warmup_epochs} must lie in [0, num_epochs={num_epochs})')
    if warmup_epochs > 0:
      inner = optax.warmup_cosine_decay_schedule(
          lr / 10,
          lr,
          warmup_steps=warmup_epochs * per_epoch,
          decay_steps=num_epochs * per_epoch,
          end_value=0.0,
      )
    else:
      inner = optax.cosine_decay_schedule(lr, decay_steps=num_epochs * per_epoch)
  else:
    inner = optax.piecewise_constant_schedule(
        lr, {int(math.ceil(s * per_epoch)): 0.1 for s in sorted(lr_steps)}
    )
  m = int(batch_multiplier)
  return lambda step: inner((step + 1) * m - 1)
