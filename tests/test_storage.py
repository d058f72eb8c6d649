"""rnl_jax.fileio against real object-storage servers on localhost (tests/gcs_emulator.py for GCS,
tests/s3_emulator.py for S3): the same calls work on local paths, gs:// and s3:// URLs, and nothing
lands in a local `gs:` or `s3:` folder."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from rnl_jax import checkpoint, ensemble, fileio, scores

from conftest import REPO


@pytest.fixture(params=['local', 'gs', 's3'])
def root(request, tmp_path, monkeypatch):
  """A fresh folder: local, or in the emulator's bucket (run from an empty cwd: a URL mistaken for
  a local path would appear there)."""
  monkeypatch.chdir(tmp_path)
  if request.param == 'local':
    yield str(tmp_path.parent / f'{tmp_path.name}-root')
    return
  yield request.getfixturevalue('bucket' if request.param == 'gs' else 's3_bucket')
  assert not os.listdir(tmp_path), 'a URL was written as a local path'


def test_write_read_list_and_remove(root):
  fileio.makedirs(f'{root}/a')
  fileio.write_text(f'{root}/a/x.txt', 'hello\n')
  fileio.write_json(f'{root}/a/y.json', {'k': [1, 2]}, indent=1, newline=True)
  with fileio.open(f'{root}/a/z.bin', 'wb') as f:
    f.write(b'\0\1\2')
  assert fileio.read_text(f'{root}/a/x.txt') == 'hello\n'
  assert json.loads(fileio.read_text(f'{root}/a/y.json')) == {'k': [1, 2]}
  assert fileio.read_text(f'{root}/a/y.json').endswith('}\n')
  assert fileio.read_bytes(f'{root}/a/z.bin') == b'\0\1\2'
  assert fileio.getsize(f'{root}/a/z.bin') == 3
  assert sorted(fileio.listdir(f'{root}/a')) == ['x.txt', 'y.json', 'z.bin']
  assert fileio.isdir(f'{root}/a') and not fileio.isfile(f'{root}/a')
  assert fileio.isfile(f'{root}/a/x.txt') and not fileio.isdir(f'{root}/a/x.txt')
  assert fileio.glob(f'{root}/a/*.json') == [f'{root}/a/y.json']
  assert fileio.glob(f'{root}/a/[xz].*') == [f'{root}/a/x.txt', f'{root}/a/z.bin']
  assert fileio.glob(f'{root}/a/x.txt') == [f'{root}/a/x.txt']
  assert fileio.glob(f'{root}/a/nothing') == []
  assert not fileio.write_text(f'{root}/a/x.txt', 'hello\n', only_if_changed=True)
  assert fileio.write_text(f'{root}/a/x.txt', 'bye\n', only_if_changed=True)
  assert fileio.read_text(f'{root}/a/x.txt') == 'bye\n'
  fileio.remove(f'{root}/a/x.txt')
  assert not fileio.exists(f'{root}/a/x.txt') and fileio.exists(f'{root}/a/y.json')
  fileio.remove(f'{root}/a')
  fileio.remove(f'{root}/a')  # nothing there is fine
  assert not fileio.exists(f'{root}/a/y.json')
  with pytest.raises(FileNotFoundError):
    fileio.read_text(f'{root}/missing.txt')


def test_atomic_path_publishes_only_a_finished_file(root):
  """A library writes a local temporary; the final path appears when the block ends, and not at
  all when it raises."""
  fileio.makedirs(root)
  target = f'{root}/out.bin'
  with fileio.atomic_path(target) as tmp:
    assert not fileio.is_remote(tmp)
    with open(tmp, 'wb') as f:
      f.write(b'x' * 1000)
    assert not fileio.exists(target)
  assert fileio.read_bytes(target) == b'x' * 1000
  with pytest.raises(RuntimeError):
    with fileio.atomic_path(f'{root}/failed.bin') as tmp:
      open(tmp, 'wb').close()
      raise RuntimeError
  assert not fileio.exists(f'{root}/failed.bin')
  assert fileio.listdir(root) == ['out.bin']


def test_absolute_keeps_urls_and_copies_cross_backends(root, tmp_path):
  assert fileio.absolute('gs://b/x/../y') == 'gs://b/x/../y'
  assert fileio.absolute('rel') == os.path.join(os.getcwd(), 'rel')
  assert fileio.is_remote('s3://b/k') and not fileio.is_remote('/a/b')
  local = tmp_path.parent / f'{tmp_path.name}-src.bin'
  local.write_bytes(b'abc')
  fileio.makedirs(root)
  fileio.upload(str(local), f'{root}/c.bin')
  fileio.copy_to_local(f'{root}/c.bin', str(local) + '.back')
  assert open(str(local) + '.back', 'rb').read() == b'abc'


def test_score_files_and_ensembles_in_s3(s3_bucket, tmp_path, monkeypatch):
  """What goes through epath works on s3:// (moto's server): score files written by the test
  protocol's writer, read back and ensembled with the result written to the bucket."""
  monkeypatch.chdir(tmp_path)
  logits = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0]], np.float32)
  for i, name in enumerate(('a', 'b')):
    scores.save_scores(f'{s3_bucket}/{name}.npz', ['v0', 'v1'], [0, 2], logits * (i + 1), 'xyz')
  loaded = scores.load_scores(f'{s3_bucket}/b.npz')
  np.testing.assert_array_equal(loaded['logits'], 2 * logits)
  assert loaded['video_ids'].tolist() == ['v0', 'v1']
  code = ensemble.main([f'{s3_bucket}/a.npz', f'{s3_bucket}/b.npz', '--out', f'{s3_bucket}/e.json'])
  assert code in (0, None)
  result = json.loads(fileio.read_text(f'{s3_bucket}/e.json'))
  assert result['top1'] == 1.0
  assert not os.listdir(tmp_path)


def test_s3_checkpoints_are_a_one_line_error(tmp_path):
  """orbax-checkpoint writes gs:// and local paths only: an s3:// workdir or checkpoint fails before
  anything runs, in one line that says what to do instead."""
  with pytest.raises(checkpoint.CheckpointError, match='mount the bucket'):
    checkpoint.save_checkpoint('s3://b/ckpt', {'params': {}, 'batch_stats': {}})
  with pytest.raises(checkpoint.CheckpointError, match='orbax checkpoints go to local paths or gs'):
    checkpoint.restore_variables('s3://b/best')
  proc = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/tiny.py', '--workdir=s3://b/run'],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert proc.returncode == 2, proc.stderr[-2000:]
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith('error: s3://b/run: orbax checkpoints go to local paths or gs://'), last
  assert 'Traceback' not in proc.stderr
