"""Tests that tests/torch_reference.py reproduces the original RNL TSN (via the parity fixture).

The fixture lives in ``tests/data/parity/k400_8f`` (rebuilt by ``parity_fixture.py``).
Its reference outputs were computed by upstream ``ops.models.TSN``; tolerances follow docs/parity.md.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import parity_fixture  # noqa: E402
import torch_reference as tr  # noqa: E402

FIXTURE_DIR = parity_fixture.fixture_dir("k400_8f")

torch.set_num_threads(2)


def _rel_l2(a, b):
  return float(np.linalg.norm((a - b).ravel()) / np.linalg.norm(b.ravel()))


def _cosine(a, b):
  a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
  return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# --------------------------------------------------------------------------------------------------
# Fixture parity (full ResNet-50, T=8, 2 clips of 224x224)
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fixture():
  """spec, rebuilt state-dict arrays (``module.`` stripped) and inputs; built once per module."""
  spec = parity_fixture.load_spec("k400_8f")
  arrays = {k.removeprefix("module."): v for k, v in parity_fixture.state_dict(spec).items()}
  return {"spec": spec, "arrays": arrays, "inputs": parity_fixture.inputs(spec)}


def _loaded_model(fixture):
  model = tr.build_tsn(400, 8, dropout=0.0)
  tr.load_fixture_state_dict(model, fixture["arrays"], strict=True)
  return model


def test_state_dict_layout_matches_upstream(fixture):
  model = tr.build_tsn(400, 8)
  expected = [
      (k.removeprefix("module."), tuple(e["shape"]), e["dtype"])
      for k, e in fixture["spec"]["state_dict"].items()
  ]
  got = [
      (k, tuple(v.shape), str(v.dtype).removeprefix("torch."))
      for k, v in model.state_dict().items()
  ]
  assert got == expected
  # Masks are frozen parameters (counted by parameters(), no grad), as upstream.
  n_params = sum(p.numel() for p in model.parameters())
  n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
  assert n_params == 35_747_025
  assert n_trainable == fixture["spec"]["checkpoint_info"]["trainable_params"] == 32_011_473


def test_eval_logits_and_features_match_upstream(fixture):
  model = _loaded_model(fixture).eval()
  feats = []
  hook = model.base_model.avgpool.register_forward_hook(lambda m, i, o: feats.append(o.flatten(1)))
  with torch.no_grad():
    logits = model(tr.to_torch_input(fixture["inputs"]["input"])).numpy()
  hook.remove()
  ref_logits = np.load(FIXTURE_DIR / "logits.npy")
  ref_feats = np.load(FIXTURE_DIR / "features_prefc.npy")
  np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(feats[0].numpy(), ref_feats, rtol=1e-4, atol=1e-4)


def test_train_step_matches_upstream(fixture):
  """One train-mode forward/backward (docs/parity.md: train-mode check)."""
  model = _loaded_model(fixture).train()
  labels = np.load(FIXTURE_DIR / "train" / "labels.npy")
  logits = model(tr.to_torch_input(fixture["inputs"]["train_input"]))
  loss = torch.nn.CrossEntropyLoss()(logits, torch.from_numpy(labels))
  loss.backward()

  assert abs(loss.item() - float(np.load(FIXTURE_DIR / "train" / "loss.npy"))) <= 5e-4
  np.testing.assert_allclose(
      logits.detach().numpy(),
      np.load(FIXTURE_DIR / "train" / "train_logits.npy"),
      rtol=5e-4,
      atol=5e-4,
  )

  modules = dict(model.named_modules())
  for name in ("base_model.bn1", "base_model.layer2.0.nl.W.1", "base_model.layer2.0.cg.bn1"):
    bn = modules[name]
    assert int(bn.num_batches_tracked) == 1
    for stat in ("running_mean", "running_var"):
      ref = np.load(FIXTURE_DIR / "train" / "bn_after" / f"{name}.{stat}.npy")
      np.testing.assert_allclose(
          getattr(bn, stat).numpy(), ref, rtol=1e-4, atol=1e-4, err_msg=f"{name}.{stat}"
      )

  params = dict(model.named_parameters())
  grad_files = sorted((FIXTURE_DIR / "train" / "grads").glob("*.npy"))
  assert len(grad_files) == 7
  for path in grad_files:
    name = path.name.removesuffix(".npy")
    ref, got = np.load(path), params[name].grad.numpy()
    assert got.shape == ref.shape, name
    if name == "new_fc.weight":
      assert _rel_l2(got, ref) <= 1e-3, name
    else:
      assert _rel_l2(got, ref) <= 0.2, name
      assert _cosine(got, ref) >= 0.98, name
  assert params["base_model.layer2.0.nl.penta.mask"].grad is None


# --------------------------------------------------------------------------------------------------
# Fast structural tests on a tiny config (ResNet-18, T=4, 64 px)
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
  return tr.randomize_(tr.build_tsn(10, 4, depth=18, non_local=True), seed=0).eval()


def test_masked_penta_equals_true_depthwise(tiny):
  for site, (cp, groups) in {"layer2": (64, 2), "layer3": (128, 4)}.items():
    penta = getattr(tiny.base_model, site)[0].nl.penta
    g = cp // groups
    assert penta.groups == groups and penta.weight.shape[:2] == (cp, g)
    assert not penta.mask.requires_grad
    mask = penta.mask.detach()
    assert float(mask.sum()) == cp * np.prod(penta.kernel_size)
    x = torch.randn(2, cp, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    # Also with random values in the off-mask entries: the mask must remove them.
    full = penta.weight.detach() + (1 - mask) * torch.randn(penta.weight.shape)
    for w in (penta.weight.detach(), full):
      kernel = torch.stack([w[o, o % g] for o in range(cp)]).unsqueeze(1)  # [C', 1, kt, kh, kw]
      with torch.no_grad():
        penta.weight.copy_(w)
        got = penta(x)
      want = F.conv3d(x, kernel, padding=penta.padding, groups=cp)
      torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
      penta.weight.mul_(mask)


def test_shift_matches_explicit_loop():
  n, t, c, h, w = 2, 4, 16, 3, 3
  x = torch.randn(n * t, c, h, w, generator=torch.Generator().manual_seed(0))
  fold = c // 8
  want = torch.zeros(n, t, c, h, w)
  xv = x.view(n, t, c, h, w)
  for b in range(n):
    for f in range(t):
      for ch in range(c):
        if ch < fold:
          want[b, f, ch] = xv[b, f + 1, ch] if f + 1 < t else 0.0
        elif ch < 2 * fold:
          want[b, f, ch] = xv[b, f - 1, ch] if f >= 1 else 0.0
        else:
          want[b, f, ch] = xv[b, f, ch]
  assert torch.equal(tr.temporal_shift(x, t, 8), want.view(n * t, c, h, w))


def test_blockres_shifts_conv1_input_only(tiny):
  block = tiny.base_model.layer1[0]
  seen = {}
  h1 = block.register_forward_pre_hook(lambda m, a: seen.__setitem__("block_in", a[0].clone()))
  h2 = block.conv1.net.register_forward_pre_hook(
      lambda m, a: seen.__setitem__("conv1_in", a[0].clone())
  )
  with torch.no_grad():
    tiny(torch.randn(2, 12, 64, 64))
  h1.remove(), h2.remove()
  assert torch.equal(seen["conv1_in"], tr.temporal_shift(seen["block_in"], 4, 8))


def test_tiny_forward_and_randomize(tiny):
  x = torch.randn(2, 12, 64, 64, generator=torch.Generator().manual_seed(2))
  with torch.no_grad():
    logits, feats = tiny(x), tiny.features(x)
  assert logits.shape == (2, 10) and feats.shape == (8, 512)
  assert torch.isfinite(logits).all() and 0.05 < float(feats.std()) < 50
  # Consensus = mean over T of the per-frame logits.
  torch.testing.assert_close(logits, tiny.new_fc(feats).view(2, 4, 10).mean(1))
  # randomize_ is deterministic and leaves no zero (except the mask and masked-off penta entries).
  other = tr.randomize_(tr.build_tsn(10, 4, depth=18, non_local=True), seed=0)
  for (k, a), b in zip(tiny.state_dict().items(), other.state_dict().values()):
    assert torch.equal(a, b), k
    if a.is_floating_point() and "penta" not in k:
      assert bool((a != 0).all()), k
    if k.endswith("running_var"):
      assert bool((a > 0).all()), k


def test_nl_matches_query_key_formulation(tiny):
  """docs/original.md §1.6: logits[j, i] = <P_j, P_i>, softmax over i, Y = S @ theta."""
  nl = tiny.base_model.layer3[0].nl
  v = torch.randn(2, 256, 4, 4, 4, generator=torch.Generator().manual_seed(3))
  with torch.no_grad():
    theta = nl.theta(v).flatten(2).transpose(1, 2)  # [N, M, C']
    p = nl.penta(nl.theta(v)).flatten(2).transpose(1, 2)  # [N, M, C']
    y = torch.softmax(p @ p.transpose(1, 2), dim=-1) @ theta
    want = nl.W(y.transpose(1, 2).reshape(2, -1, 4, 4, 4)) + v
    torch.testing.assert_close(nl(v), want, rtol=1e-4, atol=1e-4)


def test_key_layouts_for_other_configs():
  keys18 = tr.build_tsn(10, 4, depth=18).state_dict().keys()
  assert "base_model.layer1.0.conv1.net.weight" in keys18
  assert "base_model.layer1.0.downsample.0.weight" not in keys18
  assert "base_model.layer2.0.cg.W_k.weight" in keys18
  assert "base_model.layer2.0.nl.penta.weight" in keys18
  assert "base_model.layer3.0.nl.theta.weight" in keys18
  assert not any(
      k.startswith(("base_model.layer2.1.nl", "base_model.layer4.0.nl", "base_model.fc"))
      for k in keys18
  )

  keys_block = tr.build_tsn(10, 4, depth=50, shift_place="block").state_dict().keys()
  assert "base_model.layer1.0.net.conv1.weight" in keys_block
  assert "base_model.layer2.0.block.net.conv1.weight" in keys_block
  assert "base_model.layer2.1.net.conv1.weight" in keys_block

  keys101 = tr.build_tsn(10, 4, depth=101).state_dict().keys()
  assert "base_model.layer3.0.block.conv1.net.weight" in keys101
  assert "base_model.layer3.1.conv1.weight" in keys101
  assert "base_model.layer3.22.conv1.net.weight" in keys101
  assert "base_model.layer4.1.conv1.weight" in keys101
  assert "base_model.layer3.4.nl.W.1.running_var" in keys101
  assert "base_model.layer3.6.nl.theta.weight" not in keys101

  plain = tr.build_tsn(10, 4, shift=False, non_local=False).state_dict().keys()
  assert "base_model.layer2.0.conv1.weight" in plain and not any(".nl." in k for k in plain)
