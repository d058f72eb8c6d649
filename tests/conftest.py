"""Shared test fixtures: the parity fixture (tests/data/parity), rebuilt once per session."""

import contextlib
import os
import pathlib
import tempfile
import uuid

import jax
import numpy as np
import pytest

import gcs_emulator
import parity_fixture
import s3_emulator

from configs import tiny

# Full float32 matmuls/convolutions on every backend (no TF32/bf16 passes): parity needs them.
jax.config.update('jax_default_matmul_precision', 'highest')

# One persistent compilation cache for the session, shared with the `python main.py` subprocesses
# (environment): the same tiny training programs are compiled once instead of in every run
# (55 s -> 13 s per run on the 2-core CI machine). Cached executables are the compiled code itself,
# so results (bit-identical resume included) are unchanged.
_CACHE = os.environ.setdefault(
    'JAX_COMPILATION_CACHE_DIR', tempfile.mkdtemp(prefix='rnl_jax_xla_cache_')
)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')
jax.config.update('jax_compilation_cache_dir', _CACHE)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURE = parity_fixture.fixture_dir('k400_8f')


@pytest.fixture(scope='session')
def parity_spec():
  return parity_fixture.load_spec('k400_8f')


@pytest.fixture(scope='session')
def parity_state_dict(parity_spec):
  """The fixture checkpoint's state_dict as NumPy arrays, keys without `module.`; checked against
  the recipe's sha256 digest, so every parity test runs on exactly the original's weights."""
  arrays = parity_fixture.state_dict(parity_spec)
  parity_fixture.verify(parity_spec, weights=arrays)
  return {k[len('module.') :]: v for k, v in arrays.items()}


@pytest.fixture(scope='session')
def parity_inputs(parity_spec):
  clips = parity_fixture.inputs(parity_spec)
  parity_fixture.verify(parity_spec, clips=clips)
  return clips


@pytest.fixture(scope='session')
def parity_checkpoint(tmp_path_factory, parity_spec):
  """The fixture in the released `.pth.tar` format (needs torch to write)."""
  return parity_fixture.write_checkpoint(parity_spec, tmp_path_factory.mktemp('parity_ckpt'))


@pytest.fixture(scope='session')
def gcs_server():
  """A GCS emulator on localhost for this test process; the environment points gcsfs, tensorstore
  and array_record at it (subprocesses inherit it). Yields its bucket URL `gs://BUCKET`."""
  with gcs_emulator.serve() as url:
    with _environment(gcs_emulator.environment(url)):
      yield f'gs://{gcs_emulator.BUCKET}'


@contextlib.contextmanager
def _environment(variables):
  """os.environ with `variables` set (subprocesses inherit them), restored afterwards."""
  saved = {k: os.environ.get(k) for k in variables}
  os.environ.update(variables)
  try:
    yield
  finally:
    for key, value in saved.items():
      if value is None:
        os.environ.pop(key, None)
      else:
        os.environ[key] = value


@pytest.fixture(scope='session')
def s3_server():
  """An S3 server (moto) on localhost for this test process; s3fs is pointed at it through the
  environment. Yields its bucket URL `s3://BUCKET`."""
  with s3_emulator.serve() as url:
    with _environment(s3_emulator.environment(url)):
      yield f's3://{s3_emulator.BUCKET}'


def _folder(server, request):
  name = ''.join(c if c.isalnum() else '-' for c in request.node.name[:40])
  return f'{server}/{name}-{uuid.uuid4().hex[:8]}'


@pytest.fixture
def bucket(gcs_server, request):
  """A fresh folder of the GCS emulator's bucket for one test: `gs://BUCKET/<test>-<random>`."""
  return _folder(gcs_server, request)


@pytest.fixture
def s3_bucket(s3_server, request):
  """A fresh folder of the S3 server's bucket for one test: `s3://BUCKET/<test>-<random>`."""
  return _folder(s3_server, request)


def small_config(**overrides):
  """The tiny config at its smallest: width-8 ResNet-18 RNL, 4 frames of 32 px, 24/12 videos."""
  config = tiny.get_config()
  config.model.width = 8
  config.data.synthetic.num_train = 24
  config.data.synthetic.num_val = 12
  config.batch_size = 8
  config.eval_batch_size = 8
  config.num_epochs = 2.0
  config.log_every_steps = 1
  config.checkpoint_every_steps = 2
  for key, value in overrides.items():
    section, _, name = key.rpartition('.')
    target = config
    for part in section.split('.') if section else []:
      target = target[part]
    target[name] = value
  return config


def load_npy(*parts):
  return np.load(FIXTURE.joinpath(*parts))
