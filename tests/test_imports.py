"""Dependency rules: torch only in the converter (lazily) and tests; JAX not in data workers."""

import subprocess
import sys

from conftest import REPO


def _run(code):
  return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO)


def test_model_code_never_imports_torch():
  proc = _run(
      'import sys, rnl_jax, rnl_jax.convert, rnl_jax.checkpoint, rnl_jax.config; '
      'rnl_jax.load_checkpoint; assert "torch" not in sys.modules, "torch imported"'
  )
  assert proc.returncode == 0, proc.stderr


def test_data_modules_do_not_import_jax():
  proc = _run(
      'import sys, rnl_jax.data.sampling, rnl_jax.data.transforms, rnl_jax.data.synthetic, '
      'rnl_jax.data.datasets, rnl_jax.data.sources, rnl_jax.data.prepare; '
      'assert "jax" not in sys.modules and "torch" not in sys.modules, "jax/torch imported"'
  )
  assert proc.returncode == 0, proc.stderr
