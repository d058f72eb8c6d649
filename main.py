"""Entry point: `python main.py --config=configs/synthetic.py --workdir=DIR [--config.a.b=value ...]`.

Trains and validates with `rnl_jax.train.train_and_evaluate`; an interrupted run restarted with the
same workdir resumes from its last checkpoint. `--config.mode=test` runs the original's test protocol
(`rnl_jax.protocol.test`: clips x crops views of the val list) on WORKDIR/best or
`config.test.checkpoint`. Launch one process per host for multi-host runs (docs/training.md).
A mistake (config key or value, data, checkpoint) is one line on stderr and exit status 2;
`--debug` shows its traceback (rnl_jax/cli.py).
"""

import difflib
import importlib.util
import os
import sys

from absl import app
from absl import flags
from absl import logging
import logging as _pylogging  # noqa: F401  (levels)
import jax
import ml_collections
from ml_collections import config_flags

from rnl_jax import cli
from rnl_jax import config as config_lib
from rnl_jax import errors
from rnl_jax import protocol
from rnl_jax import sharding
from rnl_jax import train


def _config_path(argv):
  """The file named by --config (the default without it)."""
  path = DEFAULT_CONFIG
  for arg in argv:
    if arg.startswith('--config='):
      path = arg.split('=', 1)[1].split(':', 1)[0]
  return path


def _config_keys(path):
  """Dotted keys of the config file `path`, or [] if it does not load: the candidates for a
  mistyped --config.KEY override."""
  try:
    spec = importlib.util.spec_from_file_location('_rnl_config_for_keys', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
  except Exception:  # pylint: disable=broad-except  (the flag error itself is reported instead)
    return []

  def walk(node, prefix):
    for key, value in node.items():
      if isinstance(value, ml_collections.ConfigDict):
        yield from walk(value, f'{prefix}{key}.')
      else:
        yield prefix + key

  return list(walk(config, ''))


def _flag_error_message(argv, error):
  """One line for a flag mistake; a --config.KEY that does not exist names the nearest keys."""
  path = _config_path(argv)
  if not os.path.isfile(path):
    return f'--config={path}: no such config file'
  keys = _config_keys(path)
  for arg in argv:
    if arg.startswith('--config.'):
      key = arg[len('--config.') :].split('=', 1)[0]
      if keys and key not in keys:
        near = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
        hint = f'; nearest: {", ".join(near)}' if near else ''
        return f'--config.{key}: no such config key{hint}'
  return cli.message(error)


def _exit_on_flag_error(argv, error):
  if cli.debug_requested(argv):
    raise error
  print(f'error: {_flag_error_message(argv, error)} (see --help)', file=sys.stderr)
  raise SystemExit(2) from None


DEFAULT_CONFIG = 'configs/synthetic.py'
sys.argv[1:] = cli.both_spellings(sys.argv[1:])  # before ml_collections reads the overrides
try:  # ml_collections applies --config.KEY overrides to the default config while defining the flag
  _CONFIG = config_flags.DEFINE_config_file(
      'config', DEFAULT_CONFIG, 'Config file.', lock_config=True
  )
except Exception as e:  # pylint: disable=broad-except
  _exit_on_flag_error(sys.argv, e)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Directory for checkpoints, logs and results.', required=True
)
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address',
    None,
    'host:port of process 0, for multi-process runs without a cluster '
    'launcher that JAX detects (SLURM, Open MPI, TPU pods are detected automatically).',
)
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', None, 'Processes in the job (with ' '--coordinator_address).'
)
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process (with --coordinator_address).')
flags.DEFINE_boolean('debug', False, 'Show the traceback of an error (also: RNL_DEBUG=1).')


def _parse_flags(argv):
  """absl's flag parsing, a mistake in one line (sys.argv already has one spelling)."""
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-except  (flag and config-file errors)
    _exit_on_flag_error(argv, e)


class _QuietLibraries:
  """absl log filter: INFO lines of orbax (several per checkpoint) are dropped; warnings pass."""

  def filter(self, record):
    return record.levelno >= _pylogging.WARNING or 'orbax' not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.get_absl_handler().addFilter(_QuietLibraries())
  with cli.user_errors():
    _run()


def _load_config():
  """The config with its overrides; ml_collections reports a bad file, key or value only here."""
  try:
    config = _CONFIG.value
    config.keys()  # a file that failed to load is an object raising on first use
    return config
  except Exception as e:  # pylint: disable=broad-except
    raise errors.ConfigError(_flag_error_message(sys.argv, e)) from e


def _run():
  """Validates the config, joins the other processes, then trains or runs the test protocol."""
  config = _load_config()
  config_lib.validate(config)  # a bad value fails here, before JAX starts or data is read
  sharding.initialize_distributed(
      config.distributed, _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value
  )
  logging.info(
      'JAX %s on %s: process %d of %d, %d devices',
      jax.__version__,
      jax.devices()[0].platform,
      jax.process_index(),
      jax.process_count(),
      jax.device_count(),
  )
  if config.mode == 'test':
    m = protocol.test(config, _WORKDIR.value)
    p = m['protocol']
    print(
        f"test ({p['clips']} clips x {p['crops']} crops): top-1 {m['top1']:.4f}, top-5 {m['top5']:.4f}, "
        f"mean class acc {m['mean_class_acc']:.4f} over {m['num_videos']} videos "
        f"({m['views_per_s']:.1f} views/s); results in {_WORKDIR.value}/{config.test.output}*"
    )
    return
  metrics = train.train_and_evaluate(config, _WORKDIR.value)
  print(
      f"step {metrics['step']}: val top-1 {metrics['top1']:.4f}, top-5 {metrics['top5']:.4f}, "
      f"mean class acc {metrics['mean_class_acc']:.4f} over {metrics['num_videos']} videos "
      f"({metrics['wall_time_s']:.0f} s); results in {_WORKDIR.value}/results.json"
  )


if __name__ == '__main__':
  app.run(main, flags_parser=cli.absl_flags_parser(_parse_flags))
