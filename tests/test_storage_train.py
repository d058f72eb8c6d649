"""The trainer, the test protocol and classify with their workdir and data in a bucket, as a cluster
runs them: `python main.py --workdir=gs://...` subprocesses against the GCS emulator on localhost
(tests/gcs_emulator.py: gcsfs, tensorstore and array_record's GCS client all talk to it).

  - a run killed (-9) and restarted ends bit-identical to an uninterrupted local run, reading its
    clips from ArrayRecord shards in the bucket; the test protocol and classify then read `best/`
    from the bucket and give exactly the local run's scores;
  - the same first steps from a TFDS dataset in the bucket;
  - two processes (jax.distributed) share one bucket workdir and the synthetic data generated into
    it: process 0 writes the shared files, each process its own iterator state.

Every command runs from an empty folder, which must stay empty: a URL taken for a local path (the
old `./gs:/bucket/...` tree) would appear there.
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import orbax.checkpoint as ocp
import pytest

from rnl_jax import fileio
from rnl_jax.data import pack, synthetic, tfds_write

import test_distributed as runs
from conftest import REPO

NUM_TRAIN, NUM_VAL, BATCH = 24, 12, 8
EPOCHS = 4
TOTAL = EPOCHS * NUM_TRAIN // BATCH  # 12 steps


def _upload_tree(local, url):
  for folder, _, names in os.walk(local):
    for name in names:
      path = os.path.join(folder, name)
      fileio.upload(path, os.path.join(url, os.path.relpath(path, local)))


@pytest.fixture(scope='module')
def store(tmp_path_factory, gcs_server):
  """Synthetic data (the tiny config's: 12 frames of 40 px) locally, and in a bucket folder as
  packed ArrayRecord shards and as a TFDS dataset."""
  local = tmp_path_factory.mktemp('store')
  synth = local / 'synth'
  synthetic.generate(synth, NUM_TRAIN, NUM_VAL, num_frames=12, height=40, width=40)
  for split in ('train', 'val'):
    pack.main(
        ['--list', str(synth / f'{split}.txt'), '--root', str(synth / 'frames')]
        + ['--out', str(local / 'packed' / split), '--classes', str(synth / 'classes.txt')]
        + ['--no_progress']
    )
  tfds_write.main(
      ['--name', 'rnl_synth', '--data_dir', str(local / 'tfds'), '--dataset', 'synthetic']
      + ['--root', str(synth), '--no_progress']
  )
  url = f'{gcs_server}/store-{uuid.uuid4().hex[:8]}'
  _upload_tree(local / 'packed', f'{url}/packed')
  _upload_tree(local / 'tfds', f'{url}/tfds')
  return {'local': local, 'synth': synth, 'url': url}


def _arrayrecord_flags(packed):
  return [
      '--config.data.name=custom',
      '--config.data.format=arrayrecord',
      '--config.data.num_classes=12',
      f'--config.data.train_list={packed}/train.json',
      f'--config.data.val_list={packed}/val.json',
  ]


def _command(workdir, *extra):
  return [
      sys.executable,
      os.path.join(REPO, 'main.py'),
      f'--config={REPO}/configs/tiny.py',
      f'--workdir={workdir}',
      '--config.model.width=8',
      f'--config.data.synthetic.num_train={NUM_TRAIN}',
      f'--config.data.synthetic.num_val={NUM_VAL}',
      f'--config.batch_size={BATCH}',
      f'--config.eval_batch_size={BATCH}',
      f'--config.num_epochs={EPOCHS}',
      '--config.checkpoint_every_steps=2',
      '--config.keep_checkpoints=20',
      '--config.eval_every_epochs=2',
      *extra,
  ]


@pytest.fixture
def cwd(tmp_path):
  """An empty working folder for the subprocesses; it must still be empty afterwards."""
  folder = tmp_path / 'cwd'
  folder.mkdir()
  yield folder
  assert not os.listdir(folder), f'written as local paths: {os.listdir(folder)}'


def _env(devices=1):
  env = runs._env(devices)
  env['PYTHONPATH'] = os.pathsep.join([str(REPO), env.get('PYTHONPATH', '')])
  return env


def _run(cmd, cwd, timeout=600):
  proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def _finished_steps(ckpts):
  """Steps orbax considers complete (in a bucket a step folder exists before its save finishes)."""
  if not fileio.exists(ckpts):
    return []
  options = ocp.CheckpointManagerOptions(read_only=True)
  with ocp.CheckpointManager(ckpts, options=options) as manager:
    return list(manager.all_steps())


@pytest.fixture(scope='module')
def reference(tmp_path_factory, store):
  """An uninterrupted run with a local workdir on the local copy of the shards."""
  workdir = tmp_path_factory.mktemp('reference')
  cwd = tmp_path_factory.mktemp('reference_cwd')
  _run(_command(workdir, *_arrayrecord_flags(store['local'] / 'packed')), cwd)
  return workdir


def _assert_same_state(reference, workdir, step):
  expected, got = runs._leaves(runs._state(reference, step)), runs._leaves(
      runs._state(workdir, step)
  )
  assert expected.keys() == got.keys()
  for k in expected:
    np.testing.assert_array_equal(got[k], expected[k], err_msg=k)


def test_bucket_workdir_killed_and_resumed_is_bit_identical(reference, store, cwd, gcs_server):
  """Workdir and shards in the bucket: kill -9 after a checkpoint, restart, finish; the state equals
  the local uninterrupted run's bit for bit, and every workdir file is in the bucket."""
  workdir = f'{gcs_server}/run-{uuid.uuid4().hex[:8]}'
  ckpts = f'{workdir}/checkpoints'
  cmd = _command(workdir, *_arrayrecord_flags(f'{store["url"]}/packed'))
  proc = subprocess.Popen(
      cmd, cwd=cwd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
  )
  try:
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not _finished_steps(ckpts):
      time.sleep(0.2)
    assert proc.poll() is None, 'the run ended before the kill: ' + proc.stderr.read()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
  finally:
    if proc.poll() is None:
      proc.kill()
  killed_at = _finished_steps(ckpts)[-1]
  assert killed_at < TOTAL
  out = _run(cmd, cwd)
  assert f'resumed from {ckpts} at step {killed_at}' in out.stderr, out.stderr[-2000:]
  _assert_same_state(reference, workdir, TOTAL)
  names = set(fileio.listdir(workdir))
  assert {'config.json', 'results.json', 'checkpoints', 'best', 'tensorboard'} <= names, names
  events = fileio.listdir(f'{workdir}/tensorboard')
  assert len(events) == 2  # one event file per run (killed, resumed), each written as it went
  assert all(fileio.getsize(f'{workdir}/tensorboard/{name}') > 0 for name in events)
  results = json.loads(fileio.read_text(f'{workdir}/results.json'))
  local = json.loads((reference / 'results.json').read_text())
  assert [h['top1'] for h in results['history']] == [h['top1'] for h in local['history']]

  # The test protocol reads best/ from the bucket and writes its outputs there: the local run's
  # scores exactly.
  protocol = ['--config.mode=test', '--config.test.dense_clips=2', '--config.test.output=test']
  _run(_command(workdir, *_arrayrecord_flags(f'{store["url"]}/packed'), *protocol), cwd)
  _run(_command(reference, *_arrayrecord_flags(store['local'] / 'packed'), *protocol), cwd)
  got = json.loads(fileio.read_text(f'{workdir}/test.json'))
  expected = json.loads((reference / 'test.json').read_text())
  for key in ('top1', 'top5', 'mean_class_acc', 'num_videos'):
    assert got[key] == expected[key], key
  assert got['checkpoint'] == f'{workdir}/best'

  # classify --checkpoint gs://.../best: the local best's answer.
  video = str(store['synth'] / 'frames' / 'val_000003')
  answers = []
  for best in (f'{workdir}/best', str(reference / 'best')):
    cmd = [sys.executable, '-m', 'rnl_jax.classify', video, '--checkpoint', best, '--json']
    answers.append(json.loads(_run(cmd, cwd).stdout)[0]['top5'])
  assert answers[0] == answers[1]


def test_tfds_dataset_in_a_bucket_trains_like_the_shards(reference, store, cwd, gcs_server):
  """Two steps reading the TFDS copy from the bucket (tfds_data_dir=gs://...): the state equals the
  reference's at step 2 bit for bit (the same JPEG bytes, the same clips)."""
  workdir = f'{gcs_server}/tfds-run-{uuid.uuid4().hex[:8]}'
  tfds_flags = [
      '--config.data.format=tfds',
      '--config.data.tfds_name=rnl_synth',
      f'--config.data.tfds_data_dir={store["url"]}/tfds',
      '--config.num_train_steps=2',
  ]
  _run(_command(workdir, *tfds_flags), cwd)
  _assert_same_state(reference, workdir, 2)


def test_two_processes_share_a_bucket_workdir(reference, store, cwd, gcs_server):
  """2 processes x 1 device, workdir in the bucket, the synthetic data generated into
  WORKDIR/data by process 0: the parameters match the single-process run (up to summation order);
  each process saved its own iterator state; the shared files were written once."""
  workdir = f'{gcs_server}/two-{uuid.uuid4().hex[:8]}'
  port = runs._free_port()
  errs = runs._run_processes(
      [
          _command(
              workdir,
              '--config.num_train_steps=2',
              f'--coordinator_address=127.0.0.1:{port}',
              '--num_processes=2',
              f'--process_id={i}',
          )
          for i in range(2)
      ],
      cwd,
      _env(),
  )
  assert 'on 2 devices / 2 processes' in errs[0]
  assert 'generated 36 synthetic videos' in errs[0]
  assert 'generated' not in errs[1]
  runs._assert_close(reference, workdir, 2)
  data = f'{workdir}/checkpoints/2/data'
  assert len([f for f in fileio.listdir(data) if f.endswith('.json')]) == 2
  assert len(fileio.listdir(f'{workdir}/data/frames')) == NUM_TRAIN + NUM_VAL
  assert len(fileio.listdir(f'{workdir}/tensorboard')) == 1  # process 0 only
