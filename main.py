"""Entry point: `python main.py --config=configs/synthetic.py --workdir=DIR [--config.a.b=value ...]`.

Trains and evaluates with `rnl_jax.train.train_and_evaluate`; an interrupted run restarted with the
same workdir resumes from its last checkpoint. `--config.mode=test` runs the original's test protocol
(`rnl_jax.evaluate.test`: clips x crops views of the val list) on WORKDIR/best or `config.test.checkpoint`. Launch one process per host for multi-host runs
(see README).
"""
from absl import app
from absl import flags
from absl import logging
import logging as _pylogging  # noqa: F401  (levels)
import jax
from ml_collections import config_flags

from rnl_jax import config as config_lib
from rnl_jax import evaluate
from rnl_jax import sharding
from rnl_jax import train

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/synthetic.py', 'Config file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and results.',
                               required=True)
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'host:port of process 0, for multi-process runs without a cluster '
    'launcher that JAX detects (SLURM, Open MPI, TPU pods are detected automatically).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Processes in the job (with '
                                      '--coordinator_address).')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process (with --coordinator_address).')


class _QuietLibraries:
  """absl log filter: INFO lines of orbax (several per checkpoint) are dropped; warnings pass."""

  def filter(self, record):
    return record.levelno >= _pylogging.WARNING or 'orbax' not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.get_absl_handler().addFilter(_QuietLibraries())
  config = _CONFIG.value
  config_lib.validate(config)        # a bad value fails here, before JAX starts or data is read
  sharding.initialize_distributed(config.distributed, _COORDINATOR.value, _NUM_PROCESSES.value,
                                  _PROCESS_ID.value)
  logging.info('JAX %s on %s: process %d of %d, %d devices', jax.__version__,
               jax.devices()[0].platform, jax.process_index(), jax.process_count(), jax.device_count())
  if config.mode == 'test':
    m = evaluate.test(config, _WORKDIR.value)
    p = m['protocol']
    print(f"test ({p['clips']} clips x {p['crops']} crops): top-1 {m['top1']:.4f}, top-5 {m['top5']:.4f}, "
          f"mean class acc {m['mean_class_acc']:.4f} over {m['num_videos']} videos "
          f"({m['views_per_s']:.1f} views/s); results in {_WORKDIR.value}/{config.test.output}*")
    return
  metrics = train.train_and_evaluate(config, _WORKDIR.value)
  print(f"step {metrics['step']}: val top-1 {metrics['top1']:.4f}, top-5 {metrics['top5']:.4f}, "
        f"mean class acc {metrics['mean_class_acc']:.4f} over {metrics['num_videos']} videos "
        f"({metrics['wall_time_s']:.0f} s); results in {_WORKDIR.value}/results.json")


if __name__ == '__main__':
  app.run(main)
