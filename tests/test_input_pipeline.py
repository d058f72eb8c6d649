"""grain pipeline: epochs, determinism across workers and processes, exact resume, eval views."""

import os
import shutil

import numpy as np
import pytest

from rnl_jax import input_pipeline as ip
from rnl_jax.data import datasets, sources, synthetic, transforms

NUM_TRAIN, NUM_VAL, T = 24, 7, 4
AUG = ip.TrainAugment(input_size=24, flip=True)


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
  root = tmp_path_factory.mktemp('syn')
  synthetic.generate(root, NUM_TRAIN, NUM_VAL, num_frames=12, height=30, width=40)
  return root


def _source(root, split='train', mode='train', **kw):
  records, _, frame_dir = datasets.load_records('synthetic', root, split)
  return sources.FrameFolderSource(
      frame_dir, records, synthetic.FRAME_TEMPLATE, mode=mode, num_segments=T, **kw
  )


def _take(it, n):
  return [next(it) for _ in range(n)]


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_train_batches_shapes_and_epochs(data_root):
  src = _source(data_root)
  it = ip.train_iterator(src, AUG, global_batch_size=4, seed=3)
  batches = _take(it, 2 * NUM_TRAIN // 4)
  b = batches[0]
  assert b['frames'].shape == (4, T, 24, 24, 3) and b['frames'].dtype == np.uint8
  assert b['label'].dtype == np.int32 and b['video_index'].dtype == np.int32
  assert b['frames'].any()
  for x in batches:  # labels are the records' labels
    np.testing.assert_array_equal(x['label'], [src.records[i].label for i in x['video_index']])
  epoch1 = np.concatenate([x['video_index'] for x in batches[:6]])
  epoch2 = np.concatenate([x['video_index'] for x in batches[6:]])
  assert sorted(epoch1) == list(range(NUM_TRAIN)) == sorted(epoch2)  # every video once per epoch
  assert not np.array_equal(epoch1, epoch2)  # reshuffled every epoch
  assert not np.array_equal(epoch1, np.arange(NUM_TRAIN))  # shuffled at all
  assert sum(int(x['skipped'].sum()) for x in batches) == 0


def test_same_seed_same_batches_other_seed_differs(data_root):
  src = _source(data_root)
  a = _take(ip.train_iterator(src, AUG, global_batch_size=4, seed=3), 3)
  b = _take(ip.train_iterator(src, AUG, global_batch_size=4, seed=3, num_threads=3), 3)
  c = _take(ip.train_iterator(src, AUG, global_batch_size=4, seed=4), 3)
  _assert_batches_equal(a, b)
  assert not np.array_equal(a[0]['video_index'], c[0]['video_index'])


def test_augmentation_is_seeded_per_example(data_root):
  """A clip is source.get + train_views driven by one generator: the same rng reproduces it, and a
  repeated video gets a new clip in the next epoch."""
  src = _source(data_root)
  clip = ip.TrainClip(src, AUG)
  x = clip(5, np.random.default_rng(11))
  rng = np.random.default_rng(11)
  raw = src.get(5, rng)
  expected = transforms.train_views(raw['frames'], rng, flip=True, input_size=24)
  np.testing.assert_array_equal(x['frames'], expected)
  assert int(x['label']) == src.records[5].label
  # The same video in two epochs: different frames or crops.
  it = ip.train_iterator(src, AUG, global_batch_size=NUM_TRAIN, seed=0)
  e1, e2 = _take(it, 2)
  f1 = e1['frames'][np.argsort(e1['video_index'])]
  f2 = e2['frames'][np.argsort(e2['video_index'])]
  assert not np.array_equal(f1, f2)


def test_checkpointed_iterator_restores_exact_next_batch(data_root):
  src = _source(data_root)
  it = ip.train_iterator(src, AUG, global_batch_size=4, seed=7)
  _take(it, 8)  # crosses the epoch boundary (6 batches per epoch)
  state = it.get_state()
  expected = _take(it, 3)
  fresh = ip.train_iterator(src, AUG, global_batch_size=4, seed=7)
  fresh.set_state(state)
  _assert_batches_equal(_take(fresh, 3), expected)


def test_worker_processes_give_the_same_batches_and_resume(data_root):
  src = _source(data_root)
  serial = _take(ip.train_iterator(src, AUG, global_batch_size=4, seed=5), 5)
  it = ip.train_iterator(src, AUG, global_batch_size=4, seed=5, num_workers=2, num_threads=2)
  try:
    parallel = _take(it, 3)
    state = it.get_state()
  finally:
    it.close()
  _assert_batches_equal(parallel, serial[:3])
  again = ip.train_iterator(src, AUG, global_batch_size=4, seed=5, num_workers=2)
  try:
    again.set_state(state)
    _assert_batches_equal(_take(again, 2), serial[3:])
  finally:
    again.close()


def test_processes_hold_contiguous_rows_of_the_global_batch(data_root):
  src = _source(data_root)
  single = _take(ip.train_iterator(src, AUG, global_batch_size=6, seed=2), 5)
  hosts = [
      ip.train_iterator(src, AUG, global_batch_size=6, seed=2, process_index=p, process_count=3)
      for p in range(3)
  ]
  for k in range(5):
    parts = [next(h) for h in hosts]
    assert parts[0]['frames'].shape[0] == 2
    for key in single[k]:
      np.testing.assert_array_equal(
          np.concatenate([p[key] for p in parts]), single[k][key], err_msg=key
      )


def test_batch_must_divide_across_processes(data_root):
  src = _source(data_root)
  with pytest.raises(ValueError, match='not divisible by the 4 processes'):
    ip.train_iterator(src, AUG, global_batch_size=6, seed=0, process_count=4)
  with pytest.raises(ValueError, match='one clip per video'):
    ip.TrainClip(_source(data_root, 'val', 'test', twice_sample=True), AUG)


@pytest.mark.parametrize('process_count', [1, 3])
def test_eval_batches_cover_every_view_once(data_root, process_count):
  """2 clips (twice_sample) x 3 full-res crops per video; batches padded to one static shape, every
  process yields the same number of batches, and each (video, view) appears exactly once."""
  src = _source(data_root, 'val', 'test', twice_sample=True)
  views = ip.EvalViews(num_crops=3, full_res=True, scale_size=28, input_size=24)
  seen, counts = {}, []
  for p in range(process_count):
    batches = ip.EvalBatches(src, views, 5, process_index=p, process_count=process_count)
    out = list(batches)
    counts.append(len(out))
    assert len(out) == batches.num_batches
    for b in out:
      assert b['frames'].shape == (5, T, 28, 28, 3)
      for row in np.flatnonzero(b['mask']):
        key = (int(b['video_index'][row]), int(b['view_index'][row]))
        assert key not in seen
        seen[key] = (b['frames'][row], int(b['label'][row]))
      assert not b['frames'][~b['mask']].any()
  assert len(set(counts)) == 1
  assert sorted(seen) == [(v, k) for v in range(NUM_VAL) for k in range(6)]
  # Views are the original's test views in its order (crop, then clip).
  raw = src.get(3)['frames']  # [2*T, H, W, 3]
  expected = transforms.test_views(raw, 3, True, 28, 24).reshape(6, T, 28, 28, 3)
  for k in range(6):
    np.testing.assert_array_equal(seen[(3, k)][0], expected[k])
    assert seen[(3, k)][1] == src.records[3].label


def test_eval_with_worker_processes_matches_serial(data_root):
  src = _source(data_root, 'val', 'val')
  views = ip.EvalViews(num_crops=1, scale_size=28, input_size=24)
  serial = list(ip.EvalBatches(src, views, 4))
  parallel = list(ip.EvalBatches(src, views, 4, num_workers=2))
  _assert_batches_equal(serial, parallel)
  assert sum(int(b['mask'].sum()) for b in serial) == NUM_VAL


def test_corrupt_video_raises_naming_the_file_or_is_skipped_and_counted(data_root, tmp_path):
  root = tmp_path / 'copy'
  shutil.copytree(data_root, root)
  src = _source(root)
  victim = src.records[0]
  for name in os.listdir(os.path.join(src.root, victim.path)):
    with open(os.path.join(src.root, victim.path, name), 'wb') as f:
      f.write(b'not a jpeg')
  it = ip.train_iterator(src, AUG, global_batch_size=NUM_TRAIN, seed=0)
  with pytest.raises(sources.CorruptVideoError, match=victim.path):
    next(it)
  skipping = _source(root, skip_corrupt=True)
  batch = next(ip.train_iterator(skipping, AUG, global_batch_size=NUM_TRAIN, seed=0))
  assert int(batch['skipped'].sum()) == 1
  row = int(np.flatnonzero(batch['skipped'])[0])
  assert batch['video_index'][row] == 1  # the next readable video
  assert batch['label'][row] == skipping.records[1].label
  assert 0 not in batch['video_index']


def test_config_formats_give_the_same_clips(tmp_path):
  """One synthetic dataset as frame folders, mp4 files and ArrayRecord shards, read via the config."""
  from configs import tiny
  from rnl_jax.data import pack

  root = tmp_path / 'syn'
  synthetic.generate(root, 6, 3, num_frames=12, height=32, width=32, videos=True)
  for split in ('train', 'val'):
    pack.pack(
        str(root / f'{split}.txt'), str(root / 'frames'), str(root / 'ar' / split), progress=False
    )
  config = tiny.get_config()
  config.data.root = str(root)
  paths = ip.data_paths(config)
  clips = {}
  for fmt, lists in [
      ('frames', ('', '')),
      ('videos', (root / 'train_videos.txt', root / 'val_videos.txt')),
      ('arrayrecord', (root / 'ar' / 'train.json', root / 'ar' / 'val.json')),
  ]:
    config.data.format = fmt
    config.data.train_list, config.data.val_list = map(str, lists)
    paths = ip.data_paths(config)
    src = ip.make_source(config, paths, 'val', 'val')
    clips[fmt] = np.stack([src.get(i)['frames'] for i in range(len(src))])
    assert [src.label(i) for i in range(len(src))] == [r.label for r in src.records]
    batch = next(
        ip.train_iterator(
            ip.make_source(config, paths, 'train', 'train'),
            ip.train_augment(config),
            global_batch_size=2,
            seed=0,
        )
    )
    assert batch['frames'].shape == (2, config.num_segments, 32, 32, 3)
  np.testing.assert_array_equal(clips['arrayrecord'], clips['frames'])  # same JPEG bytes
  # The fast training decoder never reaches validation / test views.
  config.data.format, config.data.train_list, config.data.val_list = 'frames', '', ''
  config.data.decoder = 'simplejpeg_fast'
  assert (
      ip.make_source(config, ip.data_paths(config), 'train', 'train').decoder == 'simplejpeg_fast'
  )
  assert ip.make_source(config, ip.data_paths(config), 'val', 'test').decoder == 'simplejpeg'
  assert np.abs(clips['videos'].astype(int) - clips['frames']).mean() < 4  # H.264 re-encoding
  config.data.format = 'videos'
  config.data.val_list = ''
  with pytest.raises(ValueError, match='config.data.val_list is empty'):
    ip.make_source(config, ip.data_paths(config), 'val', 'val')


def _listed(root, tmp_path, extra_lines):
  """A copy of the synthetic train list with `extra_lines` appended; (list path, source)."""
  _, _, frame_dir = datasets.load_records('synthetic', root, 'train')
  lines = (root / 'train.txt').read_text().splitlines() + extra_lines
  path = tmp_path / 'train.txt'
  path.write_text('\n'.join(lines) + '\n')
  records = datasets.parse_list_file(str(path), 12)
  return path, len(lines), frame_dir, records


def test_missing_videos_are_named_with_list_line_before_any_read(data_root, tmp_path, caplog):
  """A listed video that is not there is found up front (all of them, in parallel) and named with
  its list file and line; with skip_corrupt the missing ones are dropped and logged instead."""
  shutil.copytree(data_root / 'frames' / 'train_000001', tmp_path / 'no_first')
  os.remove(tmp_path / 'no_first' / synthetic.FRAME_TEMPLATE.format(1))
  path, n, frame_dir, records = _listed(
      data_root, tmp_path, ['train_999999 12 3', f'{tmp_path / "no_first"} 12 4']
  )
  src = sources.FrameFolderSource(
      frame_dir, records, synthetic.FRAME_TEMPLATE, mode='train', num_segments=T
  )
  assert ip.missing_videos(src) == [NUM_TRAIN, NUM_TRAIN + 1]
  with pytest.raises(
      ValueError,
      match=rf'{path}:{n - 1}: video folder .*train_999999 does not '
      r'exist \(2 of 26 listed videos are missing; .*skip_corrupt',
  ):
    ip.check_listed_videos(src, str(path))
  src.records = src.records[:NUM_TRAIN] + src.records[NUM_TRAIN + 1 :]  # only the frameless one
  with pytest.raises(ValueError, match=rf'{path}:{n}: .*no_first/img_00001.jpg does not exist'):
    ip.check_listed_videos(src, str(path))
  skipping = sources.FrameFolderSource(
      frame_dir, records, synthetic.FRAME_TEMPLATE, mode='train', num_segments=T, skip_corrupt=True
  )
  dropped = ip.check_listed_videos(skipping, str(path))
  assert dropped == [os.path.join(frame_dir, 'train_999999'), str(tmp_path / 'no_first')]
  assert len(skipping) == NUM_TRAIN and 'skipping 2 missing videos of 26' in caplog.text
  assert ip.check_listed_videos(_source(data_root), str(data_root / 'train.txt')) == []
