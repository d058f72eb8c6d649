"""The parity fixture's checkpoint and input clips, rebuilt from its recipe.

`tests/data/parity/k400_8f/` holds what the ORIGINAL PyTorch implementation computed (eval logits,
pre-classifier features, one train step's loss, logits, gradients and BatchNorm statistics) for a
random-weight RNL TSM-R50. The 143 MB checkpoint and the two input clips it ran on are not stored:
`spec.json` records how every tensor was drawn, and this module draws them again, bit for bit, on
any platform (docs/parity.md explains the fixture and its tolerances).

The rule (spec.json `tensor_rule` and `digest_rule`):
- Noise. Each value is a pure function of (seed, tensor name, flat C-order index i): a splitmix64
  stream whose start is the first 8 bytes (little-endian) of sha256(f'{seed}:{name}') gives, for
  i = 0, 1, ..., the output at counter i + 1; its top 53 bits k become u = (k + 0.5) / 2**53 in
  (0, 1), then 2u - 1 in (-1, 1). All arithmetic is float64 until the final cast.
- Weights: noise * scale + offset (per-tensor, in the spec), times the region conv's fixed 0/1 mask
  for kind `masked`; kind `mask` is the mask itself (mask[o, o % groups] = 1); kind `zeros_int` is
  the int64 zero counter. Cast to float32.
- Inputs `[B, T, H, W, 3]`: noise * sqrt(3) (unit variance), times a per-clip contrast
  1 + contrast * noise(name + '/contrast', [B, 1, 1, 1, 1]), plus a per-clip colour offset
  offset * noise(name + '/offset', [B, 1, 1, 1, 3]). Already normalised: feed them to the model as is.
- Digest: sha256 over the tensors in order, each as f'{key}|{dtype.str}|{list(shape)}|' (UTF-8)
  followed by its C-order bytes. `checkpoint_info` in the spec holds the digests of the state_dict
  and of each input; `verify` checks a rebuild against them.

    python tests/parity_fixture.py OUT_DIR [--name k400_8f]

writes the released-format `.pth.tar` (needs torch) and `input.npy` / `train_input.npy` to OUT_DIR.
As a library (NumPy only): `load_spec`, `state_dict`, `inputs`, `verify`, `write_checkpoint`.
"""

import argparse
import hashlib
import json
import pathlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent / 'data' / 'parity'

# splitmix64 (Steele, Lea & Flood 2014): the counter increment and the two finaliser multipliers.
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)


def load_spec(name='k400_8f'):
  """The recipe of fixture `name` (a folder under tests/data/parity)."""
  return json.loads((ROOT / name / 'spec.json').read_text())


def fixture_dir(name='k400_8f'):
  return ROOT / name


def _stream_start(seed, name):
  return np.uint64(int.from_bytes(hashlib.sha256(f'{seed}:{name}'.encode()).digest()[:8], 'little'))


def noise(seed, name, shape):
  """float64 values in (-1, 1) of `shape`, a pure function of (seed, name, flat index)."""
  n = int(np.prod(shape, dtype=np.int64))
  with np.errstate(over='ignore'):  # uint64 arithmetic wraps modulo 2**64 by design
    z = _stream_start(seed, name) + np.arange(1, n + 1, dtype=np.uint64) * _GAMMA
    z = (z ^ (z >> np.uint64(30))) * _MUL1
    z = (z ^ (z >> np.uint64(27))) * _MUL2
    z ^= z >> np.uint64(31)
  u = ((z >> np.uint64(11)).astype(np.float64) + 0.5) / float(2**53)
  return (2.0 * u - 1.0).reshape(shape)


def region_mask(shape):
  """The original's fixed 0/1 mask of its masked grouped region conv: [O, G, ...] with
  mask[o, o % G] = 1 over every kernel tap, i.e. output channel o sees only input o % G."""
  mask = np.zeros(shape, np.float64)
  out_channels, groups = shape[0], shape[1]
  mask[np.arange(out_channels), np.arange(out_channels) % groups] = 1.0
  return mask


def _tensor(seed, key, entry):
  shape = tuple(entry['shape'])
  if entry['kind'] == 'zeros_int':
    return np.zeros(shape, np.int64)
  if entry['kind'] == 'mask':
    return region_mask(shape).astype(np.float32)
  values = noise(seed, key, shape) * float(entry['scale']) + float(entry['offset'])
  if entry['kind'] == 'masked':
    values = values * region_mask(shape)
  return values.astype(np.float32)


def state_dict(spec):
  """{checkpoint key (with the 'module.' prefix of a DistributedDataParallel save): array}, in the
  checkpoint's key order."""
  return {key: _tensor(spec['seed'], key, entry) for key, entry in spec['state_dict'].items()}


def inputs(spec):
  """{'input': eval clips, 'train_input': train-check clips}, each float32 [B, T, H, W, 3]."""
  out = {}
  for name, entry in spec['inputs'].items():
    b, _, _, _, c = shape = tuple(entry['shape'])
    clips = noise(spec['seed'], name, shape) * np.sqrt(3.0)
    contrast = 1.0 + entry['contrast'] * noise(spec['seed'], name + '/contrast', (b, 1, 1, 1, 1))
    offset = entry['offset'] * noise(spec['seed'], name + '/offset', (b, 1, 1, 1, c))
    out[name] = (clips * contrast + offset).astype(np.float32)
  return out


def digest(arrays):
  """sha256 of {key: array} by the recipe's digest rule (key order matters)."""
  h = hashlib.sha256()
  for key, value in arrays.items():
    h.update(f'{key}|{value.dtype.str}|{list(value.shape)}|'.encode())
    h.update(np.ascontiguousarray(value).tobytes())
  return h.hexdigest()


def verify(spec, weights=None, clips=None):
  """Raises ValueError naming what differs from the recipe's digests; returns nothing."""
  info = spec['checkpoint_info']
  if weights is not None and digest(weights) != info['state_dict_sha256']:
    raise ValueError(
        'rebuilt state_dict does not match spec.json checkpoint_info.state_dict_sha256'
    )
  for name, value in (clips or {}).items():
    if digest({name: value}) != info['inputs_sha256'][name]:
      raise ValueError(
          f'rebuilt input {name!r} does not match spec.json checkpoint_info.inputs_sha256'
      )


def write_checkpoint(spec, out_dir, weights=None):
  """The fixture in the original's released format (`torch.save` of the checkpoint dict); returns its
  path. Needs torch; `weights` defaults to a fresh `state_dict(spec)`."""
  import torch  # pylint: disable=import-outside-toplevel  (only the .pth.tar needs torch)

  weights = state_dict(spec) if weights is None else weights
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  path = out_dir / spec['checkpoint_name']
  tensors = {key: torch.from_numpy(value) for key, value in weights.items()}
  torch.save(dict(spec['checkpoint_fields'], state_dict=tensors), path)
  return str(path)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n', 1)[0])
  parser.add_argument('out_dir', help='folder for the .pth.tar and the input clips')
  parser.add_argument('--name', default='k400_8f', help='fixture under tests/data/parity')
  args = parser.parse_args()
  spec = load_spec(args.name)
  weights, clips = state_dict(spec), inputs(spec)
  verify(spec, weights, clips)
  print(write_checkpoint(spec, args.out_dir, weights))
  for name, value in clips.items():
    np.save(pathlib.Path(args.out_dir) / f'{name}.npy', value)


if __name__ == '__main__':
  main()
