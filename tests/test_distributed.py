"""The trainer as users run it (`python main.py` subprocesses): kill -9 and resume bit-identically,
8 fake devices and 2 processes (jax.distributed, CPU collectives) matching 1 device / 1 process."""

import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from rnl_jax.data import synthetic

from conftest import REPO

NUM_TRAIN, NUM_VAL, BATCH = 24, 12, 8
EPOCHS = 8
TOTAL = EPOCHS * NUM_TRAIN // BATCH  # 8 epochs of 3 steps


def _command(workdir, data, *extra):
  return [
      sys.executable,
      'main.py',
      '--config=configs/tiny.py',
      f'--workdir={workdir}',
      '--config.model.width=8',
      f'--config.data.root={data}',
      f'--config.data.synthetic.num_train={NUM_TRAIN}',
      f'--config.data.synthetic.num_val={NUM_VAL}',
      f'--config.batch_size={BATCH}',
      f'--config.eval_batch_size={BATCH}',
      f'--config.num_epochs={EPOCHS}',
      '--config.checkpoint_every_steps=2',
      '--config.keep_checkpoints=20',
      '--config.eval_every_epochs=4',
      *extra,
  ]


def _env(devices=1, optimized=False):
  env = dict(os.environ)
  env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
  env.pop('JAX_DISABLE_MOST_OPTIMIZATIONS', None)
  if not optimized:
    # Every run here is compared with another run compiled the same way, so XLA's optimisations
    # change no assertion; without them the tiny model compiles in about half the time.
    env['JAX_DISABLE_MOST_OPTIMIZATIONS'] = '1'
  env.pop('JAX_PLATFORMS', None)
  return env


def _run(cmd, devices=1, timeout=600, optimized=False):
  proc = subprocess.run(
      cmd,
      cwd=REPO,
      env=_env(devices, optimized),
      capture_output=True,
      text=True,
      timeout=timeout,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def _state(workdir, step):
  """The saved train state, restored onto this process's one device (whatever mesh saved it)."""
  path = os.path.join(workdir, 'checkpoints', str(step), 'state')
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  with ocp.StandardCheckpointer() as ckptr:
    tree = ckptr.metadata(path).item_metadata
    tree = getattr(tree, 'tree', tree)
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), tree)
    return ckptr.restore(path, target)


def _leaves(tree):
  return {
      jax.tree_util.keystr(path): np.asarray(leaf)
      for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
  }


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  root = tmp_path_factory.mktemp('data')
  synthetic.generate(root, NUM_TRAIN, NUM_VAL, num_frames=12, height=40, width=40)
  return root


@pytest.fixture(scope='module')
def reference(tmp_path_factory, data):
  """An uninterrupted single-device run of TOTAL steps."""
  workdir = tmp_path_factory.mktemp('reference')
  _run(_command(workdir, data))
  return workdir


def _steps(ckpts):
  return sorted(int(s) for s in os.listdir(ckpts) if s.isdigit()) if ckpts.exists() else []


def _start_and_signal(cmd, ckpts, after_step, sig, group=False):
  """Starts a run, sends `sig` once a checkpoint past `after_step` exists (to its whole process
  group with `group`, as a terminal's Ctrl-C does); returns (code, stderr)."""
  proc = subprocess.Popen(
      cmd,
      cwd=REPO,
      env=_env(),
      stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE,
      text=True,
      start_new_session=group,
  )
  deadline = time.time() + 600
  try:
    # orbax renames a finished save into place, so a listed step is a complete checkpoint
    while (
        time.time() < deadline
        and proc.poll() is None
        and not any(s > after_step for s in _steps(ckpts))
    ):
      time.sleep(0.05)
    assert proc.poll() is None, 'the run ended before the signal: ' + proc.stderr.read()[-2000:]
    (os.killpg if group else os.kill)(proc.pid, sig)
    _, err = proc.communicate(timeout=300)
  finally:
    if proc.poll() is None:
      proc.kill()
  return proc.returncode, err


def test_sigkill_and_sigterm_then_restart_is_bit_identical(reference, data, tmp_path):
  """kill -9 mid-run, restart, SIGTERM (save and exit), restart: the final parameters, BatchNorm
  statistics and optimizer state equal the uninterrupted run's bit for bit."""
  workdir = tmp_path / 'killed'
  ckpts = workdir / 'checkpoints'
  code, _ = _start_and_signal(_command(workdir, data), ckpts, 2, signal.SIGKILL)
  assert code == -signal.SIGKILL
  killed_at = _steps(ckpts)[-1]
  assert killed_at < TOTAL
  code, err = _start_and_signal(_command(workdir, data), ckpts, killed_at, signal.SIGTERM)
  assert f'resumed from {ckpts} at step {killed_at}' in err
  assert code == 143, err[-2000:]
  termed_at = _steps(ckpts)[-1]
  assert f'SIGTERM: saved step {termed_at}' in err and killed_at < termed_at < TOTAL
  out = _run(_command(workdir, data))
  assert f'resumed from {ckpts} at step {termed_at}' in out.stderr
  expected, got = _leaves(_state(reference, TOTAL)), _leaves(_state(workdir, TOTAL))
  assert expected.keys() == got.keys()
  for k in expected:
    np.testing.assert_array_equal(got[k], expected[k], err_msg=k)  # bit-identical on CPU


def test_ctrl_c_saves_then_restart_is_bit_identical(reference, data, tmp_path):
  """Ctrl-C (SIGINT to the process group, data workers included) saves a checkpoint at the end of
  the step and exits 130 without a traceback; the restart ends bit-identical to the uninterrupted
  run (whose data order does not depend on the worker count)."""
  workdir = tmp_path / 'interrupted'
  ckpts = workdir / 'checkpoints'
  cmd = _command(workdir, data, '--config.data.num_workers=2')
  code, err = _start_and_signal(cmd, ckpts, 1, signal.SIGINT, group=True)
  assert code == 130, err[-2000:]
  saved = _steps(ckpts)[-1]
  assert f'SIGINT: saved step {saved}' in err and saved < TOTAL, err[-2000:]
  assert 'Traceback' not in err and 'KeyboardInterrupt' not in err, err[-2000:]
  out = _run(cmd)
  assert f'resumed from {ckpts} at step {saved}' in out.stderr
  expected, got = _leaves(_state(reference, TOTAL)), _leaves(_state(workdir, TOTAL))
  assert expected.keys() == got.keys()
  for k in expected:
    np.testing.assert_array_equal(got[k], expected[k], err_msg=k)


def _assert_close(reference, workdir, step):
  expected, got = _leaves(_state(reference, step)), _leaves(_state(workdir, step))
  assert expected.keys() == got.keys()
  for k in expected:
    if expected[k].dtype.kind != 'f':
      np.testing.assert_array_equal(got[k], expected[k], err_msg=k)
    else:
      np.testing.assert_allclose(got[k], expected[k], rtol=2e-4, atol=2e-6, err_msg=k)


def test_eight_devices_match_one(data, tmp_path):
  """Same global batch of 8 clips on 8 fake CPU devices: BatchNorm over the global batch, so the
  parameters after 2 steps equal the single-device run's up to summation order.

  Both runs compile with XLA's optimisations, as users run. With JAX_DISABLE_MOST_OPTIMIZATIONS the
  unoptimised programs' rounding puts one pre-ReLU value of the second step on either side of zero
  (9e-7 against -4e-9), and that one pixel is ~3 % of a BatchNorm gradient in this tiny model; the
  8-device program fed the 1-device state matches (docs/performance.md#cpu-training-levers). A
  failure here after a change can be such a tie: feed both programs the same state to tell.
  """
  one, eight = tmp_path / 'one', tmp_path / 'eight'
  _run(_command(one, data, '--config.num_train_steps=2'), optimized=True)
  out = _run(_command(eight, data, '--config.num_train_steps=2'), devices=8, optimized=True)
  assert 'on 8 devices / 1 processes' in out.stderr
  _assert_close(one, eight, 2)


def _run_processes(commands, cwd, env, timeout=600):
  """Runs `commands` together (the processes of one jax.distributed job) until all end; each must
  exit 0. Returns their stderr."""
  procs = [
      subprocess.Popen(
          cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
      )
      for cmd in commands
  ]
  outs = []
  try:
    for p in procs:
      outs.append(p.communicate(timeout=timeout))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  return [err for _, err in outs]


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_match_one(reference, data, tmp_path):
  """2 processes x 1 device joined by jax.distributed.initialize (gloo CPU collectives), each feeding
  its half of every global batch, give the single-process parameters."""
  port = _free_port()
  errs = _run_processes(
      [
          _command(
              tmp_path,
              data,
              '--config.num_train_steps=2',
              f'--coordinator_address=127.0.0.1:{port}',
              '--num_processes=2',
              f'--process_id={i}',
          )
          for i in range(2)
      ],
      REPO,
      _env(),
  )
  assert 'on 2 devices / 2 processes' in errs[0]
  _assert_close(reference, tmp_path, 2)
  # Each process saved its own input-pipeline position next to the shared state.
  data_dir = tmp_path / 'checkpoints' / '2' / 'data'
  assert len([f for f in os.listdir(data_dir) if f.endswith('.json')]) == 2
