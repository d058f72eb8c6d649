"""ArrayRecord packing (rnl_jax.data.pack) and ArrayRecordSource: the frame folders' clips, loud bad data."""

import glob
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

from rnl_jax.data import arrayrecord, datasets, pack, synthetic
from rnl_jax.data.arrayrecord import ArrayRecordSource, RecordFormatError
from rnl_jax.data.sources import CorruptVideoError, FrameFolderSource

from conftest import REPO

TEMPLATE = 'img_{:05d}.jpg'
NUM_FRAMES = 12
# Frame counts of the list (folders hold 12 frames; the list may use fewer): short, equal to T, long.
LIST_FRAMES = (12, 5, 2, 8, 3, 12, 7, 10)
NUM_RECORDS = len(LIST_FRAMES) + sum(LIST_FRAMES)  # a metadata record and F frame records per video
POSITIONS = tuple(int(p) for p in np.cumsum((0,) + LIST_FRAMES[:-1]) + np.arange(len(LIST_FRAMES)))


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  """Synthetic 32x32 frame folders, a list with varied frame counts, and its one-shard pack."""
  root = tmp_path_factory.mktemp('pack')
  synthetic.generate(
      root / 'synth', len(LIST_FRAMES), 0, num_frames=NUM_FRAMES, height=32, width=32
  )
  lines = ''.join(f'train_{i:06d} {f} {i % 12}\n' for i, f in enumerate(LIST_FRAMES))
  (root / 'list.txt').write_text(lines)
  frames = root / 'synth' / 'frames'
  summary = pack.main(
      [
          '--list',
          str(root / 'list.txt'),
          '--root',
          str(frames),
          '--out',
          str(root / 'one' / 'train'),
          '--shards',
          '1',
          '--classes',
          str(root / 'synth' / 'classes.txt'),
          '--no_progress',
      ]
  )
  assert summary['num_videos'] == len(LIST_FRAMES) and summary['num_shards'] == 1
  assert summary['num_records'] == NUM_RECORDS
  return {
      'root': root,
      'frames': frames,
      'list': root / 'list.txt',
      'prefix': root / 'one' / 'train',
      'records': datasets.parse_list_file(root / 'list.txt'),
  }


def folder_source(data, **kw):
  return FrameFolderSource(data['frames'], data['records'], TEMPLATE, **kw)


def assert_same_clips(a, b, **get_kw):
  assert len(a) == len(b)
  for i in range(len(a)):
    x, y = a.get(i, **get_kw), b.get(i, **get_kw)
    assert x['label'] == y['label'] and x['video_index'] == y['video_index'] == i
    assert x['frames'].dtype == np.uint8 and np.array_equal(x['frames'], y['frames']), i


def copy_frames(data, dst):
  """A writable copy of the frame folders (tests that damage them)."""
  shutil.copytree(data['frames'], dst)
  return dst


# ----------------------------------------------------------------------------------------------------
# record format


def test_meta_record_roundtrip_and_bad_bytes():
  meta = {'path': 'v/1', 'label': 3, 'num_frames': 7, 'width': 4, 'height': 2, 'kind': 'frames'}
  data = arrayrecord.encode_meta_record(meta)
  assert arrayrecord.parse_meta_record(data) == meta
  bad = [
      b'\xff\xd8' + data[2:],
      data[:10],
      data[:-1],
      data + b'x',
      data[:4] + (3).to_bytes(2, 'little') + data[6:],
      data[:4] + (1).to_bytes(2, 'little') + data[6:],
      data[:8] + (6).to_bytes(4, 'little') + data[12:],
  ]
  for b, match in zip(
      bad,
      (
          'magic',
          'shorter',
          'header says',
          'header says',
          'version 3',
          r'version 1.*re-pack it with python -m rnl_jax.data.pack',
          'frame count',
      ),
  ):
    with pytest.raises(RecordFormatError, match=match):
      arrayrecord.parse_meta_record(b)


# ----------------------------------------------------------------------------------------------------
# same clips as FrameFolderSource


def test_index_records_and_classes(data):
  src = ArrayRecordSource(data['prefix'], mode='val', num_segments=4)
  assert [(r.path, r.num_frames, r.label) for r in src.records] == [
      (r.path, r.num_frames, r.label) for r in data['records']
  ]
  assert [(r.shard, r.position, r.width, r.height) for r in src.records] == [
      (0, p, 32, 32) for p in POSITIONS
  ]
  assert src.classes == list(synthetic.CLASSES) and src.kind == 'frames'
  index = json.loads(open(f'{data["prefix"]}.json').read())
  assert index['format_version'] == arrayrecord.FORMAT_VERSION == 2
  assert (index['num_videos'], index['num_records']) == (len(LIST_FRAMES), NUM_RECORDS)
  assert index['shards'] == [
      {
          'file': 'train-00000-of-00001.array_record',
          'num_videos': len(LIST_FRAMES),
          'num_records': NUM_RECORDS,
      }
  ]
  # The layout: metadata record at `position`, then frame k's original JPEG bytes at position + k.
  reader = src.reader(0)
  assert reader.num_records() == NUM_RECORDS
  r = src.records[3]
  meta = arrayrecord.parse_meta_record(reader.read([r.position])[0])
  assert meta == {
      'path': r.path,
      'label': r.label,
      'num_frames': r.num_frames,
      'width': 32,
      'height': 32,
      'kind': 'frames',
  }
  stored = reader.read(list(range(r.position + 1, r.position + 1 + r.num_frames)))
  assert stored == [
      (data['frames'] / r.path / TEMPLATE.format(k)).read_bytes()
      for k in range(1, r.num_frames + 1)
  ]


@pytest.mark.parametrize(
    'kw',
    [
        dict(mode='val', num_segments=4),
        dict(mode='test', num_segments=4),
        dict(mode='test', num_segments=4, twice_sample=True),
        dict(mode='test', num_segments=2, dense=True, num_clips=3),
        dict(mode='val', num_segments=4, dense=True),
    ],
    ids=['val', 'test', 'twice', 'dense_test', 'dense_val'],
)
def test_clips_identical_to_frame_folders(data, kw):
  assert_same_clips(ArrayRecordSource(f'{data["prefix"]}.json', **kw), folder_source(data, **kw))


def test_train_clips_identical_for_the_same_rng(data):
  kw = dict(mode='train', num_segments=4, seed=5)
  a, b = ArrayRecordSource(data['prefix'], **kw), folder_source(data, **kw)
  assert_same_clips(a, b)  # default (seed, epoch, index) generators
  a.set_epoch(3)
  b.set_epoch(3)
  assert_same_clips(a, b)
  for i in range(len(a)):
    x = a.get(i, rng=np.random.default_rng(100 + i))['frames']
    assert np.array_equal(x, b.get(i, rng=np.random.default_rng(100 + i))['frames'])


@pytest.mark.parametrize('decoder', ['pil', 'simplejpeg_fast'])
def test_decoders_as_frame_folders(data, decoder):
  kw = dict(mode='train', num_segments=4, decoder=decoder)
  assert_same_clips(ArrayRecordSource(data['prefix'], **kw), folder_source(data, **kw))
  if decoder == 'pil':  # the default ('simplejpeg') gives Pillow's pixels
    assert_same_clips(
        ArrayRecordSource(data['prefix'], **kw),
        ArrayRecordSource(data['prefix'], mode='train', num_segments=4),
    )
  with pytest.raises(ValueError, match='decoder'):
    ArrayRecordSource(data['prefix'], mode='test', num_segments=4, decoder='cv2')


def test_filter_short(data):
  src = ArrayRecordSource(data['prefix'], mode='val', num_segments=4, filter_short=True)
  assert [r.num_frames for r in src.records] == [
      f for f in LIST_FRAMES if f >= 3
  ] and src.dropped == 1
  kept, _ = datasets.filter_records(data['records'], 'val')
  assert_same_clips(
      src, FrameFolderSource(data['frames'], kept, TEMPLATE, mode='val', num_segments=4)
  )
  ens = ArrayRecordSource(
      data['prefix'], mode='test', num_segments=4, filter_short=True, remove_missing=False
  )
  assert len(ens) == len(LIST_FRAMES) and ens.dropped == 0


def test_cli_subprocess_shards_workers_and_specs(data, tmp_path):
  """`python -m` with 3 shards and 2 worker processes: the same records, the same clips."""
  out = tmp_path / 'three' / 'train'
  proc = subprocess.run(
      [
          sys.executable,
          '-m',
          'rnl_jax.data.pack',
          '--list',
          str(data['list']),
          '--root',
          str(data['frames']),
          '--out',
          str(out),
          '--shards',
          '3',
          '--workers',
          '2',
      ],
      capture_output=True,
      text=True,
      cwd=REPO,
      timeout=120,
  )
  assert proc.returncode == 0, proc.stderr
  assert json.loads(proc.stdout.strip().splitlines()[-1])['num_shards'] == 3
  shards = sorted(glob.glob(f'{out}-*-of-00003.array_record'))
  assert [os.path.basename(s) for s in shards] == [
      f'train-0000{s}-of-00003.array_record' for s in range(3)
  ]
  assert not glob.glob(f'{out}*.tmp-*')
  three = ArrayRecordSource(out, mode='test', num_segments=4)
  one = ArrayRecordSource(data['prefix'], mode='test', num_segments=4)
  assert [r.shard for r in three.records] == [0, 0, 1, 1, 1, 2, 2, 2]
  assert [r.position for r in three.records] == [
      0,
      13,
      0,
      3,
      12,
      0,
      13,
      21,
  ]  # 1 + F records per video
  assert [three.reader(s).num_records() for s in range(3)] == [13 + 6, 3 + 9 + 4, 13 + 8 + 11]
  for i in range(len(one)):  # byte-identical records, whatever the shard
    r1, r3 = one.records[i], three.records[i]
    assert one.reader(r1.shard).read(
        list(range(r1.position, r1.position + 1 + r1.num_frames))
    ) == three.reader(r3.shard).read(list(range(r3.position, r3.position + 1 + r3.num_frames)))
  assert_same_clips(three, one)
  # a glob of the shards, and one shard alone (its slice of the index)
  assert_same_clips(ArrayRecordSource(f'{out}-*.array_record', mode='test', num_segments=4), one)
  middle = ArrayRecordSource(shards[1], mode='test', num_segments=4)
  assert [r.path for r in middle.records] == [r.path for r in one.records[2:5]]
  assert np.array_equal(middle[0]['frames'], one[2]['frames'])
  # without an index, the videos are listed from their metadata records
  os.remove(f'{out}.json')
  scanned = ArrayRecordSource(f'{out}-*.array_record', mode='test', num_segments=4)
  assert scanned.index_file is None and scanned.classes is None
  assert [
      (r.path, r.num_frames, r.label, r.shard, r.position, r.width) for r in scanned.records
  ] == [(r.path, r.num_frames, r.label, r.shard, r.position, r.width) for r in three.records]
  assert_same_clips(scanned, one)


def test_pickles_and_reads_after_unpickling(data):
  src = ArrayRecordSource(data['prefix'], mode='train', num_segments=4, skip_corrupt=True)
  before = src.get(3, epoch=2)['frames']  # opens a reader
  state = src.__getstate__()
  assert '_readers' not in state and '_lock' not in state
  clone = pickle.loads(pickle.dumps(src))
  assert clone._readers == {}
  assert np.array_equal(clone.get(3, epoch=2)['frames'], before)
  assert np.array_equal(clone.get(3, epoch=2)['frames'], src.get(3, epoch=2)['frames'])
  src.close()
  assert np.array_equal(src.get(3, epoch=2)['frames'], before)  # reopens


def frames_of(example):
  return example['frames']


def test_grain_multiprocessing(data):
  """The source in a grain pipeline with a spawned worker process gives the in-process clips."""
  import grain  # pylint: disable=import-outside-toplevel  (a core dependency)
  from absl import flags  # pylint: disable=g-import-not-at-top

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()  # grain reads its absl flags; outside app.run nothing parses them
  src = ArrayRecordSource(data['prefix'], mode='test', num_segments=4)
  src.get(0)  # a reader is open in this process when the source is sent to the worker
  ds = grain.MapDataset.source(src).map(frames_of)
  it = iter(ds.to_iter_dataset().mp_prefetch(grain.MultiprocessingOptions(num_workers=1)))
  try:
    got = list(it)
  finally:
    if hasattr(it, 'close'):
      it.close()
  assert len(got) == len(src)
  assert all(np.array_equal(g, src[i]['frames']) for i, g in enumerate(got))


# ----------------------------------------------------------------------------------------------------
# bad data


def test_corrupt_jpeg_in_record(data, tmp_path):
  """A truncated frame packed with --verify header: CorruptVideoError naming shard, record and video."""
  frames = copy_frames(data, tmp_path / 'frames')
  bad = frames / 'train_000003' / TEMPLATE.format(5)
  raw = bad.read_bytes()
  sos = raw.index(b'\xff\xda')  # keep every header, cut the entropy-coded data in half
  bad.write_bytes(raw[: sos + (len(raw) - sos) // 2])
  out = tmp_path / 'p' / 'train'
  with pytest.raises(pack.PackError, match=r'train_000003.*img_00005\.jpg.*[Tt]runcated'):
    pack.pack(data['list'], frames, out, progress=False)  # --verify decode (default) catches it
  assert not os.path.exists(f'{out}.json') and not glob.glob(f'{out}-*')
  pack.pack(data['list'], frames, out, verify='header', progress=False)
  src = ArrayRecordSource(out, mode='test', num_segments=8)  # F = 8: every frame, frame 5 included
  with pytest.raises(CorruptVideoError) as e:
    src[3]
  shard = f'{out}-00000-of-00001.array_record'
  assert e.value.path == f'{shard} record {POSITIONS[3]} (video train_000003)'
  assert str(e.value).startswith(
      f'cannot decode JPEG frame 5 (record {POSITIONS[3] + 5}) of {e.value.path}'
  )
  assert 'runcated' in str(e.value)
  for i in (0, 1, 2, 4):
    src[i]
  skip = ArrayRecordSource(out, mode='test', num_segments=8, skip_corrupt=True)
  ex = skip[3]
  assert ex['video_index'] == 4 and ex['label'] == 4 and skip.skipped == 1
  assert skip.skipped_paths == [e.value.path]


def test_damaged_shard_bytes(data, tmp_path):
  """A flipped byte inside a frame record fails ArrayRecord's checksum when (only when) that frame is read."""
  out = tmp_path / 'p' / 'train'
  pack.pack(data['list'], data['frames'], out, progress=False)
  shard = f'{out}-00000-of-00001.array_record'
  blob = bytearray(open(shard, 'rb').read())
  for k in (2, 3):  # of train_000006 (F = 7)
    frame = (data['frames'] / 'train_000006' / TEMPLATE.format(k)).read_bytes()
    at = blob.find(frame)
    assert at > 0 and blob.count(frame) == 1  # stored as-is, uncompressed
    blob[at + len(frame) // 2] ^= 0xFF
  open(shard, 'wb').write(bytes(blob))
  src = ArrayRecordSource(out, mode='test', num_segments=4)  # frames 1, 3, 5, 7
  with pytest.raises(
      CorruptVideoError,
      match=rf'cannot read record {POSITIONS[6] + 3} \(frame 3\) of '
      rf'{shard} record {POSITIONS[6]} \(video train_000006\).*hash mismatch',
  ):
    src[6]
  intact = ArrayRecordSource(data['prefix'], mode='test', num_segments=4)
  assert np.array_equal(src[5]['frames'], intact[5]['frames'])
  one = ArrayRecordSource(
      out, mode='test', num_segments=1
  )  # frame 4 only: the damaged ones are not read
  assert np.array_equal(
      one[6]['frames'], folder_source(data, mode='test', num_segments=1)[6]['frames']
  )


def test_index_and_shards_must_match(data, tmp_path):
  out = tmp_path / 'p' / 'train'
  short = tmp_path / 'short.txt'
  short.write_text(''.join(data['list'].read_text().splitlines(keepends=True)[:3]))
  pack.pack(short, data['frames'], out, progress=False)
  shutil.copy(f'{data["prefix"]}-00000-of-00001.array_record', f'{out}-00000-of-00001.array_record')
  with pytest.raises(ValueError, match=f'holds {NUM_RECORDS} records.*expects 22'):
    ArrayRecordSource(out, mode='test', num_segments=4)
  # Same counts, other videos: the metadata record read with each clip says so.
  index = json.loads(open(f'{data["prefix"]}.json').read())
  index['videos']['path'][1], index['videos']['label'][1] = 'elsewhere', 9
  (tmp_path / 'edited.json').write_text(json.dumps(index))
  shutil.copy(
      f'{data["prefix"]}-00000-of-00001.array_record', tmp_path / index['shards'][0]['file']
  )
  edited = ArrayRecordSource(tmp_path / 'edited.json', mode='test', num_segments=4)
  with pytest.raises(
      CorruptVideoError, match="holds 'train_000001'.*index says 'elsewhere'.*do not belong"
  ):
    edited[1]
  assert np.array_equal(
      edited[2]['frames'], folder_source(data, mode='test', num_segments=4)[2]['frames']
  )
  index['videos']['position'][2] += 1
  (tmp_path / 'edited.json').write_text(json.dumps(index))
  with pytest.raises(
      ValueError, match=r'inconsistent index.*video 2 \(train_000002\) at position 20'
  ):
    ArrayRecordSource(tmp_path / 'edited.json', mode='test', num_segments=4)
  with pytest.raises(FileNotFoundError, match='no ArrayRecord index or shards'):
    ArrayRecordSource(tmp_path / 'nothing', mode='test', num_segments=4)


def test_format_1_asks_to_repack(data, tmp_path):
  """Format-1 sets (one record per video) are not readable: index and records say to re-pack."""
  from array_record.python.array_record_module import ArrayRecordWriter  # pylint: disable=g-import-not-at-top

  old = {
      'format': arrayrecord.FORMAT_NAME,
      'format_version': 1,
      'kind': 'frames',
      'num_records': 1,
      'shards': [{'file': 'train-00000-of-00001.array_record', 'num_records': 1}],
      'records': {'path': ['a'], 'num_frames': [1], 'label': [0]},
  }
  (tmp_path / 'train.json').write_text(json.dumps(old))
  shard = tmp_path / 'train-00000-of-00001.array_record'
  writer = ArrayRecordWriter(str(shard), arrayrecord.WRITER_OPTIONS)
  writer.write(b'RNLV' + (1).to_bytes(2, 'little') + bytes(10) + b'{}')  # a format-1 record header
  writer.close()
  repack = r're-pack it with python -m rnl_jax.data.pack'
  with pytest.raises(ValueError, match=rf'train\.json: index format_version 1.*{repack}'):
    ArrayRecordSource(tmp_path / 'train', mode='test', num_segments=4)
  os.rename(tmp_path / 'train.json', tmp_path / 'old.json')
  with pytest.raises(
      ValueError, match=rf'record 0 is not a readable video metadata record.*{repack}'
  ):
    ArrayRecordSource(shard, mode='test', num_segments=4)
  # --overwrite replaces a format-1 set, its shards included
  os.rename(tmp_path / 'old.json', tmp_path / 'train.json')
  pack.pack(
      data['list'], data['frames'], tmp_path / 'train', num_shards=2, overwrite=True, progress=False
  )
  assert sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / 'train*'))) == [
      'train-00000-of-00002.array_record',
      'train-00001-of-00002.array_record',
      'train.json',
  ]


def test_pack_missing_and_short_folders(data, tmp_path, capsys):
  frames = copy_frames(data, tmp_path / 'frames')
  shutil.rmtree(frames / 'train_000002')
  out = tmp_path / 'p' / 'train'
  args = ['--list', str(data['list']), '--root', str(frames), '--out', str(out), '--no_progress']
  with pytest.raises(SystemExit) as e:
    pack.main(args)
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert f'video folder {frames / "train_000002"} does not exist' in err and '--skip_corrupt' in err
  assert not glob.glob(f'{out}*')  # nothing left behind

  summary = pack.main(args + ['--skip_corrupt', '--shards', '2'])
  assert summary['skipped'] == 1 and summary['num_videos'] == len(LIST_FRAMES) - 1
  assert 'skipped 1 unreadable' in capsys.readouterr().err
  index = arrayrecord.read_index(f'{out}.json')
  assert [s['path'] for s in index['skipped']] == ['train_000002']
  assert 'does not exist' in index['skipped'][0]['error']
  assert [(s['num_videos'], s['num_records']) for s in index['shards']] == [
      (3, 3 + 12 + 5 + 8),
      (4, 4 + 32),
  ]
  src = ArrayRecordSource(out, mode='test', num_segments=4)
  assert 'train_000002' not in [r.path for r in src.records]
  intact = ArrayRecordSource(data['prefix'], mode='test', num_segments=4)
  assert np.array_equal(src[2]['frames'], intact[3]['frames'])

  # The list promises more frames than the folder holds.
  (tmp_path / 'long.txt').write_text('train_000001 13 1\n')
  with pytest.raises(
      pack.PackError, match=r'train_000001.*img_00013\.jpg.*holds 12 files but the list says 13'
  ):
    pack.pack(tmp_path / 'long.txt', frames, tmp_path / 'q' / 'train', progress=False)


def test_existing_output_needs_overwrite(data, tmp_path):
  out = tmp_path / 'p' / 'train'
  pack.pack(data['list'], data['frames'], out, num_shards=3, progress=False)
  with pytest.raises(pack.PackError, match='exists; pass --overwrite'):
    pack.pack(data['list'], data['frames'], out, progress=False)
  pack.pack(data['list'], data['frames'], out, num_shards=2, overwrite=True, progress=False)
  assert sorted(os.path.basename(p) for p in glob.glob(f'{out}*')) == [
      'train-00000-of-00002.array_record',
      'train-00001-of-00002.array_record',
      'train.json',
  ]
  with pytest.raises(pack.PackError, match='--shards must be in'):
    pack.pack(data['list'], data['frames'], tmp_path / 'x', num_shards=9, progress=False)


def test_choose_num_shards():
  assert pack._choose_num_shards(None, 1) == 1
  assert pack._choose_num_shards(None, pack.RECORDS_PER_SHARD) == 1
  assert pack._choose_num_shards(None, pack.RECORDS_PER_SHARD + 1) == 2
  assert pack._choose_num_shards(3, 3) == 3 and pack._choose_num_shards('2', 5) == 2
  for bad in (4, -1):
    with pytest.raises(pack.PackError, match=r'--shards must be in \[1, 3\] for 3 records'):
      pack._choose_num_shards(bad, 3)


def test_packed_positions_skips_and_mismatches():
  """Each video's metadata record sits at its shard's running record count; skips and counts."""
  packed, written = pack._Packed(2), []

  class Writer:
    write = written.append

  rec = lambda path, num_frames, label: datasets.VideoRecord(path, num_frames, label)
  packed.add(Writer, 0, rec('a', 2, 1), ('ok', b'm', [b'f1', b'f22'], 4, 3), videos=False)
  # 'b': the list says 5 frames, 1 is decoded.
  packed.add(Writer, 0, rec('b', 5, 0), ('ok', b'mm', [b'g'], 4, 3), videos=True)
  packed.add(Writer, 1, rec('c', None, 2), ('ok', b'm', [b'h'], 6, 5), videos=True)
  assert written == [b'm', b'f1', b'f22', b'mm', b'g', b'm', b'h'] and packed.total_bytes == 11
  assert packed.cols['path'] == ['a', 'b', 'c'] and packed.cols['num_frames'] == [2, 1, 1]
  assert list(zip(packed.cols['shard'], packed.cols['position'])) == [(0, 0), (0, 3), (1, 0)]
  assert packed.videos_in == [2, 1] and packed.records_in == [5, 2]
  assert packed.mismatches == [{'path': 'b', 'list': 5, 'decoded': 1}]
  packed.skip(rec('d', 3, 0), 'broken', 'list.txt', skip_corrupt=True)
  assert packed.skipped == [{'path': 'd', 'error': 'broken'}]
  with pytest.raises(
      pack.PackError, match=r"broken \(list list.txt, entry 'e'\); pass --skip_corrupt"
  ):
    packed.skip(rec('e', 3, 0), 'broken', 'list.txt', skip_corrupt=False)


def test_old_shard_files(tmp_path):
  index = tmp_path / 'x.json'
  index.write_text(json.dumps({'shards': [{'file': 'x-00000-of-00001.array_record'}]}))
  assert pack._old_shard_files(index) == ['x-00000-of-00001.array_record']
  index.write_text('{"shards": 3}')
  assert pack._old_shard_files(index) == []
  assert pack._old_shard_files(tmp_path / 'missing.json') == []


# ----------------------------------------------------------------------------------------------------
# videos


def write_mp4(path, num_frames, height=32, width=48):
  """H.264 yuv420p mp4 whose frame k (0-based) is flat grey 20 * k + 10."""
  import av  # pylint: disable=g-import-not-at-top

  with av.open(str(path), 'w') as container:
    stream = container.add_stream('libx264', rate=25)
    stream.width, stream.height, stream.pix_fmt = width, height, 'yuv420p'
    for k in range(num_frames):
      frame = av.VideoFrame.from_ndarray(
          np.full((height, width, 3), 20 * k + 10, np.uint8), format='rgb24'
      )
      for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def test_pack_videos(tmp_path, capsys):
  vids = tmp_path / 'videos'
  vids.mkdir()
  write_mp4(vids / 'a.mp4', 10)
  write_mp4(vids / 'b.mp4', 7)
  (tmp_path / 'two.txt').write_text('a.mp4 1\nb.mp4 0\n')
  out = tmp_path / 'p' / 'v'
  summary = pack.main(
      [
          '--videos',
          '--list',
          str(tmp_path / 'two.txt'),
          '--root',
          str(vids),
          '--out',
          str(out),
          '--no_progress',
      ]
  )
  assert summary['num_videos'] == 2 and summary['num_records'] == 2 + 10 + 7
  src = ArrayRecordSource(out, mode='test', num_segments=10)
  assert [(r.path, r.num_frames, r.label, r.width, r.height) for r in src.records] == [
      ('a.mp4', 10, 1, 48, 32),
      ('b.mp4', 7, 0, 48, 32),
  ]
  assert src.kind == 'videos'
  clip = src[0]['frames']  # [10, 32, 48, 3]: frames 1..10 in order
  assert clip.shape == (10, 32, 48, 3)
  assert np.abs(clip.reshape(10, -1).mean(axis=1) - (20 * np.arange(10) + 10)).max() < 3

  # `<path> <num_frames> <label>`: a wrong count is reported, the decoded one stored; a missing file fails.
  (tmp_path / 'three.txt').write_text('a.mp4 12 1\nb.mp4 7 0\n')
  summary = pack.main(
      [
          '--videos',
          '--list',
          str(tmp_path / 'three.txt'),
          '--root',
          str(vids),
          '--out',
          str(tmp_path / 'q' / 'v'),
          '--no_progress',
      ]
  )
  assert summary['frame_count_mismatches'] == 1
  assert '1 videos decoded to another frame count' in capsys.readouterr().err
  index = arrayrecord.read_index(tmp_path / 'q' / 'v.json')
  assert index['frame_count_mismatches'] == [{'path': 'a.mp4', 'list': 12, 'decoded': 10}]
  assert index['videos']['num_frames'] == [10, 7]
  (tmp_path / 'missing.txt').write_text('a.mp4 1\nnope.mp4 0\n')
  with pytest.raises(pack.PackError, match=f'video file {vids / "nope.mp4"} does not exist'):
    pack.pack(tmp_path / 'missing.txt', vids, tmp_path / 'r' / 'v', videos=True, progress=False)


def test_data_modules_do_not_import_jax():
  code = (
      'import sys, rnl_jax.data.arrayrecord, rnl_jax.data.pack; '
      'assert not {"jax", "torch", "tensorflow"} & set(sys.modules)'
  )
  proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO)
  assert proc.returncode == 0, proc.stderr
