"""Optimiser groups, the optax chain vs torch.optim.SGD, and the learning-rate schedules."""

import math

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from rnl_jax import Architecture, build_model, optim
from rnl_jax.models.tsn import abstract_variables


@pytest.fixture(scope='module')
def r50_params():
  model = build_model(Architecture.from_variant('rnl', num_classes=400, depth=50))
  return abstract_variables(model)['params']


def _flat(tree):
  return {'/'.join(k): v for k, v in flax.traverse_util.flatten_dict(tree).items()}


def test_original_groups_of_rnl_r50(r50_params):
  """docs/original.md §5.2, including the non-local grouping accident (7.4)."""
  groups = _flat(optim.param_groups(r50_params))
  by_group = {}
  for name, g in groups.items():
    by_group.setdefault(g, []).append(name)
  assert by_group['first_conv_weight'] == ['base_model/conv1/kernel']
  assert sorted(by_group['lr5_weight']) == ['new_fc/kernel']
  assert sorted(by_group['lr10_bias']) == ['new_fc/bias']
  assert sorted(n.split('/')[-2] + '/' + n.split('/')[-1] for n in by_group['normal_bias']) == [
      'W_k/bias',
      'W_v1/bias',
      'W_v2/bias',
  ]
  assert len(by_group['nl_weight']) == 5 * 3 and len(by_group['nl_bias']) == 5 * 4
  blk = 'base_model/layer3_2/nl/'
  assert groups[blk + 'penta/kernel'] == 'nl_bias'  # the accident: lr x2, no decay
  assert groups[blk + 'W_1/scale'] == 'nl_weight'  # ... and a weight-decayed BN scale
  assert groups[blk + 'W_1/bias'] == 'nl_bias'
  assert groups[blk + 'theta/kernel'] == 'nl_weight' and groups[blk + 'theta/bias'] == 'nl_bias'
  assert groups['base_model/layer2_0/cg/bn1/scale'] == 'bn'
  assert groups['base_model/layer2_0/downsample_1/bias'] == 'bn'
  assert groups['base_model/layer2_0/downsample_0/kernel'] == 'normal_weight'
  convs = [n for n in groups if n.endswith('kernel') and '/nl/' not in n and 'new_fc' not in n]
  assert len(by_group['normal_weight']) == len(convs) - 1  # every conv but the first
  assert 'first_conv_bias' not in by_group


def test_clean_grouping_and_fine_tuning(r50_params):
  groups = _flat(optim.param_groups(r50_params, 'clean', fc_lr5=False))
  blk = 'base_model/layer2_0/nl/'
  assert groups[blk + 'penta/kernel'] == 'normal_weight'
  assert groups[blk + 'W_1/scale'] == 'bn' and groups[blk + 'W_1/bias'] == 'bn'
  assert groups[blk + 'theta/bias'] == 'normal_bias'
  assert groups['new_fc/kernel'] == 'normal_weight' and groups['new_fc/bias'] == 'normal_bias'
  with pytest.raises(ValueError, match='grouping must be one of'):
    optim.param_groups(r50_params, 'tidy')


def test_chain_matches_torch_sgd_with_groups():
  """Three steps of our chain == torch.optim.SGD(groups, momentum, weight_decay) + clip_grad_norm_."""
  rng = np.random.default_rng(0)
  params = {
      'base_model': {
          'conv1': {'kernel': rng.normal(size=(3, 3, 2, 4))},
          'bn1': {'scale': rng.normal(size=4), 'bias': rng.normal(size=4)},
          'layer2_0': {
              'nl': {
                  'penta': {'kernel': rng.normal(size=(3, 3, 3, 1, 4))},
                  'W_1': {'scale': rng.normal(size=4), 'bias': rng.normal(size=4)},
              }
          },
      },
      'new_fc': {'kernel': rng.normal(size=(4, 5)), 'bias': rng.normal(size=5)},
  }
  grads = [jax.tree.map(lambda p: rng.normal(size=p.shape) * 3, params) for _ in range(3)]
  lrs = [0.1, 0.05, 0.02]
  lr, wd, clip = 0.1, 1e-2, 2.0
  tx = optim.sgd(
      params, lambda s: jnp.asarray(lrs)[s], momentum=0.9, weight_decay=wd, clip_grad_norm=clip
  )
  jparams = jax.tree.map(jnp.asarray, params)
  state = tx.init(jparams)
  for g in grads:
    updates, state = tx.update(jax.tree.map(jnp.asarray, g), state, jparams)
    jparams = optax.apply_updates(jparams, updates)

  labels = _flat(optim.param_groups(params))
  flat = _flat(params)
  tparams = {k: torch.tensor(v, requires_grad=True) for k, v in flat.items()}
  torch_groups = {}
  for k, g in labels.items():
    torch_groups.setdefault(g, []).append(tparams[k])
  opt = torch.optim.SGD(
      [
          {
              'params': ps,
              'lr': lr * optim.GROUPS[g][0],
              'weight_decay': wd * optim.GROUPS[g][1],
              'name': g,
          }
          for g, ps in torch_groups.items()
      ],
      lr=lr,
      momentum=0.9,
      weight_decay=wd,
  )
  for step, g in enumerate(grads):
    for k, t in tparams.items():
      t.grad = torch.tensor(_flat(g)[k])
    torch.nn.utils.clip_grad_norm_(list(tparams.values()), clip)
    for group in opt.param_groups:
      group['lr'] = lrs[step] * optim.GROUPS[group['name']][0]
    opt.step()
  for k, v in _flat(jparams).items():
    np.testing.assert_allclose(
        np.asarray(v), tparams[k].detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=k
    )


def _reference_lr(tau, epoch, lr, schedule, num_epochs, warmup, steps):
  """docs/original.md §5.3, literally."""
  if schedule == 'step':
    return lr * 0.1 ** sum(epoch > s for s in steps)
  if warmup and tau < warmup:
    return lr / 10 + tau / warmup * (lr - lr / 10)
  return 0.5 * lr * (1 + math.cos(math.pi * (tau - warmup) / (num_epochs - warmup)))


@pytest.mark.parametrize('schedule,warmup', [('cos', 5), ('cos', 0), ('step', 0)])
def test_lr_schedule_follows_the_per_micro_batch_formula(schedule, warmup):
  lr, num_epochs, per_epoch, m = 0.02, 50, 40, 4  # L = 40 micro-batches, 10 steps per epoch
  fn = optim.lr_schedule(
      lr,
      schedule=schedule,
      num_epochs=num_epochs,
      warmup_epochs=warmup,
      lr_steps=(20, 40),
      micro_batches_per_epoch=per_epoch,
      batch_multiplier=m,
  )
  for step in [0, 1, 9, 10, 11, 49, 50, 199, 200, 201, 399, 400, 401, 499]:
    micro = (step + 1) * m - 1  # 0-based index of its last micro-batch
    tau = micro / per_epoch
    expected = _reference_lr(tau, int(tau) + 1, lr, schedule, num_epochs, warmup, (20, 40))
    assert float(fn(step)) == pytest.approx(expected, rel=1e-5, abs=1e-9), step


def test_linear_scaling():
  assert optim.scaled_lr(0.02, 128) == pytest.approx(0.04)
  assert optim.scaled_lr(0.02, 8) == pytest.approx(0.0025)
