"""Train-step throughput of a config on this machine: the jitted step of rnl_jax.train on random uint8.

  python -m benchmarks.train_step --config configs/k400_8f.py --batch 2 [--steps 5] [--dtype bfloat16]
  python -m benchmarks.train_step --config configs/synthetic.py

Runs `train_step` (forward + backward + the original's SGD update, one micro-batch of --batch clips,
BatchNorm in training mode), jitted with `sharding.compiler_options()` as training does, on all
local devices; prints compile time, the median step time of --steps after one warm-up, clips/s and
peak RSS. No data loading (see benchmarks/input_pipeline.py). --xla_option NAME=VALUE adds an XLA
compiler option (repeatable; an empty VALUE drops one of `sharding.compiler_options()`), e.g.
xla_cpu_experimental_xnn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION.
"""

import argparse
import functools
import importlib.util
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

from rnl_jax import config as config_lib
from rnl_jax import optim, sharding, train
from rnl_jax.models.rnl import train_attention_method, train_query_chunk


def load_config(path):
  spec = importlib.util.spec_from_file_location('bench_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def setup(config, batch, compiler_options=None):
  """(jitted train step, replicated state, one global random batch, mesh) for `batch` clips."""
  model = config_lib.model_from_config(config)
  t, s = config.num_segments, config.image_size
  variables = jax.jit(lambda x: model.init(jax.random.PRNGKey(0), x, train=False))(
      jnp.zeros((1, t, s, s, 3), jnp.uint8)
  )
  return step_setup(
      model,
      variables,
      (batch, t, s),
      config.data.num_classes,
      compiler_options,
      config.optim.weight_decay,
  )


def step_setup(model, variables, clips, num_classes, compiler_options=None, weight_decay=1e-4):
  """`setup` for a given model and variables; `clips` = (clips, frames, size) of the random batch."""
  batch, t, s = clips
  mesh = sharding.make_mesh()
  tx = optim.sgd(variables['params'], 0.01, weight_decay=weight_decay)
  state = train.TrainState(
      step=jnp.zeros((), jnp.int32),
      params=variables['params'],
      batch_stats=variables['batch_stats'],
      opt_state=tx.init(variables['params']),
      rng=jax.random.PRNGKey(1),
  )
  replicated = sharding.replicated(mesh)
  state = jax.device_put(state, replicated)
  step = jax.jit(
      functools.partial(train.train_step, model=model, tx=tx, lr_fn=lambda s: 0.01),
      in_shardings=(replicated, sharding.batch_sharding(mesh, 1)),
      out_shardings=(replicated, replicated),
      donate_argnums=0,
      compiler_options=compiler_options or None,
  )
  rng = np.random.default_rng(0)
  data = {
      'frames': rng.integers(0, 256, (1, batch, t, s, s, 3), dtype=np.uint8),
      'label': rng.integers(0, num_classes, (1, batch)).astype(np.int32),
  }
  return step, state, sharding.to_global(data, mesh, batch_axis=1), mesh


def add_xla_option_flag(parser):
  parser.add_argument(
      '--xla_option',
      action='append',
      default=[],
      metavar='NAME=VALUE',
      help='XLA compiler option for the jit (repeatable), on top of sharding.compiler_options(); '
      'VALUE "" drops that option',
  )


def compiler_options(overrides):
  """`sharding.compiler_options()` (training's) with the NAME=VALUE strings of --xla_option applied;
  an empty VALUE drops that option."""
  options = dict(sharding.compiler_options() or {})
  options.update(o.split('=', 1) for o in overrides)
  return {k: v for k, v in options.items() if v}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='configs/k400_8f.py')
  parser.add_argument(
      '--batch', type=int, default=None, help='clips per step (default: the config)'
  )
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--dtype', default=None, help='float32 | bfloat16 (default: the config)')
  parser.add_argument('--query_chunk', type=int, default=None)
  parser.add_argument(
      '--train_attention', default=None, help='auto | tiled | chunked (with --query_chunk > 0)'
  )
  parser.add_argument('--frames', type=int, default=None, help='frames per clip (default: config)')
  parser.add_argument('--image_size', type=int, default=None, help='crop size (default: config)')
  parser.add_argument('--variant', default=None, help='tsn | tsm | rnl (default: the config)')
  add_xla_option_flag(parser)
  args = parser.parse_args()
  config = load_config(args.config)
  if args.dtype:
    config.model.dtype = args.dtype
  if args.variant:
    config.model.variant = args.variant
  if args.query_chunk is not None:
    config.model.query_chunk = args.query_chunk
  if args.train_attention:
    config.model.train_attention = args.train_attention
  if args.frames:
    config.num_segments = args.frames
  if args.image_size:
    config.image_size = args.image_size
  batch = args.batch or config.batch_size
  step, state, data, mesh = setup(config, batch, compiler_options(args.xla_option))
  t, s = config.num_segments, config.image_size
  start = time.perf_counter()
  state, metrics = step(state, data)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  times = []
  for _ in range(args.steps):
    start = time.perf_counter()
    state, metrics = step(state, data)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  median = float(np.median(times))
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  print(
      f'{args.config}: {config.model.variant} R{config.model.depth} width {config.model.width}, '
      f'attention {_attention(config)}, '
      f'{batch} clips x {t} x {s}px, {config.model.dtype}, {mesh.devices.size} '
      f'{jax.devices()[0].platform} device(s): first step (compile) {compile_s:.1f} s, '
      f'median of {args.steps} {median:.3f} s = {batch / median:.2f} clips/s, peak RSS {rss:.1f} GB'
  )


def _attention(config):
  m = config.model
  if m.variant != 'rnl':
    return 'none'
  chunk = train_query_chunk(config_lib.query_chunk_setting(m.query_chunk))
  if not chunk:
    return 'plain'
  return f'{train_attention_method(m.train_attention)} {chunk}'


if __name__ == '__main__':
  main()
