"""TensorFlow Datasets without TensorFlow (issue 19): frame folders -> TFDS (tfds_write) -> the
frame folders' clips bit for bit (tfds_source.TfdsSource), the same training; plain TFDS reads
it without rnl_jax or TensorFlow."""

import importlib.util
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds  # the [tfds] extra (in [test])

import conftest
from rnl_jax import cli, input_pipeline, train
from rnl_jax import config as config_lib
from rnl_jax.data import datasets, synthetic, tfds_source, tfds_write
from rnl_jax.data.sources import CorruptVideoError, FrameFolderSource
from rnl_jax.errors import ConfigError, UserError

NAME = 'rnl_test_tiny'  # the tiny config's synthetic set (training runs)
VARIED = 'rnl_test_varied'  # a list with varied frame counts over the same folders (clips)
TEMPLATE = 'img_{:05d}.jpg'
NUM_TRAIN, NUM_VAL, FRAMES, SIZE = 24, 12, 12, 40  # small_config below: the synthetic set it reads
LIST_FRAMES = (12, 5, 2, 8, 3, 12, 7, 1, 10, 4)  # 2 and 1: dropped (F < 3)


def small_config(**overrides):
  """The trainer tests' smallest config (conftest.small_config) for one epoch of 3 steps."""
  return conftest.small_config(**{'num_epochs': 1.0, 'checkpoint_every_steps': 100, **overrides})


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  """The synthetic frame folders, written as TFDS twice: the table layout (both lists) and a list of
  varied frame counts (as 'train' and 'validation')."""
  root = tmp_path_factory.mktemp('tfds')
  synth = root / 'synth'
  synthetic.generate(synth, NUM_TRAIN, NUM_VAL, num_frames=FRAMES, height=SIZE, width=SIZE)
  varied = root / 'varied.txt'
  varied.write_text(''.join(f'train_{i:06d} {f} {i % 12}\n' for i, f in enumerate(LIST_FRAMES)))
  data_dir = root / 'tfds'
  summary = tfds_write.main(
      [
          '--name',
          NAME,
          '--data_dir',
          str(data_dir),
          '--dataset',
          'synthetic',
          '--root',
          str(synth),
          '--no_progress',
      ]
  )
  assert summary['splits'] == {'train': NUM_TRAIN, 'validation': NUM_VAL}
  assert summary['skipped'] == 0
  tfds_write.write(
      VARIED,
      data_dir,
      root=synth / 'frames',
      train_list=varied,
      val_list=varied,
      classes_file=synth / 'classes.txt',
      verify='header',
      progress=False,
  )
  return {
      'root': root,
      'synth': synth,
      'frames': synth / 'frames',
      'varied': varied,
      'data_dir': str(data_dir),
      'summary': summary,
  }


def folder_source(data, list_file, mode, **kw):
  records, _ = datasets.filter_records(datasets.parse_list_file(list_file), mode)
  return FrameFolderSource(data['frames'], records, TEMPLATE, mode=mode, **kw)


def tfds_clips(data, split, mode, name=VARIED, **kw):
  return tfds_source.TfdsSource(name, split, data['data_dir'], mode=mode, **kw)


def assert_same_clips(a, b, **get_kw):
  assert len(a) == len(b) > 0
  for i in range(len(a)):
    x, y = a.get(i, **get_kw), b.get(i, **get_kw)
    assert x['label'] == y['label'] and x['video_index'] == y['video_index'] == i
    assert x['frames'].dtype == np.uint8 and np.array_equal(x['frames'], y['frames']), i


# --------------------------------------------------------------------------------------------------
# writing


def test_written_dataset_holds_the_lists_in_order_with_the_index(data):
  builder = tfds.builder_from_directory(os.path.join(data['data_dir'], NAME, '1.0.0'))
  info = builder.info
  assert {s: info.splits[s].num_examples for s in ('train', 'validation')} == {
      'train': NUM_TRAIN,
      'validation': NUM_VAL,
  }
  assert str(info.features['frames'].feature.encoding_format) == 'jpeg'
  classes = datasets.read_class_names(data['synth'] / 'classes.txt')
  assert info.features['label'].names == classes
  index = info.metadata['rnl_jax']
  for split, list_name in (('train', 'train.txt'), ('validation', 'val.txt')):
    records = datasets.parse_list_file(data['synth'] / list_name)
    assert index['splits'][split] == {
        'path': [r.path for r in records],
        'label': [r.label for r in records],
        'num_frames': [r.num_frames for r in records],
    }
  # The records themselves: list order, the JPEG files' bytes unchanged.
  ds = builder.as_data_source(split='train', decoders={'frames': tfds_source.keep_encoded()})
  first = datasets.parse_list_file(data['synth'] / 'train.txt')
  for i in (0, 5, NUM_TRAIN - 1):
    ex = ds[i]
    path = ex['path'].decode() if isinstance(ex['path'], bytes) else ex['path']
    got = (path, int(ex['label']), int(ex['num_frames']))
    assert got == (first[i].path, first[i].label, FRAMES)
    for k in (1, FRAMES):
      with open(data['frames'] / first[i].path / TEMPLATE.format(k), 'rb') as f:
        assert bytes(ex['frames'][k - 1]) == f.read()


def test_write_errors_and_skip_corrupt(data, tmp_path, capsys):
  bad = tmp_path / 'bad.txt'
  bad.write_text('train_000000 12 0\nnot_there 5 1\ntrain_000001 12 1\n')
  common = [
      '--data_dir',
      str(tmp_path / 'out'),
      '--root',
      str(data['frames']),
      '--train_list',
      str(bad),
      '--no_progress',
  ]
  with pytest.raises(SystemExit) as e:
    tfds_write.main(['--name', 'rnl_bad', *common])
  assert e.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()[-1]
  assert err.startswith('error: ') and 'not_there' in err and '--skip_corrupt' in err
  summary = tfds_write.main(['--name', 'rnl_bad', '--skip_corrupt', *common])
  assert summary['splits'] == {'train': 2} and summary['skipped'] == 1
  source = tfds_source.TfdsSource('rnl_bad', 'train', tmp_path / 'out', mode='val', num_segments=4)
  assert [r.path for r in source.records] == ['train_000000', 'train_000001']
  for argv, message in (
      (['--name', 'rnl_bad', *common], 'exists; pass --overwrite'),
      (['--name', 'ucf101', *common], 'TFDS catalog dataset'),
      (['--name', 'Bad-Name', *common], 'lower case'),
  ):
    with pytest.raises(SystemExit):
      tfds_write.main(argv)
    assert message in capsys.readouterr().err


def test_cli_help_and_both_spellings(data, tmp_path, capsys):
  proc = subprocess.run(
      [sys.executable, '-m', 'rnl_jax.data.tfds_write', '--help'], capture_output=True, text=True
  )
  assert proc.returncode == 0 and '--skip_corrupt' in proc.stdout and '--data_dir' in proc.stdout
  for flag in ('--train_list', '--train-list'):  # a missing list: one line, exit 2
    with pytest.raises(SystemExit) as e:
      tfds_write.main(
          [
              '--name',
              'rnl_x',
              '--data_dir',
              str(tmp_path),
              '--root',
              str(tmp_path),
              flag,
              str(tmp_path / 'nope.txt'),
          ]
      )
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: train list') and 'nope.txt' in err and '\n' not in err


# --------------------------------------------------------------------------------------------------
# reading: the frame folders' clips


@pytest.mark.parametrize(
    'mode,kw',
    [
        ('val', {}),
        ('test', {'twice_sample': True}),
        ('test', {'dense': True, 'num_clips': 3}),
        ('val', {'decoder': 'pil'}),
    ],
)
def test_eval_clips_identical_to_frame_folders(data, mode, kw):
  folders = folder_source(data, data['varied'], mode, num_segments=4, **kw)
  source = tfds_clips(data, 'validation', mode, num_segments=4, **kw)
  assert [r.path for r in source.records] == [r.path for r in folders.records]
  assert source.dropped == len(LIST_FRAMES) - len(folders.records) == 2  # F < 3
  assert_same_clips(folders, source)


@pytest.mark.parametrize('decoder', ['simplejpeg', 'simplejpeg_fast'])
def test_train_clips_identical_for_the_same_seed_and_epoch(data, decoder):
  folders = folder_source(data, data['varied'], 'train', num_segments=4, seed=3, decoder=decoder)
  source = tfds_clips(data, 'train', 'train', num_segments=4, seed=3, decoder=decoder)
  for epoch in (0, 1):
    folders.set_epoch(epoch)
    source.set_epoch(epoch)
    assert_same_clips(folders, source)
  assert_same_clips(folders, source, rng=None, epoch=5)


def test_pickles_and_feeds_grain_workers(data):
  """Picklable (readers reopen per process); grain batches and their checkpoint state as the frame
  folders', with a worker process too."""
  source = tfds_clips(data, 'train', 'train', name=NAME, num_segments=4)
  again = pickle.loads(pickle.dumps(source))
  assert again._data is None  # pylint: disable=protected-access
  assert np.array_equal(again.get(3)['frames'], source.get(3)['frames'])
  records, _ = datasets.load_records('synthetic', str(data['synth']), 'train')[:2]
  folders = FrameFolderSource(data['frames'], records, TEMPLATE, mode='train', num_segments=4)
  augment = input_pipeline.TrainAugment(input_size=32, flip=False)

  def batches(src, workers, state=None, n=3):
    it = input_pipeline.train_iterator(
        src, augment, global_batch_size=4, seed=1, num_workers=workers
    )
    if state is not None:
      it.set_state(state)
    return it, [next(it) for _ in range(n)]

  it, expected = batches(folders, 0)
  state = it.get_state()
  after = next(it)
  _, got = batches(source, 1)
  _, resumed = batches(source, 0, state, 1)
  for x, y in zip(expected + [after], got + resumed):
    assert np.array_equal(x['frames'], y['frames']) and np.array_equal(x['label'], y['label'])


def test_damaged_record_fails_loudly_or_is_skipped(data, tmp_path):
  data_dir = tmp_path / 'tfds'
  shutil.copytree(os.path.join(data['data_dir'], VARIED), data_dir / VARIED)
  shards = sorted((data_dir / VARIED / '1.0.0').glob('*-train.array_record-*'))
  with open(shards[0], 'r+b') as f:  # garbage in an early record's chunk
    f.seek(3000)
    f.write(b'\x00rnl' * 16)
  kw = dict(mode='test', num_segments=4)
  source = tfds_source.TfdsSource(VARIED, 'train', data_dir, **kw)
  bad = []
  for i in range(len(source)):
    try:
      source.get(i)
    except CorruptVideoError as e:
      assert f'tfds:{VARIED}/train' in str(e) and e.path == source.video_path(i)
      bad.append(i)
  assert 0 < len(bad) < len(source)
  skipping = tfds_source.TfdsSource(VARIED, 'train', data_dir, skip_corrupt=True, **kw)
  ex = skipping.get(bad[0])
  assert ex['video_index'] not in bad and skipping.skipped >= 1
  assert skipping.skipped_paths[0] == source.video_path(bad[0])


def test_video_datasets_without_tensorflow_say_what_to_install(data, tmp_path):
  """A features.json declaring tfds.features.Video (as catalog datasets do): one line, the extra."""
  # The [test] extra installs TFDS without TensorFlow (TensorFlow is never a dependency here).
  assert importlib.util.find_spec('tensorflow') is None, 'the test environment has TensorFlow'
  data_dir = tmp_path / 'tfds'
  shutil.copytree(os.path.join(data['data_dir'], NAME), data_dir / 'rnl_video')
  path = data_dir / 'rnl_video' / '1.0.0' / 'features.json'
  features = json.loads(path.read_text())
  features['featuresDict']['features']['frames'] = {
      'pythonClassName': 'tensorflow_datasets.core.features.video_feature.Video',
      'video': {
          'shape': {'dimensions': ['-1', '-1', '-1', '3']},
          'dtype': 'uint8',
          'encodingFormat': 'png',
      },
  }
  path.write_text(json.dumps(features))
  info = data_dir / 'rnl_video' / '1.0.0' / 'dataset_info.json'
  info.write_text(info.read_text().replace(f'"{NAME}"', '"rnl_video"'))
  with pytest.raises(tfds_source.TfdsError) as e:
    tfds_source.TfdsSource('rnl_video', 'train', data_dir, mode='val', num_segments=4)
  text = cli.message(e.value)
  assert 'tfds.features.Video' in text and 'TensorFlow' in text
  assert "pip install -e '.[tfds-tf]'" in text
  assert '\n' not in str(e.value) and isinstance(e.value, UserError)


# --------------------------------------------------------------------------------------------------
# plain TFDS, no rnl_jax, no TensorFlow


def test_plain_tfds_data_source_reads_it_without_rnl_jax(data, tmp_path):
  records = datasets.parse_list_file(data['synth'] / 'val.txt')
  code = f"""
import sys
import grain
import numpy as np
import tensorflow_datasets as tfds
ds = tfds.data_source({NAME!r}, split='validation', data_dir={data['data_dir']!r})
assert len(ds) == {NUM_VAL}, len(ds)
ex = grain.MapDataset.source(ds)[1]
frames = np.stack(ex['frames'])   # TFDS decodes the F JPEGs (OpenCV), a list of [H, W, 3]
assert frames.shape == ({FRAMES}, {SIZE}, {SIZE}, 3) and frames.dtype == np.uint8
path = ex['path'].decode() if isinstance(ex['path'], bytes) else ex['path']
assert path == {records[1].path!r} and int(ex['label']) == {records[1].label}, (path, ex['label'])
assert [int(ds[i]['label']) for i in range(len(ds))] == {[r.label for r in records]}
builder = tfds.builder_from_directory({os.path.join(data['data_dir'], NAME, '1.0.0')!r})
index = builder.info.metadata['rnl_jax']['splits']['validation']
assert index['path'] == {[r.path for r in records]}
imported = {{'rnl_jax', 'tensorflow'}} & set(sys.modules)
assert not imported, imported
"""
  proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]


def test_rnl_jax_imports_tfds_only_for_format_tfds():
  code = (
      'import sys, rnl_jax, rnl_jax.config, rnl_jax.input_pipeline, rnl_jax.train, '
      'rnl_jax.data.tfds_source, rnl_jax.data.tfds_write; '
      'assert "tensorflow_datasets" not in sys.modules and "tensorflow" not in sys.modules'
  )
  proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-3000:]


# --------------------------------------------------------------------------------------------------
# the trainer: config keys, training and the test protocol from TFDS


def tfds_config(data, **overrides):
  return small_config(
      **{
          'data.format': 'tfds',
          'data.tfds_name': NAME,
          'data.tfds_data_dir': data['data_dir'],
          **overrides,
      }
  )


def test_config_errors_name_the_key(data):
  config_lib.validate(tfds_config(data, **{'data.name': 'custom', 'data.root': ''}))  # nothing else
  for key in ('tfds_name', 'tfds_train_split', 'tfds_val_split'):
    with pytest.raises(ConfigError, match=rf"config.data.{key}='': .*format='tfds' needs"):
      config_lib.validate(tfds_config(data, **{f'data.{key}': ''}))
  with pytest.raises(ConfigError, match=r'config.data.num_classes=5 but TFDS dataset .* has 12'):
    input_pipeline.data_paths(tfds_config(data, **{'data.num_classes': 5}))
  with pytest.raises(tfds_source.TfdsError, match=r"config.data.tfds_name='rnl_nope'"):
    input_pipeline.data_paths(tfds_config(data, **{'data.tfds_name': 'rnl_nope'}))
  config = tfds_config(data, **{'data.tfds_val_split': 'test'})
  paths = input_pipeline.data_paths(config)
  assert paths.val_list == tfds_source.describe(NAME, 'test', data['data_dir'])
  classes = datasets.read_class_names(data['synth'] / 'classes.txt')
  assert input_pipeline.class_names(paths) == classes
  with pytest.raises(tfds_source.TfdsError, match=r"no split 'test' .*config.data.tfds_val_split"):
    input_pipeline.make_source(config, paths, 'val', 'val')


def _state(workdir):
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

  step = max(int(s) for s in os.listdir(workdir / 'checkpoints'))
  with ocp.StandardCheckpointer() as ckptr:
    return ckptr.restore(os.path.join(workdir, 'checkpoints', str(step), 'state'))


def _protocol():
  try:
    from rnl_jax import protocol  # pylint: disable=import-outside-toplevel
  except ImportError:  # before the test protocol's module was renamed
    from rnl_jax import evaluate as protocol  # pylint: disable=import-outside-toplevel
  return protocol


def test_training_and_test_protocol_from_tfds_match_frame_folders(data, tmp_path):
  """A tiny run (3 steps, validation at the end) from the frame folders and from their TFDS copy:
  bit-identical parameters and metrics; then the test protocol (2 clips x 3 crops) on each."""
  import jax  # pylint: disable=import-outside-toplevel

  runs = {'frames': small_config(**{'data.root': str(data['synth'])}), 'tfds': tfds_config(data)}
  metrics, states = {}, {}
  for kind, config in runs.items():
    metrics[kind] = train.train_and_evaluate(config, str(tmp_path / kind))
    states[kind] = _state(tmp_path / kind)
  assert not os.path.exists(tmp_path / 'tfds' / 'data')  # format tfds generates no synthetic set
  for key in ('step', 'top1', 'top5', 'num_videos', 'loss'):
    if key in metrics['frames']:
      assert metrics['frames'][key] == metrics['tfds'][key], key
  leaves = jax.tree_util.tree_leaves_with_path(states['frames'])
  other = dict(jax.tree_util.tree_leaves_with_path(states['tfds']))
  assert len(leaves) == len(other)
  for path, leaf in leaves:
    assert np.array_equal(np.asarray(leaf), np.asarray(other[path])), jax.tree_util.keystr(path)
  scores = {}
  for kind, config in runs.items():
    test = config.copy_and_resolve_references()
    test.mode = 'test'
    test.test.crops, test.test.twice_sample, test.test.full_res = 3, True, False
    test.test.views_per_step = 16
    result = _protocol().test(test, str(tmp_path / kind))
    assert result['num_videos'] == NUM_VAL and result['protocol']['views_per_video'] == 6
    scores[kind] = np.load(tmp_path / kind / 'test_scores.npz')
  assert scores['tfds']['video_ids'].tolist() == scores['frames']['video_ids'].tolist()
  assert np.array_equal(scores['tfds']['logits'], scores['frames']['logits'])
  assert scores['tfds']['class_names'].tolist() == scores['frames']['class_names'].tolist()


# ----------------------------------------------------------------------------------------------------
# prepare --format tfds


def _video(path, num_frames, seed):
  """A small mpeg4 .avi (64x48) of random frames."""
  import av  # pylint: disable=import-outside-toplevel

  rng = np.random.default_rng(seed)
  path.parent.mkdir(parents=True, exist_ok=True)
  with av.open(str(path), 'w') as container:
    stream = container.add_stream('mpeg4', rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 48, 'yuv420p'
    for _ in range(num_frames):
      rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
      for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format='rgb24')):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def test_prepare_format_tfds_reads_back_as_the_frames(tmp_path):
  """A mock UCF101 download -> prepare --format tfds: the trainer's config reads the TFDS copy with
  the frame lists' videos and clips; a second run rewrites nothing."""
  src = tmp_path / 'src'
  videos = {
      'ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi': 10,
      'YoYo/v_YoYo_g01_c01.avi': 8,
      'HandstandPushups/v_HandStandPushups_g08_c01.avi': 9,
  }
  for i, (name, frames) in enumerate(videos.items()):
    _video(src / 'UCF-101' / name, frames, i)
  lists = src / 'ucfTrainTestlist'
  lists.mkdir()
  (lists / 'classInd.txt').write_text('1 ApplyEyeMakeup\n2 HandstandPushups\n3 YoYo\n')
  (lists / 'trainlist01.txt').write_text(
      'ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n'
      'HandstandPushups/v_HandStandPushups_g08_c01.avi 2\n'
  )
  (lists / 'testlist01.txt').write_text('YoYo/v_YoYo_g01_c01.avi\n')
  from rnl_jax.data.prepare import prepare  # pylint: disable=import-outside-toplevel

  out = tmp_path / 'out'
  summary = prepare('ucf101', src, out, 'tfds', short_side=32, progress=False)
  data_dir = out / 'UCF101' / 'tfds'
  assert (
      f'--config.data.format=tfds --config.data.tfds_name=rnl_ucf101_split_1 '
      f'--config.data.tfds_data_dir={data_dir}'
  ) in summary['config']
  info = data_dir / 'rnl_ucf101_split_1' / '1.0.0' / 'dataset_info.json'
  before = os.stat(info).st_mtime_ns
  for split, mode in (('train', 'train'), ('val', 'val')):
    frames = small_config(**{'data.name': 'ucf101', 'data.root': str(out), 'data.num_classes': 3})
    tfds_cfg = small_config(
        **{
            'data.name': 'ucf101',
            'data.num_classes': 3,
            'data.format': 'tfds',
            'data.tfds_name': 'rnl_ucf101_split_1',
            'data.tfds_data_dir': str(data_dir),
        }
    )
    a = input_pipeline.make_source(frames, _paths_with_classes(frames, 3), split, mode)
    b = input_pipeline.make_source(tfds_cfg, input_pipeline.data_paths(tfds_cfg), split, mode)
    assert [(r.path, r.num_frames, r.label) for r in a.records] == [
        (r.path, r.num_frames, r.label) for r in b.records
    ]
    assert_same_clips(a, b)
  again = prepare('ucf101', src, out, 'tfds', short_side=32, progress=False)
  assert again['processed'] == 0 and os.stat(info).st_mtime_ns == before


def _paths_with_classes(config, num_classes):
  """data_paths of a table dataset whose mock download has fewer classes than the table's."""
  info = datasets.get_dataset(config.data.name)
  root = config.data.root
  return input_pipeline.DataPaths(
      info.frame_dir(root),
      info.list_path(root, 'train'),
      info.list_path(root, 'val'),
      info.template,
      num_classes,
  )
