"""Entry point: `python main.py --config=configs/tiny.py [--config.model.depth=50 ...]`.

Training and evaluation land with the trainer issue; for now the entry point validates the config,
builds the model and runs one jitted eval forward on random uint8 clips (a smoke test of the stack).
"""
import time

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
from ml_collections import config_flags

from rnl_jax import config as config_lib

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/tiny.py', 'Config file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory (used by training, later).')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  config = _CONFIG.value
  model = config_lib.model_from_config(config)  # fails on a bad value before compiling anything
  t, s = config.num_segments, config.image_size
  clips = jax.random.randint(jax.random.PRNGKey(0), (2, t, s, s, 3), 0, 256).astype(jnp.uint8)
  variables = jax.jit(lambda x: model.init(jax.random.PRNGKey(0), x))(clips)
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
  start = time.perf_counter()
  logits = jax.block_until_ready(forward(variables, clips))
  compiled = time.perf_counter() - start
  start = time.perf_counter()
  jax.block_until_ready(forward(variables, clips))
  n_params = sum(x.size for x in jax.tree.leaves(variables['params']))
  logging.info('model %s-R%d, %.2fM parameters, clips %s -> logits %s', config.model.variant,
               config.model.depth, n_params / 1e6, clips.shape, logits.shape)
  print(f'{config.model.variant.upper()} ResNet-{config.model.depth}: {n_params:,} parameters; '
        f'eval forward of {clips.shape} -> {logits.shape}: first call {compiled:.2f} s '
        f'(with compile), then {time.perf_counter() - start:.3f} s on {jax.devices()[0].platform}. '
        f'Training arrives with the trainer issue.')


if __name__ == '__main__':
  app.run(main)
