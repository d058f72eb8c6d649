"""Dataset table, list parsing and the frame-folder source (docs/original.md §3.1, 3.2, 3.4; 7.11, 7.13, 7.15)."""

import logging
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from rnl_jax.data import datasets, sampling, sources, synthetic
from rnl_jax.data.datasets import VideoRecord
from rnl_jax.data.sources import FrameFolderSource

from conftest import REPO

TEMPLATE = 'img_{:05d}.jpg'


def write_video(root, name, num_frames, height=12, width=20, template=TEMPLATE, step=8):
  """Flat frames whose grey value encodes the 1-based frame number (value step*k, exact through JPEG)."""
  folder = root / name
  folder.mkdir(parents=True)
  for k in range(1, num_frames + 1):
    Image.fromarray(np.full((height, width, 3), step * k, np.uint8)).save(
        folder / template.format(k), quality=95
    )
  return folder


def frame_numbers(frames, step=8):
  """[N, H, W, 3] flat frames -> the encoded 1-based frame numbers [N]."""
  means = frames.reshape(frames.shape[0], -1).mean(axis=1)
  assert np.all(np.abs(frames.astype(int) - means[:, None, None, None]) <= 1)  # flat frames
  return np.rint(means / step).astype(np.int64)


@pytest.fixture
def videos(tmp_path):
  """Root with videos a (F=30), b (F=10), c (F=24), labels 0, 1, 2."""
  root = tmp_path / 'frames'
  records = []
  for label, (name, f) in enumerate((('a', 30), ('b', 10), ('c', 24))):
    write_video(root, name, f)
    records.append(VideoRecord(name, f, label))
  return root, records


# ----------------------------------------------------------------------------------------------------
# table


def test_table_matches_reference():
  d = datasets.DATASETS
  assert set(d) == {
      'kinetics',
      'something',
      'somethingv2',
      'ucf101',
      'hmdb51',
      'jester',
      'synthetic',
  }
  expect = {
      'kinetics': ('img_{:05d}.jpg', 400, True),
      'something': ('{:05d}.jpg', 174, False),
      'somethingv2': ('{:06d}.jpg', 174, False),
      'ucf101': ('img_{:05d}.jpg', 101, True),
      'hmdb51': ('img_{:05d}.jpg', 51, True),
      'jester': ('{:05d}.jpg', 27, False),
      'synthetic': ('img_{:05d}.jpg', None, False),
  }
  for name, (template, k, flip) in expect.items():
    info = d[name]
    assert info.name == name and (info.template, info.num_classes, info.flip) == (template, k, flip)
  assert d['somethingv2'].template.format(1) == '000001.jpg'
  assert d['kinetics'].delimiter == 'comma' and d['ucf101'].delimiter == 'space'
  assert d['something'].frame_root == 'something/v1/img'
  assert d['ucf101'].list_path('/r', 'train') == '/r/UCF101/file_list/ucf101_rgb_train_split_1.txt'
  assert d['jester'].list_path('/r', 'test') == '/r/jester/val_videofolder.txt'
  with pytest.raises(Exception):
    d['jester'].flip = True  # frozen


def test_unknown_dataset_names_known_ones():
  with pytest.raises(KeyError, match='unknown dataset.*kinetics'):
    datasets.DATASETS['kinetics700']
  with pytest.raises(KeyError, match='somethingv2'):
    datasets.get_dataset('sthv3')
  with pytest.raises(ValueError, match='split'):
    datasets.DATASETS['jester'].list_path('/r', 'trainval')


def test_synthetic_entry_loads_generated_data(tmp_path):
  synthetic.generate(tmp_path, 4, 2, num_frames=6, height=16, width=16)
  info = datasets.DATASETS['synthetic']
  assert info.resolve_num_classes(tmp_path) == synthetic.NUM_CLASSES
  assert info.template == synthetic.FRAME_TEMPLATE
  records, dropped, frame_dir = datasets.load_records('synthetic', tmp_path, 'val')
  assert len(records) == 2 and dropped == 0
  src = FrameFolderSource(frame_dir, records, info.template, mode='val', num_segments=3)
  ex = src[1]
  assert ex['frames'].shape == (3, 16, 16, 3) and ex['frames'].dtype == np.uint8
  assert ex['label'] == synthetic.video_label(1) and ex['video_index'] == 1


# ----------------------------------------------------------------------------------------------------
# list files


@pytest.mark.parametrize('sep', [' ', ',', '\t'])
def test_parse_both_delimiters(tmp_path, sep):
  path = tmp_path / 'list.txt'
  path.write_text(f'a/v1{sep}30{sep}0\n\n  \nb/v2{sep}2{sep}5\n')
  assert datasets.parse_list_file(path, num_classes=6) == [
      VideoRecord('a/v1', 30, 0),
      VideoRecord('b/v2', 2, 5),
  ]


def test_parse_detects_per_file_and_allows_delimiter_in_folder(tmp_path):
  csv = tmp_path / 'k.csv'
  csv.write_text('/abs/has space/vid,12,3\n/abs/x,3,1\n')
  assert datasets.parse_list_file(csv) == [
      VideoRecord('/abs/has space/vid', 12, 3),
      VideoRecord('/abs/x', 3, 1),
  ]
  txt = tmp_path / 'k.txt'
  txt.write_text('cls,a/vid 12 3\n')  # a comma in a space-separated file's folder
  assert datasets.parse_list_file(txt) == [VideoRecord('cls,a/vid', 12, 3)]


@pytest.mark.parametrize(
    'bad, message',
    [
        ('v3 7', 'expected 3 fields'),
        ('v3 seven 1', "frame count 'seven' is not an integer"),
        ('v3 7 1.5', "label '1.5' is not an integer"),
        ('v3 -1 1', 'negative frame count'),
        ('v3 7 -1', 'label -1 outside'),
        ('v3 7 4', r'label 4 outside \[0, 4\)'),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, bad, message):
  path = tmp_path / 'bad_list.txt'
  path.write_text(f'v1 10 0\n\nv2 10 3\n{bad}\n')
  with pytest.raises(ValueError, match=message) as info:
    datasets.parse_list_file(path, num_classes=4)
  assert f'{path}:4:' in str(info.value)


def test_mixed_delimiters_fail_at_the_line(tmp_path):
  path = tmp_path / 'mixed.csv'
  path.write_text('v1,10,0\nv2 10 1\n')
  with pytest.raises(ValueError, match=f'{path}:2: expected 3 fields'):
    datasets.parse_list_file(path)


def test_label_range_unchecked_without_num_classes(tmp_path):
  path = tmp_path / 'l.txt'
  path.write_text('v 5 999\n')
  assert datasets.parse_list_file(path)[0].label == 999
  with pytest.raises(ValueError, match='outside'):
    datasets.parse_list_file(path, num_classes=400)


def test_filter_short_records():
  records = [VideoRecord(f'v{f}', f, 0) for f in (0, 1, 2, 3, 4, 100)]
  for mode in ('train', 'val', 'test'):
    kept, dropped = datasets.filter_records(records, mode)
    assert [r.num_frames for r in kept] == [3, 4, 100] and dropped == 3
  kept, dropped = datasets.filter_records(
      records, 'test', remove_missing=False
  )  # ensembles keep them
  assert kept == records and dropped == 0
  assert sampling.MIN_NUM_FRAMES == 3


# ----------------------------------------------------------------------------------------------------
# source: the right frames


def expected(record, mode, num_segments, **kw):
  return sampling.sample_indices(record.num_frames, num_segments, mode, **kw).reshape(-1)


@pytest.mark.parametrize(
    'mode, kw',
    [
        ('val', {}),
        ('test', {}),
        ('test', {'twice_sample': True}),
        ('test', {'dense': True, 'num_clips': 3}),
    ],
)
def test_source_returns_sampled_frames(videos, mode, kw):
  root, records = videos
  src = FrameFolderSource(root, records, TEMPLATE, mode=mode, num_segments=4, **kw)
  assert len(src) == 3
  clips = sampling.num_clips_per_video(
      mode,
      dense=kw.get('dense', False),
      twice_sample=kw.get('twice_sample', False),
      num_clips=kw.get('num_clips', 10),
  )
  for i, record in enumerate(records):
    ex = src[i]
    assert ex['frames'].shape == (clips * 4, 12, 20, 3) and ex['frames'].dtype == np.uint8
    assert ex['label'] == record.label and ex['video_index'] == i
    idx = expected(
        record,
        mode,
        4,
        dense=kw.get('dense', False),
        twice_sample=kw.get('twice_sample', False),
        num_clips=kw.get('num_clips', 10),
    )
    np.testing.assert_array_equal(frame_numbers(ex['frames']), idx)


def test_uniform_val_example_and_negative_index(videos):
  root, records = videos
  src = FrameFolderSource(root, records, TEMPLATE, mode='test', num_segments=4, twice_sample=True)
  # F = 30, T = 4: centres int(3.75 + 7.5 t) + 1, starts int(7.5 t) + 1
  np.testing.assert_array_equal(frame_numbers(src[-3]['frames']), [4, 12, 19, 27, 1, 8, 16, 23])
  with pytest.raises(IndexError):
    src[3]


def test_train_determinism_and_rng(videos):
  root, records = videos
  make = lambda seed: FrameFolderSource(
      root, records, TEMPLATE, mode='train', num_segments=4, seed=seed
  )
  a, b = make(0), make(0)
  for i in range(3):
    np.testing.assert_array_equal(a[i]['frames'], b[i]['frames'])
    got = frame_numbers(a[i]['frames'])
    np.testing.assert_array_equal(
        got, expected(records[i], 'train', 4, dense=False, rng=np.random.default_rng([0, 0, i]))
    )
  # explicit per-example generators and epochs
  rng_ex = a.get(0, np.random.default_rng(123))
  np.testing.assert_array_equal(
      frame_numbers(rng_ex['frames']),
      expected(records[0], 'train', 4, dense=False, rng=np.random.default_rng(123)),
  )
  draws = {tuple(frame_numbers(a.get(0, epoch=e)['frames'])) for e in range(8)}
  assert len(draws) > 1  # new clips each epoch
  a.set_epoch(5)
  np.testing.assert_array_equal(a[0]['frames'], b.get(0, epoch=5)['frames'])
  seeds = {tuple(frame_numbers(make(s)[0]['frames'])) for s in range(8)}
  assert len(seeds) > 1


def test_dense_val_wraps_short_videos_and_is_seeded(videos):
  root, records = videos
  src = FrameFolderSource(root, records, TEMPLATE, mode='val', num_segments=4, dense=True)
  # F = 30 <= 64: one window starting at 0, stride 16, wrapping modulo F
  np.testing.assert_array_equal(frame_numbers(src[0]['frames']), [1, 17, 3, 19])
  assert src.random


@pytest.mark.parametrize('mode', ['train', 'val', 'test'])
def test_dense_long_video(tmp_path, mode):
  write_video(tmp_path, 'long', 80, step=3)
  record = VideoRecord('long', 80, 0)
  src = FrameFolderSource(
      tmp_path, [record], TEMPLATE, mode=mode, num_segments=8, dense=True, seed=3
  )
  ex = src.get(0, epoch=2)
  want = expected(record, mode, 8, dense=True, rng=np.random.default_rng([3, 2, 0]))
  assert ex['frames'].shape == (want.size, 12, 20, 3)
  np.testing.assert_array_equal(frame_numbers(ex['frames'], step=3), want)


def test_invalid_options_fail_early(videos):
  root, records = videos
  with pytest.raises(ValueError, match='twice_sample'):
    FrameFolderSource(
        root, records, TEMPLATE, mode='test', num_segments=4, dense=True, twice_sample=True
    )
  with pytest.raises(ValueError, match='mode'):
    FrameFolderSource(root, records, TEMPLATE, mode='eval', num_segments=4)
  with pytest.raises(ValueError, match='template'):
    FrameFolderSource(root, records, 'img_{name}.jpg', mode='val', num_segments=4)


# ----------------------------------------------------------------------------------------------------
# source: bad data


def test_missing_frame_names_file_and_count(videos):
  root, records = videos
  records = [VideoRecord('b', 20, 1)]  # folder b holds 10 frames only
  src = FrameFolderSource(root, records, TEMPLATE, mode='test', num_segments=4)
  with pytest.raises(
      ValueError,
      match=r'missing frame file .*b/img_000\d\d\.jpg.*holds 10 files but the '
      r'list says 20 frames',
  ):
    src[0]


def test_missing_folder(videos):
  root, _ = videos
  src = FrameFolderSource(root, [VideoRecord('nope', 10, 0)], TEMPLATE, mode='val', num_segments=2)
  with pytest.raises(ValueError, match=r'video folder .*nope does not exist'):
    src[0]


@pytest.mark.parametrize('damage', ['truncate', 'garbage', 'png'])
def test_corrupt_frame_names_file(videos, damage):
  root, records = videos
  bad = root / 'c' / TEMPLATE.format(4)  # F = T = 24: the test sampler reads every frame
  src = FrameFolderSource(root, records, TEMPLATE, mode='test', num_segments=24)
  if damage == 'truncate':
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
  elif damage == 'garbage':
    bad.write_bytes(b'not a jpeg at all' * 10)
  else:
    Image.fromarray(np.zeros((12, 20, 3), np.uint8)).save(bad, format='PNG')
  with pytest.raises(ValueError, match=f'cannot decode JPEG frame {bad}') as info:
    src[2]
  assert isinstance(info.value, sources.CorruptVideoError) and info.value.path == str(bad)
  src[0], src[1]  # other videos unaffected


def test_skip_corrupt_replaces_with_next_video(videos, caplog):
  root, records = videos
  bad = root / 'a' / TEMPLATE.format(1)
  bad.write_bytes(b'\xff\xd8 broken')
  records = records + [VideoRecord('gone', 10, 3)]
  src = FrameFolderSource(root, records, TEMPLATE, mode='val', num_segments=30, skip_corrupt=True)
  with caplog.at_level(logging.WARNING, logger='rnl_jax.data.sources'):
    ex = src[0]  # a (frame 1 broken) -> b
  assert ex['video_index'] == 1 and ex['label'] == 1
  assert src.skipped == 1 and src.skipped_paths == [str(bad)]
  assert str(bad) in caplog.text
  ex = src[3]  # 'gone' -> wraps to a (bad) -> b
  assert ex['video_index'] == 1 and src.skipped == 3
  assert src.skipped_paths[1].endswith('gone/img_00001.jpg') and src.skipped_paths[2] == str(bad)
  assert src[2]['video_index'] == 2 and src.skipped == 3
  strict = FrameFolderSource(root, records, TEMPLATE, mode='val', num_segments=30)
  with pytest.raises(ValueError, match=str(bad)):
    strict[0]


def test_skip_corrupt_all_bad(tmp_path):
  src = FrameFolderSource(
      tmp_path,
      [VideoRecord('x', 5, 0), VideoRecord('y', 5, 0)],
      TEMPLATE,
      mode='test',
      num_segments=2,
      skip_corrupt=True,
  )
  with pytest.raises(ValueError, match='no readable video'):
    src[1]
  assert src.skipped == 2


def test_data_modules_do_not_import_jax():
  code = (
      'import sys, rnl_jax.data.sources, rnl_jax.data.datasets; '
      'assert "jax" not in sys.modules and "torch" not in sys.modules'
  )
  proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO)
  assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    'mode,options',
    [
        ('RGB', {'subsampling': 0}),
        ('RGB', {'subsampling': 1}),
        ('RGB', {'subsampling': 2}),
        ('RGB', {'progressive': True}),
        ('RGB', {'quality': 60, 'optimize': True}),
        ('L', {}),
    ],
)
def test_simplejpeg_decodes_pillows_pixels(tmp_path, mode, options):
  """The default frame decoder gives exactly the original's (Pillow's) pixels, ~3x faster."""
  rng = np.random.default_rng(0)
  shape = (37, 53, 3) if mode == 'RGB' else (37, 53)
  smooth = (
      np.linspace(0, 200, 53)[None, :, None] if mode == 'RGB' else np.linspace(0, 200, 53)[None]
  )
  pixels = np.clip(smooth + rng.normal(0, 25, shape), 0, 255).astype(np.uint8)
  path = tmp_path / 'f.jpg'
  Image.fromarray(pixels, mode).save(path, quality=options.pop('quality', 90), **options)
  pil = sources.decode_frame(path, 'pil')
  assert pil.shape == (37, 53, 3)
  np.testing.assert_array_equal(sources.decode_frame(path, 'simplejpeg'), pil)
  fast = sources.decode_frame(path, 'simplejpeg_fast')
  assert np.abs(fast.astype(int) - pil).mean() < 6  # ~4.5 on this very noisy chroma


def test_unknown_decoder_is_rejected(tmp_path):
  with pytest.raises(ValueError, match='decoder must be one of'):
    FrameFolderSource(tmp_path, [], TEMPLATE, mode='val', num_segments=2, decoder='turbo')
