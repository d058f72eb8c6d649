"""Converter: depthwise extraction, architecture inference, strictness, and its error messages."""

import functools
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import torch

from conftest import REPO
import convert_torch_weights  # the converter CLI (repo root); owns convert_to_directory
from rnl_jax import checkpoint, convert
from rnl_jax.models import Architecture, build_model
import torch_reference as tr


@functools.lru_cache(maxsize=None)
def _small_state_dict(depth, non_local, shift_place, num_classes, shift):
  model = tr.build_tsn(
      num_classes, 4, depth=depth, shift=shift, shift_place=shift_place, non_local=non_local
  )
  return {k: v.numpy() for k, v in model.state_dict().items()}


def small_state_dict(depth=18, non_local=True, shift_place='blockres', num_classes=5, shift=True):
  """A reference model's state_dict (a fresh copy: tests may edit it)."""
  return dict(_small_state_dict(depth, non_local, shift_place, num_classes, shift))


def test_penta_becomes_true_depthwise_kernel():
  rng = np.random.default_rng(0)
  inner, g = 64, 32
  w = rng.normal(size=(inner, g, 3, 7, 7)).astype(np.float32)  # off-mask entries random too
  k = convert.torch_to_flax('x.nl.penta.weight', w, (3, 7, 7, 1, inner))
  for o in range(inner):
    np.testing.assert_array_equal(k[..., 0, o], w[o, o % g])


def test_conv_and_dense_layouts():
  w = np.arange(2 * 3 * 5 * 7, dtype=np.float32).reshape(2, 3, 5, 7)  # OIHW
  np.testing.assert_array_equal(
      convert.torch_to_flax('a.weight', w, (5, 7, 3, 2)), w.transpose(2, 3, 1, 0)
  )
  lin = np.arange(6, dtype=np.float32).reshape(2, 3)  # Linear [out, in]
  np.testing.assert_array_equal(convert.torch_to_flax('b.weight', lin, (3, 2)), lin.T)
  conv3d = lin.reshape(2, 3, 1, 1, 1)  # 1x1x1 Conv3d
  np.testing.assert_array_equal(convert.torch_to_flax('c.weight', conv3d, (3, 2)), lin.T)


@pytest.mark.parametrize(
    'depth,non_local,shift,place',
    [
        (18, True, True, 'blockres'),
        (34, False, True, 'blockres'),
        (50, False, True, 'blockres'),
        (50, True, True, 'block'),
        (18, False, False, 'blockres'),
        (101, False, True, 'blockres'),
    ],
)
def test_architecture_inferred_from_keys(depth, non_local, shift, place):
  sd = small_state_dict(depth, non_local, place, shift=shift)
  arch = convert.infer_architecture(sd)
  assert arch == Architecture(5, depth, place if shift else None, 8, non_local)
  variables, _ = convert.convert_state_dict(sd, arch)
  n_params = sum(x.size for x in jax.tree.leaves(variables['params']))
  masks_and_off_diagonal = sum(
      v.size - v.shape[0] * np.prod(v.shape[2:])
      for k, v in sd.items()
      if k.endswith('penta.weight')
  )
  counted = sum(
      v.size
      for k, v in sd.items()
      if not k.endswith(('running_mean', 'running_var', 'num_batches_tracked', 'penta.mask'))
  )
  assert n_params == counted - masks_and_off_diagonal


def test_resnet101_shifts_every_other_block():
  sd = small_state_dict(101, False)
  assert 'base_model.layer3.0.conv1.net.weight' in sd and 'base_model.layer3.1.conv1.weight' in sd
  convert.convert_state_dict(sd)  # strict: would fail if the Flax model shifted block 1


def test_missing_extra_and_misshaped_keys_are_named(parity_state_dict):
  sd = dict(parity_state_dict)
  key = 'base_model.layer3.2.block.conv2.weight'
  del sd[key]
  with pytest.raises(convert.ConversionError, match=f'missing key {key}'):
    convert.convert_state_dict(sd)
  sd = dict(parity_state_dict, **{'base_model.layer2.0.nl.extra.weight': np.zeros(3, np.float32)})
  with pytest.raises(
      convert.ConversionError, match='unexpected key base_model.layer2.0.nl.extra.weight'
  ):
    convert.convert_state_dict(sd)
  sd = dict(parity_state_dict)
  sd['base_model.layer1.1.conv2.weight'] = np.zeros((64, 64, 1, 1), np.float32)
  with pytest.raises(
      convert.ConversionError,
      match=r'base_model.layer1.1.conv2.weight has shape \(64, 64, 1, 1\), '
      r'expected \(64, 64, 3, 3\)',
  ):
    convert.convert_state_dict(sd)
  sd = dict(parity_state_dict)
  key = 'base_model.layer3.4.nl.penta.mask'
  sd[key] = np.ones_like(sd[key])
  with pytest.raises(
      convert.ConversionError, match=f'{key} is not the original fixed diagonal mask'
  ):
    convert.convert_state_dict(sd)


def test_unknown_architectures_are_refused():
  with pytest.raises(convert.ConversionError, match='unknown architecture'):
    convert.infer_architecture({'encoder.weight': np.zeros(3)})
  sd = small_state_dict(18, False)
  sd = {k: v for k, v in sd.items() if not k.startswith('base_model.layer4.1.')}
  with pytest.raises(convert.ConversionError, match=r'blocks per stage \(2, 2, 2, 1\)'):
    convert.infer_architecture(sd)


def test_rnl_resnet101_is_refused():
  sd = small_state_dict(101, False)
  sd['base_model.layer2.0.nl.theta.weight'] = np.zeros((256, 512, 1, 1, 1), np.float32)
  with pytest.raises(convert.ConversionError, match='RNL ResNet-101'):
    convert.infer_architecture(sd)


def test_not_a_checkpoint(tmp_path):
  path = tmp_path / 'notes.pth.tar'
  path.write_text('this is not a checkpoint\n')
  with pytest.raises(convert.ConversionError, match=f'{path}: not a PyTorch checkpoint'):
    convert.load_torch_state_dict(str(path))


class _Payload:

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f'touch {self.marker}',))


def test_pickle_with_code_payload_is_refused(tmp_path):
  path, marker = tmp_path / 'evil.pth.tar', tmp_path / 'pwned'
  torch.save({'state_dict': {'a': torch.zeros(1)}, 'x': _Payload(marker)}, path)
  with pytest.raises(
      convert.ConversionError,
      match=r'refused by torch.load\(weights_only=True\): the pickle imports posix.system',
  ):
    convert.load_torch_state_dict(str(path))
  assert not marker.exists()


def test_cli_error_is_one_line(tmp_path):
  bad = tmp_path / 'bad.pth.tar'
  bad.write_bytes(b'\x00\x01garbage')
  proc = subprocess.run(
      [sys.executable, str(REPO / 'convert_torch_weights.py'), str(bad), str(tmp_path / 'out')],
      capture_output=True,
      text=True,
      cwd=REPO,
  )
  assert proc.returncode == 2
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith(f'error: {bad}: not a PyTorch checkpoint ('), lines
  assert not (tmp_path / 'out').exists()


def test_module_prefix_and_shift_div_from_name(tmp_path):
  model = tr.build_tsn(7, 4, depth=18, non_local=False, shift_div=4)
  path = tmp_path / 'TSM_ucf101_RGB_resnet18_shift4_blockres_avg_segment4_e25.pth.tar'
  torch.save(
      {'epoch': 3, 'state_dict': {'module.' + k: v for k, v in model.state_dict().items()}}, path
  )
  variables, arch = convert.convert_checkpoint(str(path))
  assert arch == Architecture(7, 18, 'blockres', 4, False)
  summary = convert_torch_weights.convert_to_directory(str(path), str(tmp_path / 'ckpt'))
  assert summary['epoch'] == 3 and summary['architecture']['shift_div'] == 4
  restored, meta = checkpoint.restore_variables(str(tmp_path / 'ckpt'))
  assert meta['architecture']['num_classes'] == 7
  assert (
      meta['inputs']
      == {'image_size': 224, 'scale_size': 256, 'num_segments': 4, 'dense_sample': False}
      and 'classes' not in meta
  )
  jax.tree.map(np.testing.assert_array_equal, restored, variables)


def test_inputs_and_classes_from_released_names():
  inputs, classes = convert.inputs_from_filename(
      'TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment16_e100_cos_dense_nl_lr0.02_wd2.0e-04.pth.tar'
  )
  assert inputs['num_segments'] == 16 and inputs['dense_sample']
  assert len(classes) == 400 and classes[:2] == ['abseiling', 'air_drumming']
  assert classes[399] == 'zumba'


def test_imagenet_backbone_conversion_and_merge(tmp_path):
  tsn = tr.build_tsn(10, 4, depth=18, shift=False, non_local=False)
  tr.randomize_(tsn, 0, calibrate=False)
  sd = {
      k[len('base_model.') :]: v for k, v in tsn.state_dict().items() if k.startswith('base_model.')
  }
  sd['fc.weight'], sd['fc.bias'] = torch.zeros(1000, 512), torch.zeros(1000)
  path = tmp_path / 'resnet18-imagenet.pth'
  torch.save(sd, path)
  with pytest.raises(convert.ConversionError, match='add --imagenet'):
    convert_torch_weights.convert_to_directory(str(path), str(tmp_path / 'x'))
  summary = convert_torch_weights.convert_to_directory(
      str(path), str(tmp_path / 'backbone'), imagenet=True
  )
  assert summary['depth'] == 18
  pretrained, _ = checkpoint.restore_variables(str(tmp_path / 'backbone'))
  model = build_model(Architecture(3, 18, 'blockres', non_local=True), dropout=0.0)
  # jitted: an op-by-op init compiles every op of the network separately
  fresh = jax.jit(lambda x: model.init(jax.random.PRNGKey(0), x))(
      np.zeros((1, 4, 32, 32, 3), np.float32)
  )
  merged = convert.merge_pretrained({k: fresh[k] for k in ('params', 'batch_stats')}, pretrained)
  w = sd['layer2.1.conv2.weight'].numpy().transpose(2, 3, 1, 0)
  np.testing.assert_array_equal(merged['params']['base_model']['layer2_1']['conv2']['kernel'], w)
  np.testing.assert_array_equal(
      merged['batch_stats']['base_model']['bn1']['var'], sd['bn1.running_var'].numpy()
  )
  # head and RNL parts keep their fresh initialisation
  np.testing.assert_array_equal(
      merged['params']['new_fc']['kernel'], fresh['params']['new_fc']['kernel']
  )
  np.testing.assert_array_equal(
      merged['params']['base_model']['layer2_0']['nl']['theta']['kernel'],
      fresh['params']['base_model']['layer2_0']['nl']['theta']['kernel'],
  )


def test_checkpoint_errors_name_the_path(tmp_path):
  with pytest.raises(checkpoint.CheckpointError, match=f'{tmp_path}: not an rnl_jax checkpoint'):
    checkpoint.load_checkpoint(str(tmp_path))
  (tmp_path / 'full').mkdir()
  (tmp_path / 'full' / 'x').write_text('')
  with pytest.raises(checkpoint.CheckpointError, match='exists and is not empty'):
    checkpoint.save_checkpoint(
        str(tmp_path / 'full'), {'params': {}, 'batch_stats': {}}, architecture=Architecture(3)
    )
