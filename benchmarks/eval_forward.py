"""Wall time of one jitted eval forward of RNL TSM-R50 on the parity fixture's input.

  python -m benchmarks.eval_forward [--repeats 5] [--query_chunk 0] [--dtype float32]

Loads the fixture's weights (tests/data/parity, rebuilt with NumPy, converted in memory) and its
eval input `[2, 8, 224, 224, 3]`; prints compile time, the median of `--repeats` timed calls after
a warm-up, and the max abs difference of the logits from the original's.
"""

import json
import statistics
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.model import fixture, fixture_state_dict
from rnl_jax import convert
from rnl_jax.models import build_model

_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed calls after the warm-up.')
_CHUNK = flags.DEFINE_integer('query_chunk', 0, '0: plain attention; > 0: queries per chunk.')
_DTYPE = flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'Compute dtype.')


def main(_):
  tensors, spec = fixture()
  sd = fixture_state_dict()
  x = jnp.asarray(tensors.inputs(spec)['input'])
  variables, arch = convert.convert_state_dict(sd)
  model = build_model(arch, query_chunk=_CHUNK.value or None, dtype=getattr(jnp, _DTYPE.value))
  forward = jax.jit(lambda v, a: model.apply(v, a, train=False))

  start = time.perf_counter()
  compiled = forward.lower(variables, x).compile()
  compile_s = time.perf_counter() - start
  logits = jax.block_until_ready(compiled(variables, x))  # warm-up
  times = []
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    jax.block_until_ready(compiled(variables, x))
    times.append(time.perf_counter() - start)
  ref = np.load(tensors.fixture_dir('k400_8f') / 'logits.npy')
  print(
      json.dumps(
          {
              'model': 'RNL TSM-R50 (k400_8f fixture)',
              'input': list(x.shape),
              'dtype': _DTYPE.value,
              'query_chunk': _CHUNK.value,
              'device': str(jax.devices()[0]),
              'compile_s': round(compile_s, 2),
              'median_s': round(statistics.median(times), 3),
              'times_s': [round(t, 3) for t in times],
              'max_abs_logits_diff': float(np.abs(np.asarray(logits, np.float32) - ref).max()),
          },
          indent=1,
      )
  )


if __name__ == '__main__':
  app.run(main)
