"""Device mesh, shardings, host-local -> global batches (one `data` axis; parameters replicated),
and the XLA compiler options every jitted entry uses (`compiler_options`).

One process per host: each feeds its own rows of the global batch (the input pipeline gives process p
rows [p*B/P, (p+1)*B/P)), and `jax.make_array_from_process_local_data` assembles the global array
sharded over all devices. BatchNorm inside a jitted step then reduces over the global batch (the
original's SyncBatchNorm) without any axis-name plumbing.
"""

import os

from absl import logging
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'
# Environment variables that mean "this is one process of a multi-process job" (set by the launcher).
_CLUSTER_ENV = (
    'JAX_COORDINATOR_ADDRESS',
    'SLURM_NTASKS',
    'OMPI_COMM_WORLD_SIZE',
    'TPU_WORKER_ID',
    'MEGASCALE_COORDINATOR_ADDRESS',
)


# XLA:CPU (jaxlib 0.10) hands every convolution to YNNPACK by default. Its weight-gradient
# convolutions (the whole feature map as the window, the batch as the contracted feature) run far
# slower there than XLA's own (Eigen) convolution. Keep YNNPACK for dots and reductions only; the
# math is the same (other kernels). Forward convolutions are faster in Eigen too, so validation, the
# test protocol and classify use these options as well (docs/performance.md#cpu-compiler-options).
CPU_COMPILER_OPTIONS = {
    'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE',
}


def compiler_options():
  """XLA compiler options for the jitted steps (train, validation, test protocol, classify):
  CPU_COMPILER_OPTIONS on CPU, else None.

  None too when XLA_FLAGS already sets the YNN fusion types (the user's choice wins).
  """
  if jax.default_backend() != 'cpu' or 'ynn_fusion_type' in os.environ.get('XLA_FLAGS', ''):
    return None
  return dict(CPU_COMPILER_OPTIONS)


def initialize_distributed(
    mode='auto', coordinator_address=None, num_processes=None, process_id=None
):
  """Joins a multi-process job (`jax.distributed.initialize`) before any JAX computation.

  mode: 'auto' (join when a cluster launcher is detected, or when an address is given), 'on', 'off'.
  Explicit arguments (for local multi-process runs) override what the cluster environment gives.
  """
  if mode not in ('auto', 'on', 'off'):
    raise ValueError(f"distributed mode must be 'auto', 'on' or 'off', got {mode!r}")
  if jax.distributed.is_initialized():
    return True
  cluster = any(os.environ.get(k) for k in _CLUSTER_ENV)
  if mode == 'off' or (mode == 'auto' and not cluster and coordinator_address is None):
    return False
  if cluster and os.environ.get('SLURM_NTASKS') == '1' and coordinator_address is None:
    return False  # a one-task SLURM job is a single process
  kwargs = {
      k: v
      for k, v in dict(
          coordinator_address=coordinator_address,
          num_processes=num_processes,
          process_id=process_id,
      ).items()
      if v is not None
  }
  jax.distributed.initialize(**kwargs)
  logging.info(
      'joined distributed job: process %d of %d, %d local / %d global devices',
      jax.process_index(),
      jax.process_count(),
      jax.local_device_count(),
      jax.device_count(),
  )
  return True


def make_mesh(devices=None):
  """1-D mesh over all devices (or `devices`) with the `data` axis."""
  devices = np.asarray(jax.devices() if devices is None else devices)
  return Mesh(devices.reshape(-1), (DATA_AXIS,))


def replicated(mesh):
  return NamedSharding(mesh, P())


def batch_sharding(mesh, batch_axis=0):
  """Sharding of an array whose axis `batch_axis` is the (global) batch."""
  return NamedSharding(mesh, P(*([None] * batch_axis), DATA_AXIS))


def check_batch(global_batch_size, mesh, what='batch size'):
  """The global batch must split evenly over the devices and processes (static shapes)."""
  n = mesh.devices.size
  if global_batch_size % n:
    raise ValueError(f'{what} {global_batch_size} is not divisible by the {n} devices')
  if global_batch_size % jax.process_count():
    raise ValueError(
        f'{what} {global_batch_size} is not divisible by the {jax.process_count()} ' 'processes'
    )


def to_global(tree, mesh, batch_axis=0):
  """Host-local numpy batch (this process's rows) -> global jax.Arrays sharded along `batch_axis`."""
  sharding = batch_sharding(mesh, batch_axis)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree
  )
