"""The tools on a bucket (issue 20): the converter, classify, the test protocol and ensembles read
and write `gs://` paths of the GCS emulator (tests/gcs_emulator.py) and give exactly what they give
on the local copy. Every test runs from an empty cwd, which must stay free of a local `gs:` folder
(a URL mistaken for a local path)."""

import io
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO
import test_classify
import test_protocol
import torch_reference as tr
from rnl_jax import checkpoint as checkpoint_lib
from rnl_jax import classify as cl
from rnl_jax import config as config_lib
from rnl_jax import convert
from rnl_jax import ensemble
from rnl_jax import fileio
from rnl_jax import protocol
from rnl_jax import scores as scores_lib
from rnl_jax.data import synthetic, video
from rnl_jax.models import Architecture, build_model


@pytest.fixture
def cwd(tmp_path, monkeypatch):
  """An empty working directory (subprocesses get it too); afterwards nothing under it may be
  named like a URL's mangled scheme."""
  work = tmp_path / 'cwd'
  work.mkdir()
  monkeypatch.chdir(work)
  yield work
  mangled = [
      os.path.join(d, n) for d, dirs, files in os.walk(tmp_path) for n in dirs + files if 'gs:' in n
  ]
  assert not mangled, f'URLs written as local paths: {mangled}'


def upload_tree(local, url):
  """Copies the local folder `local` (a checkpoint: orbax's files and model.json) file by file to
  `url` (no normpath: it would fold `gs://`)."""
  for folder, _, files in os.walk(local):
    rel = os.path.relpath(folder, local)
    target = url if rel == '.' else f'{url}/{rel}'
    for name in files:
      fileio.upload(os.path.join(folder, name), f'{target}/{name}')


# ----------------------------------------------------------------------------------------------------
# the converter: a .pth.tar in the bucket -> a checkpoint directory in the bucket


def test_convert_from_and_to_a_bucket(bucket, cwd, tmp_path):
  model = tr.build_tsn(5, 4, depth=18, non_local=True)
  local = tmp_path / 'TSM_x_RGB_resnet18_shift8_blockres_avg_segment4_e1.pth.tar'
  torch.save({'epoch': 2, 'state_dict': model.state_dict()}, local)
  src = f'{bucket}/weights/{local.name}'
  fileio.upload(str(local), src)
  expected, arch = convert.convert_checkpoint(str(local))

  # the CLI, as documented (a subprocess, cwd empty)
  dst = f'{bucket}/converted'
  proc = subprocess.run(
      [sys.executable, str(REPO / 'convert_torch_weights.py'), src, dst],
      capture_output=True,
      text=True,
      cwd=cwd,
  )
  assert proc.returncode == 0, proc.stderr
  summary = json.loads(proc.stdout)
  assert summary['destination'] == dst and summary['epoch'] == 2
  assert fileio.isfile(f'{dst}/model.json')
  restored, meta = checkpoint_lib.restore_variables(dst)
  assert meta['source'] == src and Architecture(**meta['architecture']) == arch
  jax.tree.map(np.testing.assert_array_equal, restored, expected)

  # the .pth.tar read straight from the bucket (converted in memory, as classify and the protocol
  # do with a .pth.tar checkpoint)
  _, variables = checkpoint_lib.load_checkpoint(src)
  jax.tree.map(np.testing.assert_array_equal, variables, expected)
  with pytest.raises(convert.ConversionError, match=f'{bucket}/nothing.pth.tar: no such file'):
    convert.load_torch_state_dict(f'{bucket}/nothing.pth.tar')
  fileio.write_text(f'{bucket}/notes.pth.tar', 'not a checkpoint\n')
  with pytest.raises(convert.ConversionError, match='notes.pth.tar: not a PyTorch checkpoint'):
    convert.load_torch_state_dict(f'{bucket}/notes.pth.tar')


# ----------------------------------------------------------------------------------------------------
# classify: --checkpoint and --attention in the bucket


@pytest.fixture(scope='module')
def classify_setup(tmp_path_factory):
  """test_classify's kind of checkpoint (RNL ResNet-18, width 8, its inputs and class names), an mp4
  and a frame folder, all local."""
  root = tmp_path_factory.mktemp('classify')
  arch = Architecture(num_classes=len(test_classify.NAMES), depth=18, width=8)
  variables = test_classify.random_variables(build_model(arch, dropout=0.0))
  ckpt = checkpoint_lib.save_checkpoint(
      str(root / 'ckpt'),
      variables,
      architecture=arch,
      inputs=test_classify.INPUTS,
      classes=test_classify.NAMES,
  )
  rng = np.random.default_rng(0)
  mp4 = video.write_video(str(root / 'clip.mp4'), synthetic.render_clip(0, rng, num_frames=13))
  folder = root / 'frames'
  folder.mkdir()
  for k, frame in enumerate(synthetic.render_clip(4, rng, num_frames=10), 1):
    Image.fromarray(frame).save(folder / f'{k:06d}.jpg', quality=90)
  return {'ckpt': ckpt, 'mp4': mp4, 'folder': str(folder)}


def test_classify_with_a_bucket_checkpoint(classify_setup, bucket, cwd, tmp_path):
  s = classify_setup
  ckpt = f'{bucket}/ckpt'
  upload_tree(s['ckpt'], ckpt)
  videos = [s['mp4'], s['folder']]
  runs = {}
  for where, checkpoint, png in [
      ('local', s['ckpt'], str(tmp_path / 'att.png')),
      ('gs', ckpt, f'{bucket}/pictures/att.png'),
  ]:
    out, err = io.StringIO(), io.StringIO()
    argv = ['--checkpoint', checkpoint, '--json', '--crops', '3', '--attention', png, *videos]
    assert cl.main(argv, out, err) == 0, err.getvalue()
    runs[where] = json.loads(out.getvalue())
  local, remote = runs['local'], runs['gs']
  for a, b, k in zip(local, remote, range(len(videos))):
    assert a['top5'] == b['top5'] and a['num_views'] == b['num_views'] == 3
    assert b['attention'] == f'{bucket}/pictures/att_{k}.png'
    assert fileio.read_bytes(b['attention']) == open(a['attention'], 'rb').read()
  assert {e['name'] for e in remote[0]['top5']} <= set(test_classify.NAMES)  # the stored classes

  err = io.StringIO()
  assert cl.main(['--checkpoint', f'{bucket}/nothing', s['mp4']], io.StringIO(), err) == 2
  assert err.getvalue() == f'error: checkpoint {bucket}/nothing: no such file or directory\n'


# ----------------------------------------------------------------------------------------------------
# the test protocol: checkpoint and workdir in the bucket, the data local


def test_protocol_with_a_bucket_checkpoint_and_workdir(bucket, cwd, tmp_path):
  workdir = str(tmp_path / 'local')
  config = test_protocol.small_test_config(workdir, crops=1, twice_sample=False)
  arch = config_lib.architecture_from_config(config)
  model = config_lib.model_from_config(config)
  checkpoint_lib.save_checkpoint(
      config.test.checkpoint, test_classify.random_variables(model, seed=3), architecture=arch
  )
  local = protocol.test(config, workdir)

  ckpt = f'{bucket}/ckpt'
  upload_tree(config.test.checkpoint, ckpt)
  remote_dir = f'{bucket}/run'
  config = test_protocol.small_test_config(workdir, crops=1, twice_sample=False)
  config.test.checkpoint = ckpt
  config.data.root = os.path.join(workdir, 'data')  # the videos stay local (generated above)
  remote = protocol.test(config, remote_dir)

  assert remote['checkpoint'] == ckpt and local['checkpoint'] == os.path.join(workdir, 'ckpt')
  for key in ('top1', 'top5', 'mean_class_acc', 'num_videos', 'protocol'):
    assert remote[key] == local[key], key
  a = scores_lib.load_scores(os.path.join(workdir, 'test_scores.npz'))
  b = scores_lib.load_scores(f'{remote_dir}/test_scores.npz')
  for key in ('video_ids', 'labels', 'logits', 'class_names'):
    np.testing.assert_array_equal(a[key], b[key])
  assert sorted(fileio.listdir(remote_dir)) == [
      'test.json',
      'test_per_class.csv',
      'test_scores.npz',
  ]
  csv = 'test_per_class.csv'
  assert fileio.read_bytes(f'{remote_dir}/{csv}') == open(os.path.join(workdir, csv), 'rb').read()
  saved = json.loads(fileio.read_text(f'{remote_dir}/test.json'))
  assert saved['checkpoint'] == ckpt and saved['top1'] == local['top1']


# ----------------------------------------------------------------------------------------------------
# ensembles: score files in the bucket


def test_ensemble_of_bucket_score_files(bucket, cwd, tmp_path, capsys):
  rng = np.random.default_rng(0)
  ids, labels, names = [f'v{i}' for i in range(9)], np.arange(9) % 3, ['a', 'b', 'c']
  files = {}
  for where, root in [('local', str(tmp_path)), ('gs', bucket)]:
    rng = np.random.default_rng(0)
    files[where] = [f'{root}/m{k}_scores.npz' for k in range(2)]
    for path in files[where]:
      scores_lib.save_scores(path, ids, labels, rng.normal(size=(9, 3)), names)
  # np.savez adds '.npz' to a name without it; the scores file keeps the name it was given
  scores_lib.save_scores(f'{bucket}/plain', ids, labels, np.zeros((9, 3)), names)
  assert fileio.listdir(bucket).count('plain') == 1
  assert scores_lib.load_scores(f'{bucket}/plain')['logits'].shape == (9, 3)

  outputs = {}
  for where, (a, b) in files.items():
    root = os.path.dirname(a)
    argv = [a, b, '--coeff', '1,2', '--out', f'{root}/ens.json', '--scores_out', f'{root}/ens.npz']
    assert ensemble.main(argv) == 0
    result = json.loads(fileio.read_text(f'{root}/ens.json'))
    assert result.pop('files') == [a, b]
    outputs[where] = result, scores_lib.load_scores(f'{root}/ens.npz')
  assert outputs['gs'][0] == outputs['local'][0]
  np.testing.assert_array_equal(outputs['gs'][1]['logits'], outputs['local'][1]['logits'])
  capsys.readouterr()

  with pytest.raises(SystemExit) as e:  # a missing bucket file: one line, exit status 2
    ensemble.main([files['gs'][0], f'{bucket}/missing.npz'])
  assert e.value.code == 2
  assert f'{bucket}/missing.npz: not a scores file' in capsys.readouterr().err
