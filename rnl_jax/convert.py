"""PyTorch checkpoints (the original's `.pth.tar`, torchvision ResNets) -> Flax variables.

The key map is strict: every Flax leaf is filled from exactly one PyTorch tensor of the expected
shape, and every PyTorch tensor is either consumed or explicitly ignored (`penta.mask` after checking
its pattern, `num_batches_tracked`, the ImageNet `fc`). Anything else is an error naming the key.
torch is imported lazily, only to read the pickle. The `.pth.tar` may be a URL (`gs://...`,
rnl_jax.fileio).
"""

import collections
import os
import re
from typing import Dict, Mapping, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from rnl_jax import fileio
from rnl_jax.data import datasets
from rnl_jax.errors import UserError
from rnl_jax.models.resnet import STAGES, ResNet, is_shifted, nonlocal_positions
from rnl_jax.models.rnl import penta_groups
from rnl_jax.models.tsn import Architecture, abstract_variables, build_model

IGNORED_SUFFIXES = ('.num_batches_tracked',)
_LEAF_NAMES = {
    'kernel': 'weight',
    'scale': 'weight',
    'bias': 'bias',
    'mean': 'running_mean',
    'var': 'running_var',
}
_MODULE_NAMES = {
    'downsample_0': 'downsample.0',
    'downsample_1': 'downsample.1',
    'W_0': 'W.0',
    'W_1': 'W.1',
}
_BLOCK_KEY = re.compile(r'^(?:base_model\.)?layer(\d+)\.(\d+)\.')


class ConversionError(UserError, ValueError):
  """A checkpoint that cannot be converted; the message names the file or key."""


# ------------------------------------------------------------------------------------------ reading
def _last_line(e: Exception) -> str:
  lines = [
      line.strip() for line in str(e).splitlines() if line.strip() and 'documentation' not in line
  ]
  return lines[-1] if lines else type(e).__name__


def load_torch_state_dict(path: str) -> Tuple[Dict[str, np.ndarray], dict]:
  """Reads a `.pth.tar` / `.pth` with `weights_only=True`.

  Returns the state_dict as NumPy arrays (a leading `module.` stripped) and the checkpoint's other
  plain fields (`epoch`, `arch`, ...; `optimizer` dropped).
  """
  import pickle  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top

  if not fileio.isfile(path):
    raise ConversionError(f'{path}: no such file')
  try:
    if fileio.is_remote(path):  # torch.load reads a seekable file object as it reads a path
      with fileio.open(path, 'rb') as f:
        obj = torch.load(f, map_location='cpu', weights_only=True)
    else:
      obj = torch.load(path, map_location='cpu', weights_only=True)
  except pickle.UnpicklingError as e:
    # torch reports every weights_only failure as "Weights only load failed"; a refused global
    # (a class or function the pickle would import and call) is what marks code in the file.
    found = re.search(r'unsupported global:?\s*(?:GLOBAL\s+)?([\w.]+)', str(e), re.IGNORECASE)
    if found:
      raise ConversionError(
          f'{path}: refused by torch.load(weights_only=True): the pickle imports {found.group(1)}, '
          f'i.e. holds code or objects other than tensors and plain types; not loading it'
      ) from None
    raise ConversionError(f'{path}: not a PyTorch checkpoint ({_last_line(e)})') from None
  except Exception as e:  # pylint: disable=broad-except
    raise ConversionError(
        f'{path}: not a PyTorch checkpoint ({type(e).__name__}: ' f'{_last_line(e)})'
    ) from None
  if isinstance(obj, Mapping) and 'state_dict' in obj:
    sd, meta = obj['state_dict'], {
        k: v for k, v in obj.items() if k not in ('state_dict', 'optimizer')
    }
  else:
    sd, meta = obj, {}
  if not isinstance(sd, Mapping) or not sd or not all(torch.is_tensor(v) for v in sd.values()):
    raise ConversionError(
        f'{path}: holds no state_dict (a dict of tensors, or a dict with a ' f'"state_dict" entry)'
    )
  arrays = {}
  for k, v in sd.items():
    k = k[len('module.') :] if k.startswith('module.') else k
    arrays[k] = v.detach().cpu().numpy()
  return arrays, meta


# ----------------------------------------------------------------------------- architecture
def _block_counts(sd, prefix):
  counts = collections.defaultdict(set)
  for k in sd:
    m = _BLOCK_KEY.match(k)
    if m and k.startswith(prefix):
      counts[int(m.group(1))].add(int(m.group(2)))
  return tuple(len(counts.get(s, ())) for s in (1, 2, 3, 4))


def _depth_from_keys(sd, prefix: str, what: str) -> int:
  counts = _block_counts(sd, prefix)
  bottleneck = any(
      re.match(rf'^{re.escape(prefix)}layer1\.0\.(block\.)?(net\.)?conv3\.', k) for k in sd
  )
  for depth, (is_bottleneck, blocks) in STAGES.items():
    if blocks == counts and is_bottleneck == bottleneck:
      return depth
  raise ConversionError(
      f'{what}: unknown architecture: blocks per stage {counts} '
      f'({"bottleneck" if bottleneck else "basic"} blocks) match no ResNet of depth '
      f'{sorted(STAGES)}'
  )


def infer_kind(sd: Mapping[str, np.ndarray], what: str = 'state_dict') -> str:
  """'tsn' for the original's TSN checkpoints, 'imagenet' for a torchvision ResNet state_dict."""
  if 'base_model.conv1.weight' in sd:
    return 'tsn'
  if 'conv1.weight' in sd and 'layer1.0.conv1.weight' in sd:
    return 'imagenet'
  first = next(iter(sd), None)
  raise ConversionError(
      f'{what}: unknown architecture: neither a TSN checkpoint '
      f'(base_model.conv1.weight) nor a torchvision ResNet (conv1.weight); '
      f'first key is {first!r}'
  )


def infer_architecture(
    sd: Mapping[str, np.ndarray], shift_div: int = 8, what: str = 'state_dict'
) -> Architecture:
  """The TSN architecture fixed by a TSN state_dict's keys (T is not: models take any T).

  `shift_div` does not show in the weights; the original encodes it in the file name
  (`..._shift8_...`), which `convert_checkpoint` reads.
  """
  if infer_kind(sd, what) != 'tsn':
    raise ConversionError(
        f'{what}: a torchvision ImageNet ResNet, not a TSN checkpoint; convert it '
        f'with --imagenet (convert_imagenet_state_dict)'
    )
  depth = _depth_from_keys(sd, 'base_model.', what)
  if any(re.match(r'^base_model\.layer\d+\.\d+\.(block\.)?conv1\.net\.', k) for k in sd):
    shift_place = 'blockres'
  elif any(re.match(r'^base_model\.layer\d+\.\d+\.(block\.)?net\.', k) for k in sd):
    shift_place = 'block'
  else:
    shift_place = None
  non_local = any('.nl.' in k or '.cg.' in k for k in sd)
  if non_local and depth == 101:
    raise ConversionError(
        f'{what}: an RNL ResNet-101 checkpoint: the original never released the layout of its '
        f'non-local blocks for ResNet-101 (ops.non_local_h_101 is missing upstream), so it cannot '
        f'be converted faithfully'
    )
  if 'new_fc.weight' not in sd:
    raise ConversionError(f'{what}: missing key new_fc.weight (the classifier)')
  return Architecture(
      num_classes=int(sd['new_fc.weight'].shape[0]),
      depth=depth,
      shift_place=shift_place,
      shift_div=shift_div,
      non_local=non_local,
  )


# ------------------------------------------------------------------------------------ key map
def _torch_key(path: Tuple[str, ...], arch: Optional[Architecture], prefix: bool) -> str:
  """Flax path ('base_model', 'layer2_0', 'nl', 'W_1', 'scale') -> 'base_model.layer2.0.nl.W.1.weight'.

  Inserts the original's wrapper names: `.block.` for blocks wrapped by the RNL code, `.net.` for
  the shift wrapper (`conv1.net` for 'blockres', `layerL.i.net` for 'block'). `arch=None` and
  `prefix=False` give torchvision's plain ResNet names.
  """
  parts = []
  for i, name in enumerate(path[:-1]):
    m = re.fullmatch(r'layer(\d)_(\d+)', name)
    if m:
      stage, block = int(m.group(1)), int(m.group(2))
      parts.append(f'layer{stage}.{block}')
      inner = path[i + 1]
      if inner in ('nl', 'cg'):
        continue
      if arch is not None and arch.non_local and (stage, block) in nonlocal_positions(arch.depth):
        parts.append('block')
      if arch is not None and arch.shift_place == 'block':  # the whole block wrapped (every block)
        parts.append('net')
    elif name == 'conv1' and i > 0 and re.fullmatch(r'layer\d_\d+', path[i - 1]):
      block = int(path[i - 1].split('_')[1])
      parts.append('conv1')
      if (
          arch is not None
          and arch.shift_place == 'blockres'
          and is_shifted(arch.depth, 'blockres', block)
      ):
        parts.append('net')
    else:
      parts.append(_MODULE_NAMES.get(name, name))
  key = '.'.join(parts + [_LEAF_NAMES[path[-1]]])
  if prefix:
    return key
  return key[len('base_model.') :] if key.startswith('base_model.') else key


def _to_flax(key: str, value: np.ndarray, flax_shape: Tuple[int, ...], what: str) -> np.ndarray:
  """One PyTorch tensor -> the Flax layout of `flax_shape`, with a shape check naming the key."""
  value = np.asarray(value)
  is_penta = key.endswith('penta.weight')
  if (
      is_penta
  ):  # masked grouped [C', g, kt, kh, kw] -> depthwise [kt, kh, kw, 1, C'] (docs/original.md §1.6.1)
    inner = flax_shape[-1]
    g = penta_groups(inner)
    expected = (inner, g) + tuple(flax_shape[:3])
  elif len(flax_shape) == 4:  # conv OIHW -> HWIO
    expected = (flax_shape[3], flax_shape[2], flax_shape[0], flax_shape[1])
  elif len(flax_shape) == 2:  # Linear [O, I] or 1x1x1 Conv3d [O, I, 1, 1, 1] -> Dense [I, O]
    expected = (flax_shape[1], flax_shape[0])
    if value.ndim == 5:
      expected = expected + (1, 1, 1)
  else:
    expected = tuple(flax_shape)
  if tuple(value.shape) != expected:
    raise ConversionError(
        f'{what}: key {key} has shape {tuple(value.shape)}, expected '
        f'{expected} (Flax shape {tuple(flax_shape)})'
    )
  if is_penta:
    o = np.arange(expected[0])
    return np.ascontiguousarray(value[o, o % g].transpose(1, 2, 3, 0)[:, :, :, None, :])
  if len(flax_shape) == 4:
    return np.ascontiguousarray(value.transpose(2, 3, 1, 0))
  if len(flax_shape) == 2:
    return np.ascontiguousarray(value.reshape(expected[:2]).T)
  return value


def _check_mask(key: str, mask: np.ndarray, what: str):
  out_c, g = mask.shape[:2]
  expected = np.zeros(mask.shape, mask.dtype)
  expected[np.arange(out_c), np.arange(out_c) % g] = 1
  if not np.array_equal(mask, expected):
    raise ConversionError(
        f'{what}: key {key} is not the original fixed diagonal mask '
        f'(mask[o, o % {g}] = 1): the layer would not be depthwise'
    )


def key_map(abstract, arch: Optional[Architecture], prefix: bool = True):
  """{torch key: (collection, Flax path tuple, Flax shape)} for every leaf of an abstract tree."""
  out = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(abstract):
    names = tuple(p.key for p in path)
    out[_torch_key(names[1:], arch, prefix)] = (names[0], names[1:], tuple(leaf.shape))
  return out


def torch_to_flax(key: str, value, flax_shape, what: str = 'state_dict') -> np.ndarray:
  """Public form of the per-tensor layout change (also maps PyTorch gradients for tests)."""
  return _to_flax(key, value, tuple(flax_shape), what)


def _fill(abstract, sd, arch, prefix, what, ignore=()):
  """Fills an abstract variables tree from sd, checking that nothing is missing or left over."""
  consumed = set()

  def fill(path, leaf):
    names = tuple(p.key for p in path)[1:]  # drop the collection name
    key = _torch_key(names, arch, prefix)
    if key not in sd:
      raise ConversionError(
          f'{what}: missing key {key} (for Flax {"/".join(names)}, ' f'shape {tuple(leaf.shape)})'
      )
    consumed.add(key)
    return jnp.array(_to_flax(key, sd[key], leaf.shape, what), dtype=leaf.dtype)  # a copy, never
    # a view of the source buffers (jnp.asarray may alias NumPy/torch memory on CPU)

  variables = jax.tree_util.tree_map_with_path(fill, abstract)
  leftover = []
  for k in sd:
    if k in consumed or k.endswith(IGNORED_SUFFIXES) or any(re.fullmatch(p, k) for p in ignore):
      continue
    if k.endswith('penta.mask'):
      _check_mask(k, np.asarray(sd[k]), what)
      continue
    leftover.append(k)
  if leftover:
    k = leftover[0]
    raise ConversionError(
        f'{what}: unexpected key {k} with shape {tuple(np.shape(sd[k]))} '
        f'({len(leftover)} unexpected keys in all) for architecture {arch}'
    )
  return variables


def convert_state_dict(
    sd: Mapping[str, np.ndarray], arch: Optional[Architecture] = None, what: str = 'state_dict'
):
  """An original TSN state_dict -> (`{'params', 'batch_stats'}` of `build_model(arch)`, arch)."""
  sd = {
      (
          'new_fc.' + k[len('base_model.classifier.') :]
          if k.startswith('base_model.classifier.')
          else k
      ): v
      for k, v in sd.items()
  }  # the TSM repo tester's rename
  arch = arch or infer_architecture(sd, what=what)
  abstract = abstract_variables(build_model(arch, dropout=0.0), (1, 1, 32, 32, 3))
  return _fill(abstract, sd, arch, prefix=True, what=what), arch


def convert_imagenet_state_dict(sd: Mapping[str, np.ndarray], what: str = 'state_dict'):
  """A torchvision ResNet ImageNet state_dict -> backbone-only variables `{'params':
  {'base_model': ...}, 'batch_stats': {'base_model': ...}}` (the 1000-way fc is dropped), to be
  merged into a fresh model with `merge_pretrained`; returns (variables, depth)."""
  if infer_kind(sd, what) != 'imagenet':
    raise ConversionError(f'{what}: a TSN checkpoint, not a torchvision ImageNet ResNet')
  depth = _depth_from_keys(sd, '', what)
  backbone = ResNet(depth, num_segments=1, shift_place=None, non_local=False)
  abstract = abstract_variables(backbone, (1, 32, 32, 3))
  variables = _fill(abstract, sd, None, prefix=False, what=what, ignore=(r'fc\.(weight|bias)',))
  return {col: {'base_model': tree} for col, tree in variables.items()}, depth


def merge_pretrained(variables, pretrained, what: str = 'pretrained'):
  """Overlays every leaf of `pretrained` onto `variables` (same path and shape required)."""
  flat = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_leaves_with_path(pretrained)}
  used = set()

  def pick(path, leaf):
    key = jax.tree_util.keystr(path)
    if key not in flat:
      return leaf
    if flat[key].shape != leaf.shape:
      raise ConversionError(
          f'{what}: {key} has shape {flat[key].shape}, the model wants {leaf.shape}'
      )
    used.add(key)
    return jnp.asarray(flat[key], leaf.dtype)

  merged = jax.tree_util.tree_map_with_path(pick, variables)
  missing = sorted(set(flat) - used)
  if missing:
    raise ConversionError(
        f'{what}: {missing[0]} has no place in the model ' f'({len(missing)} such leaves)'
    )
  return merged


def shift_div_from_filename(path: str, default: int = 8) -> int:
  """The original's tester reads `shift{div}` from the file name (e.g. `_shift8_blockres_`)."""
  m = re.search(r'_shift(\d+)_', os.path.basename(path))
  return int(m.group(1)) if m else default


def inputs_from_filename(path: str):
  """(inputs, classes) the original's file name implies, for the checkpoint's metadata.

  `segment{T}` -> num_segments, `_dense` -> dense sampling, `TSM_kinetics_` -> the Kinetics-400 class
  names (bundled, normalised as the TSM label tool does); image sizes are the original's 224/256.
  """
  name = os.path.basename(path)
  inputs = {'image_size': 224, 'scale_size': 256}
  m = re.search(r'_segment(\d+)', name)
  if m:
    inputs['num_segments'] = int(m.group(1))
  inputs['dense_sample'] = '_dense' in name
  classes = datasets.default_class_names(400) if name.startswith('TSM_kinetics_') else None
  return inputs, classes


def convert_tsn(sd, path: str, shift_div: Optional[int]):
  """A TSN state_dict read from `path` -> (variables, Architecture); `shift_div` from the file name
  unless given (infer_architecture refuses an ImageNet ResNet with a message naming --imagenet)."""
  arch = infer_architecture(sd, shift_div or shift_div_from_filename(path), path)
  return convert_state_dict(sd, arch, path)


def convert_checkpoint(path: str, shift_div: Optional[int] = None):
  """An original `.pth.tar` -> (variables, Architecture)."""
  return convert_tsn(load_torch_state_dict(path)[0], path, shift_div)
