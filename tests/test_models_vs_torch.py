"""Flax model vs the PyTorch reference (tests/torch_reference.py, itself checked against the original's
fixture in test_torch_reference.py) on random small configurations, eval and train mode."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import parity_utils as pu
from rnl_jax import convert
from rnl_jax.models import Architecture, build_model
import torch_reference as tr

torch.set_num_threads(2)

# (depth, T, size, variant, shift_place, query_chunk)
EVAL_CASES = [
    (18, 4, 64, 'rnl', 'blockres', None),
    (18, 1, 96, 'rnl', 'blockres', 50),
    (18, 16, 64, 'rnl', 'blockres', 100),
    (18, 2, 256, 'rnl', 'blockres', 1024),
    (18, 4, 64, 'tsn', None, None),
    (34, 4, 64, 'rnl', 'block', None),
    (50, 4, 64, 'rnl', 'blockres', None),
    (50, 8, 128, 'tsm', 'blockres', None),
    (101, 2, 64, 'tsm', 'blockres', None),
]


def reference(depth, t, variant, shift_place, num_classes=11, seed=0, probe=64):
  shift = variant != 'tsn'
  model = tr.build_tsn(
      num_classes,
      t,
      depth=depth,
      shift=shift,
      shift_place=shift_place or 'blockres',
      non_local=variant == 'rnl',
  )
  tr.randomize_(model, seed, probe_size=probe)
  sd = {k: v.numpy() for k, v in model.state_dict().items()}
  variables, arch = convert.convert_state_dict(sd)
  assert arch == Architecture(
      num_classes, depth, shift_place if shift else None, non_local=variant == 'rnl'
  )
  return model, variables, arch


def clips(n, t, size, seed):
  return np.random.default_rng(seed).normal(size=(n, t, size, size, 3)).astype(np.float32)


@pytest.mark.parametrize('depth,t,size,variant,shift_place,chunk', EVAL_CASES)
def test_eval_matches_reference(depth, t, size, variant, shift_place, chunk):
  model, variables, arch = reference(depth, t, variant, shift_place)
  x = clips(2, t, size, seed=depth + t)
  model.eval()
  with torch.no_grad():
    ref_logits = model(tr.to_torch_input(x)).numpy()
    ref_features = model.features(tr.to_torch_input(x)).numpy()
  logits, features = pu.eval_logits_and_features(build_model(arch, query_chunk=chunk), variables, x)
  scale = np.abs(ref_logits).max()
  np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-4 * max(scale, 1))
  np.testing.assert_allclose(
      features, ref_features, rtol=1e-4, atol=1e-4 * max(np.abs(ref_features).max(), 1)
  )


# chunk 64 at T = 8, 64 px: M = 8 x 16 x 16 = 2048 at layer 2 (32 tiles), 512 at layer 3 (8 tiles)
@pytest.mark.parametrize(
    'depth,t,size,chunk,method',
    [
        (18, 4, 64, None, 'auto'),
        (18, 8, 64, 64, 'tiled'),
        (18, 8, 64, 64, 'chunked'),
        (50, 2, 64, None, 'auto'),
    ],
)
def test_train_step_matches_reference_float64(depth, t, size, chunk, method):
  """Loss, logits, every gradient and every BN running statistic after one train forward.

  In float64 on both sides: in float32, train-mode BN (the gate's over 4 clips) amplifies rounding to
  ~0.5% in the early layers' gradients, which would hide real errors of that size; in float64 the two
  implementations agree to ~1e-13.
  """
  model, variables, arch = reference(depth, t, 'rnl', 'blockres')
  model = model.double().train()
  x, labels = clips(4, t, size, seed=7).astype(np.float64), np.array([1, 5, 0, 10])
  logits_t = model(tr.to_torch_input(x))
  loss_t = torch.nn.functional.cross_entropy(logits_t, torch.from_numpy(labels))
  loss_t.backward()
  with jax.enable_x64(True):
    variables = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
    loss, logits, grads, stats = pu.train_step_check(
        build_model(
            arch, dropout=0.0, query_chunk=chunk, train_attention=method, dtype=jnp.float64
        ),
        variables,
        x,
        labels,
    )
    grads, stats = jax.tree.map(np.asarray, (grads, stats))
  np.testing.assert_allclose(loss, loss_t.item(), rtol=1e-10)
  np.testing.assert_allclose(logits, logits_t.detach().numpy(), rtol=1e-9, atol=1e-10)
  kmap = convert.key_map({'params': grads, 'batch_stats': stats}, arch)
  checked = 0
  for name, p in model.named_parameters():
    if p.grad is None:
      continue
    ours = pu.lookup(grads, kmap[name][1])
    assert ours.dtype == np.float64
    ref = convert.torch_to_flax(name, p.grad.numpy(), kmap[name][2])
    # relative L2, with an absolute floor for gradients that are zero in exact arithmetic
    # (biases right before a BatchNorm; the gate's W_k bias, as softmax is shift-invariant)
    assert np.linalg.norm(ours - ref) <= 1e-9 * np.linalg.norm(ref) + 1e-13, name
    checked += 1
  assert checked == len(jax.tree.leaves(grads))
  for name, buf in model.named_buffers():
    if name.endswith(('running_mean', 'running_var')):
      np.testing.assert_allclose(
          pu.lookup(stats, kmap[name][1]), buf.numpy(), rtol=1e-10, atol=1e-12, err_msg=name
      )


def test_uint8_input_switch():
  _, variables, arch = reference(18, 2, 'rnl', 'blockres')
  pixels = np.random.default_rng(3).integers(0, 256, size=(2, 2, 64, 64, 3), dtype=np.uint8)
  normalised = (
      pixels.astype(np.float32) / 255 - np.array([0.485, 0.456, 0.406], np.float32)
  ) / np.array([0.229, 0.224, 0.225], np.float32)
  a = build_model(arch, normalize_input=True).apply(variables, pixels)
  b = build_model(arch).apply(variables, normalised)
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_bfloat16_compute_keeps_float32_params():
  _, variables, arch = reference(18, 4, 'rnl', 'blockres')
  x = clips(2, 4, 64, seed=1)
  # jitted: op-by-op application compiles every op of the network separately
  f32 = np.asarray(jax.jit(build_model(arch).apply)(variables, x))
  model16 = build_model(arch, dtype=jnp.bfloat16)
  fresh = jax.jit(model16.init)(jax.random.PRNGKey(0), x)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(fresh))
  bf16 = np.asarray(jax.jit(model16.apply)(variables, x))
  assert bf16.dtype == np.float32 and np.corrcoef(bf16.ravel(), f32.ravel())[0, 1] > 0.95


def test_fresh_rnl_equals_fresh_tsm():
  """Zero-initialised NL output BN and gate W_v2 make a fresh RNL model compute its TSM backbone."""
  x = clips(2, 4, 64, seed=2)
  rnl = build_model(Architecture(7, 18, non_local=True), dropout=0.0)
  tsm = build_model(Architecture(7, 18, non_local=False), dropout=0.0)
  v_rnl = rnl.init(jax.random.PRNGKey(0), x)
  v_tsm = tsm.init(jax.random.PRNGKey(1), x)
  pretrained = {'params': v_tsm['params'], 'batch_stats': v_tsm['batch_stats']}
  # copy the TSM weights into the RNL model; its NL/gate parts keep their fresh init
  merged = convert.merge_pretrained({k: v_rnl[k] for k in ('params', 'batch_stats')}, pretrained)
  for train in (False, True):
    a = rnl.apply(merged, x, train=train, mutable=['batch_stats'])[0]
    b = tsm.apply(pretrained, x, train=train, mutable=['batch_stats'])[0]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
