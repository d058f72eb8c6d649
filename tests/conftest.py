"""Shared test fixtures: the parity fixture from ../shared/parity, rebuilt once per session."""
import json
import os
import pathlib
import sys
import tempfile

import jax
import numpy as np
import pytest

# Full float32 matmuls/convolutions on every backend (no TF32/bf16 passes): parity needs them.
jax.config.update('jax_default_matmul_precision', 'highest')

# One persistent compilation cache for the session, shared with the `python main.py` subprocesses
# (environment): the same tiny training programs are compiled once instead of in every run
# (55 s -> 13 s per run on the 2-core CI machine). Cached executables are the compiled code itself,
# so results (bit-identical resume included) are unchanged.
_CACHE = os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', tempfile.mkdtemp(prefix='rnl_jax_xla_cache_'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')
jax.config.update('jax_compilation_cache_dir', _CACHE)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get('RNL_SHARED_DIR', REPO.parent / 'shared'))
PARITY = SHARED / 'parity'
FIXTURE = PARITY / 'k400_8f'


def fixture_module():
  """`fixture_tensors` from ../shared/parity (never copied into the repo)."""
  if not (PARITY / 'fixture_tensors.py').is_file():
    raise FileNotFoundError(f'parity fixture not found at {PARITY}; set RNL_SHARED_DIR to the '
                            f'shared/ directory')
  if str(PARITY) not in sys.path:
    sys.path.insert(0, str(PARITY))
  import fixture_tensors  # pylint: disable=g-import-not-at-top
  return fixture_tensors


@pytest.fixture(scope='session')
def parity_spec():
  with open(FIXTURE / 'spec.json') as f:
    return json.load(f)


@pytest.fixture(scope='session')
def parity_state_dict(parity_spec):
  """The fixture checkpoint's state_dict as NumPy arrays, keys without `module.`."""
  arrays = fixture_module().state_dict_arrays(parity_spec)
  return {k[len('module.'):]: v for k, v in arrays.items()}


@pytest.fixture(scope='session')
def parity_inputs(parity_spec):
  return fixture_module().inputs(parity_spec)


@pytest.fixture(scope='session')
def parity_checkpoint(tmp_path_factory, parity_spec):
  """The fixture in the released `.pth.tar` format (needs torch to write)."""
  out = tmp_path_factory.mktemp('parity_ckpt')
  return fixture_module().write(str(FIXTURE), str(out))


def load_npy(*parts):
  return np.load(FIXTURE.joinpath(*parts))
