"""Raw-video decoding (rnl_jax.data.video): frame-exact GOP-aware decoding, frame-count checks, bad files,
the clip source, the video list file and the synthetic generator's mp4 output.

The reference everywhere is a plain sequential PyAV decode: frame k = the k-th frame it yields.
"""

import io
import os
import pathlib
import struct
import subprocess
import sys

import av
import numpy as np
from PIL import Image
import pytest

from rnl_jax.data import datasets, synthetic, video
from rnl_jax.data.datasets import VideoFileRecord, parse_video_list_file
from rnl_jax.data.sources import CorruptVideoError
from rnl_jax.data.video import VideoFileSource, VideoReader, read_frames, write_video

REPO = pathlib.Path(__file__).resolve().parents[1]
T, H, W = 60, 48, 64

# name: write_video arguments. B-frames: libx264's default (3), mpeg4 with bframes=2.
VIDEOS = {
    'k250.mp4': dict(keyframe_interval=250),
    'k30.mp4': dict(keyframe_interval=30),
    'k7.mp4': dict(keyframe_interval=7),
    'k1.mp4': dict(keyframe_interval=1),
    'k10_nob.mp4': dict(keyframe_interval=10, bframes=0),
    'k10.mkv': dict(keyframe_interval=10),
    'vp9.webm': dict(codec='libvpx-vp9', keyframe_interval=20),
    'vp8.webm': dict(codec='libvpx', keyframe_interval=20),
    'mpeg4.avi': dict(codec='mpeg4', keyframe_interval=25, bframes=2),
    'mjpeg.avi': dict(codec='mjpeg'),
}


def _content(t=T, h=H, w=W, seed=0):
  """uint8 [t, h, w, 3]: a gradient moving 2 px per frame, a brightness ramp and mild noise."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:h, :w]
  base = np.stack([xx * 3, yy * 4, (xx + yy) * 2], -1).astype(np.float32)
  frames = [np.roll(base, 2 * i, axis=1) + i + rng.normal(0, 6, (h, w, 3)) for i in range(t)]
  return np.clip(frames, 0, 255).astype(np.uint8)


def sequential_decode(path):
  """uint8 [F, H, W, 3]: every frame of a plain sequential decode (the definition of frame numbers)."""
  with av.open(os.fspath(path)) as container:
    return np.stack([f.to_ndarray(format='rgb24') for f in container.decode(video=0)])


def keyframe_numbers(path):
  """1-based numbers of the keyframes (by pts rank)."""
  with av.open(os.fspath(path)) as container:
    packets = [p for p in container.demux(video=0) if p.size]
  order = sorted(p.pts for p in packets)
  return sorted(order.index(p.pts) + 1 for p in packets if p.is_keyframe)


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
  """{name: (path, sequential frames [F, H, W, 3])}."""
  root = tmp_path_factory.mktemp('videos')
  frames = _content()
  out = {}
  for name, kwargs in VIDEOS.items():
    path = write_video(root / name, frames, **kwargs)
    ref = sequential_decode(path)
    assert ref.shape == (T, H, W, 3), name
    out[name] = (path, ref)
  return out


# ----------------------------------------------------------------------------------------------------
# writing


def test_write_video_keyframe_interval_is_exact(videos):
  for name, k in (
      ('k250.mp4', 250),
      ('k30.mp4', 30),
      ('k7.mp4', 7),
      ('k1.mp4', 1),
      ('k10.mkv', 10),
      ('vp9.webm', 20),
      ('vp8.webm', 20),
  ):
    assert keyframe_numbers(videos[name][0]) == list(range(1, T + 1, k)), name


def test_written_videos_have_b_frames_where_expected(videos):
  for name, reordered in (
      ('k30.mp4', True),
      ('mpeg4.avi', True),
      ('k10_nob.mp4', False),
      ('k1.mp4', False),
  ):
    with av.open(os.fspath(videos[name][0])) as container:
      pts = [p.pts for p in container.demux(video=0) if p.size]
    assert (pts != sorted(pts)) == reordered, name  # decode order != presentation order


def test_written_frames_are_close_to_the_input(videos):
  frames = _content()
  for name, (_, ref) in videos.items():
    assert np.abs(ref.astype(np.float32) - frames).mean() < 6, name  # 4:2:0 of the noise dominates


def test_write_video_odd_size(tmp_path):
  frames = _content(4, 25, 33)
  with pytest.raises(ValueError, match='even width and height'):
    write_video(tmp_path / 'odd.mp4', frames)
  path = write_video(tmp_path / 'odd.mp4', frames, pad=True)
  got = read_frames(path)
  assert got.shape == (4, 26, 34, 3)
  assert np.abs(got[:, :25, :33].astype(np.float32) - frames).mean() < 8
  with pytest.raises(ValueError, match='uint8'):
    write_video(tmp_path / 'f.mp4', frames.astype(np.float32))
  with pytest.raises(ValueError, match='codec'):
    write_video(tmp_path / 'f.mp4', _content(2), codec='h265')


# ----------------------------------------------------------------------------------------------------
# frame-exact decoding


@pytest.mark.parametrize('name', list(VIDEOS))
@pytest.mark.parametrize(
    'buffered,skip_nonref',
    [(True, True), (False, True), (True, False)],
    ids=['memory', 'seek', 'memory-noskip'],
)
def test_every_frame_matches_sequential_decode(videos, name, buffered, skip_nonref):
  path, ref = videos[name]
  limit = video.DEFAULT_MAX_BUFFER_BYTES if buffered else 0
  with VideoReader(path, max_buffer_bytes=limit, skip_nonref=skip_nonref) as reader:
    assert reader.num_frames == T
    for k in range(1, T + 1):  # one frame at a time: every frame through its own GOP
      np.testing.assert_array_equal(reader.decode([k])[0], ref[k - 1], err_msg=f'{name} frame {k}')
    rng = np.random.default_rng(0)
    selections = [
        np.arange(1, T + 1),
        [T],
        [T - 1, T],
        [1, 7, 8, 9, 30, 31, 60],
        np.arange(3, T, 11),
    ]
    selections += [np.unique(rng.integers(1, T + 1, size=8)) for _ in range(5)]
    for numbers in selections:
      np.testing.assert_array_equal(
          reader.decode(numbers), ref[np.asarray(numbers) - 1], err_msg=f'{name} frames {numbers}'
      )


@pytest.mark.parametrize('buffered', [True, False], ids=['memory', 'seek'])
def test_edit_list_trimmed_mp4(tmp_path, buffered):
  """An mp4 whose edit list hides its first 5 frames (keyframe included): 55 frames, as decoded."""
  write_video(tmp_path / 'full.mp4', _content(), keyframe_interval=30)
  trimmed = tmp_path / 'trimmed.mp4'
  with av.open(os.fspath(tmp_path / 'full.mp4')) as src, av.open(os.fspath(trimmed), 'w') as dst:
    stream = dst.add_stream_from_template(src.streams.video[0])
    shift = 5 * round(1 / (src.streams.video[0].time_base * 25))  # 5 frames at 25 fps
    for packet in src.demux(video=0):
      if packet.size:
        packet.pts, packet.dts, packet.stream = packet.pts - shift, packet.dts - shift, stream
        dst.mux(packet)
  ref = sequential_decode(trimmed)
  assert len(ref) == T - 5
  limit = video.DEFAULT_MAX_BUFFER_BYTES if buffered else 0
  with VideoReader(trimmed, max_buffer_bytes=limit) as reader:
    assert reader.num_frames == T - 5 and reader.claimed_frames == T
    for k in range(1, T - 4):
      np.testing.assert_array_equal(reader.decode([k])[0], ref[k - 1], err_msg=f'frame {k}')
    np.testing.assert_array_equal(reader.decode(np.arange(1, T - 4)), ref)


def test_output_order_numbering_matches_sequential_decode(videos):
  """The fallback for timestamps that cannot number frames gives the same pixels."""
  for name in ('k30.mp4', 'mpeg4.avi', 'vp9.webm'):
    path, ref = videos[name]
    with VideoReader(path) as reader:
      reader._by_pts = None  # pylint: disable=protected-access
      np.testing.assert_array_equal(reader.decode([2, 31, 59]), ref[[1, 30, 58]], err_msg=name)


def test_reader_accepts_bytes_and_file_objects(videos):
  path, ref = videos['k30.mp4']
  data = pathlib.Path(path).read_bytes()
  np.testing.assert_array_equal(read_frames(data, [5, 40], name='clip.mp4'), ref[[4, 39]])
  np.testing.assert_array_equal(read_frames(io.BytesIO(data), [60], max_buffer_bytes=0), ref[[59]])
  with pytest.raises(ValueError, match='outside'):
    read_frames(data, [0])


# ----------------------------------------------------------------------------------------------------
# the frame count is verified


def _hide_vp8_frames(src, dst, frames):
  """Copies a VP8 webm, clearing show_frame of the given 1-based frames: packets stay, frames vanish."""
  with av.open(os.fspath(src)) as container:
    packets = [bytes(p) for p in container.demux(video=0) if p.size]
  data = bytearray(pathlib.Path(src).read_bytes())
  for k in frames:
    i = data.find(packets[k - 1])
    assert i >= 0 and data.find(packets[k - 1], i + 1) < 0
    data[i] &= ~0x10  # VP8 frame tag bit 4: show_frame
  pathlib.Path(dst).write_bytes(data)
  return dst


@pytest.mark.parametrize('buffered', [True, False], ids=['memory', 'seek'])
def test_frames_that_do_not_decode_are_an_error(videos, tmp_path, buffered):
  limit = video.DEFAULT_MAX_BUFFER_BYTES if buffered else 0
  src = videos['vp8.webm'][0]
  tail = _hide_vp8_frames(src, tmp_path / 'tail.webm', [58, 59, 60])
  assert len(sequential_decode(tail)) == 57
  with VideoReader(tail, max_buffer_bytes=limit) as reader:
    assert reader.num_frames == 60  # what the container claims
    reader.decode([1, 57])
    with pytest.raises(CorruptVideoError, match='claims 60 frames but only 57 decode') as e:
      reader.decode([1, 58])
  assert e.value.path == os.fspath(tail) and os.fspath(tail) in str(e.value)
  middle = _hide_vp8_frames(src, tmp_path / 'middle.webm', [30])
  with VideoReader(middle, max_buffer_bytes=limit) as reader:
    with pytest.raises(CorruptVideoError, match='frame 30 does not decode'):
      reader.decode([35])  # the pass from keyframe 21 skips frame 30


def test_header_claiming_more_frames_than_present(videos, tmp_path):
  """An avi whose stream header says 80 frames while it holds 60; a truncated faststart mp4."""
  data = bytearray(pathlib.Path(videos['mpeg4.avi'][0]).read_bytes())
  i = data.find(b'strh')
  assert data[i + 8 : i + 12] == b'vids' and struct.unpack('<I', data[i + 40 : i + 44]) == (T,)
  data[i + 40 : i + 44] = struct.pack('<I', 80)  # dwLength
  lie = tmp_path / 'lie.avi'
  lie.write_bytes(data)
  with pytest.raises(CorruptVideoError, match='claims 80 frames but only 60 are present') as e:
    VideoReader(lie)
  assert e.value.path == os.fspath(lie)

  fast = tmp_path / 'faststart.mp4'
  write_video(fast, _content(40), keyframe_interval=10, preset='ultrafast', crf=10)
  with av.open(os.fspath(fast)) as c:
    assert c.streams.video[0].frames == 40
  # remux with the index (moov) first, then cut the file in half
  with (
      av.open(os.fspath(fast)) as src,
      av.open(os.fspath(tmp_path / 'fs.mp4'), 'w', options={'movflags': 'faststart'}) as dst,
  ):
    stream = dst.add_stream_from_template(src.streams.video[0])
    for packet in src.demux(video=0):
      if packet.size:
        packet.stream = stream
        dst.mux(packet)
  data = (tmp_path / 'fs.mp4').read_bytes()
  assert data.find(b'moov') < data.find(b'mdat')
  cut = tmp_path / 'cut.mp4'
  cut.write_bytes(data[: len(data) // 2])
  with pytest.raises(CorruptVideoError, match=r'claims 40 frames but only \d+ are present') as e:
    VideoReader(cut)
  assert e.value.path == os.fspath(cut)


# ----------------------------------------------------------------------------------------------------
# bad files


def _bad_files(root, good):
  """{name: (path, message pattern)} of files that must raise CorruptVideoError naming them."""
  root = pathlib.Path(root)
  files = {}
  (root / 'empty.mp4').write_bytes(b'')
  files['empty'] = (root / 'empty.mp4', 'is empty')
  (root / 'text.mp4').write_text('this is not a video\n' * 20)
  files['text'] = (root / 'text.mp4', 'cannot open as a video')
  data = pathlib.Path(good).read_bytes()
  (root / 'half.mp4').write_bytes(data[: len(data) // 2])  # moov at the end: cut off
  files['truncated'] = (root / 'half.mp4', 'cannot open as a video')
  with av.open(os.fspath(root / 'audio.m4a'), 'w') as c:
    s = c.add_stream('aac', rate=16000)
    frame = av.AudioFrame.from_ndarray(
        np.zeros((1, 1024), np.float32), format='fltp', layout='mono'
    )
    frame.sample_rate = 16000
    for p in list(s.encode(frame)) + list(s.encode()):
      c.mux(p)
  files['audio only'] = (root / 'audio.m4a', 'no video stream')
  with av.open(os.fspath(root / 'zero.avi'), 'w') as c:
    s = c.add_stream('mpeg4', rate=25)
    s.width, s.height, s.pix_fmt = W, H, 'yuv420p'
    c.start_encoding()
  files['zero frames'] = (root / 'zero.avi', 'no frames')
  files['missing'] = (root / 'gone.mp4', 'does not exist')
  return files


def test_bad_files_raise_corrupt_video_error_naming_them(videos, tmp_path):
  for what, (path, pattern) in _bad_files(tmp_path, videos['k30.mp4'][0]).items():
    with pytest.raises(CorruptVideoError, match=pattern) as e:
      read_frames(path, [1])
    assert e.value.path == os.fspath(path), what
    assert os.fspath(path) in str(e.value), what


# ----------------------------------------------------------------------------------------------------
# the clip source


@pytest.mark.parametrize(
    'mode,kwargs',
    [
        ('train', {}),
        ('val', {}),
        ('test', {}),
        ('test', {'twice_sample': True}),
        ('train', {'dense': True}),
        ('test', {'dense': True, 'num_clips': 3}),
    ],
)
def test_source_clips_equal_sequentially_decoded_frames(videos, mode, kwargs):
  names = ['k30.mp4', 'k250.mp4', 'vp9.webm', 'mpeg4.avi']
  root = pathlib.Path(videos['k30.mp4'][0]).parent
  records = [VideoFileRecord(n, label) for label, n in enumerate(names)]
  src = VideoFileSource(root, records, mode=mode, num_segments=8, seed=5, **kwargs)
  assert len(src) == 4
  for epoch in (0, 1):
    src.set_epoch(epoch)
    for i, name in enumerate(names):
      example = src[i]
      idx = src.sample(i, T).reshape(-1)  # the same (seed, epoch, index) generator
      assert example['label'] == i and example['video_index'] == i
      assert example['frames'].shape == (len(idx), H, W, 3) and example['frames'].dtype == np.uint8
      np.testing.assert_array_equal(
          example['frames'], videos[name][1][idx - 1], err_msg=f'{mode} {name}'
      )


def test_source_accepts_tuples_and_absolute_paths(videos):
  path, ref = videos['k7.mp4']
  src = VideoFileSource(
      '/elsewhere', [(os.fspath(path), 3), (os.fspath(path), 60, 4)], mode='val', num_segments=4
  )
  assert src.records[1] == VideoFileRecord(os.fspath(path), 4, 60)
  example = src[1]
  assert example['label'] == 4
  np.testing.assert_array_equal(example['frames'], ref[src.sample(1, T).reshape(-1) - 1])


def test_skip_corrupt_replaces_and_counts(videos, tmp_path):
  good = videos['k30.mp4'][0]
  bad = _bad_files(tmp_path, good)
  names = [
      os.fspath(good),
      os.fspath(bad['text'][0]),
      os.fspath(bad['missing'][0]),
      os.fspath(good),
  ]
  records = [VideoFileRecord(n, i) for i, n in enumerate(names)]
  src = VideoFileSource(tmp_path, records, mode='val', num_segments=8, skip_corrupt=True)
  example = src[1]
  assert example['video_index'] == 3 and example['label'] == 3
  assert src.skipped == 2 and src.skipped_paths == names[1:3]
  strict = VideoFileSource(tmp_path, records, mode='val', num_segments=8)
  with pytest.raises(CorruptVideoError, match='cannot open as a video') as e:
    strict[1]
  assert e.value.path == names[1]
  every_bad = VideoFileSource(tmp_path, records[1:3], mode='val', num_segments=8, skip_corrupt=True)
  with pytest.raises(CorruptVideoError, match='no readable video'):
    every_bad[0]


def test_video_module_does_not_import_jax():
  code = (
      'import sys, rnl_jax.data.video; '
      'assert "jax" not in sys.modules and "torch" not in sys.modules'
  )
  proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO)
  assert proc.returncode == 0, proc.stderr


# ----------------------------------------------------------------------------------------------------
# video list files


def test_parse_video_list_file(tmp_path):
  path = tmp_path / 'videos.txt'
  path.write_text('a/x.mp4 3\n\n  b/my clip.webm 7  \n/abs/c 1.avi 120 2\nd.mp4 0 0\n')
  assert parse_video_list_file(path, num_classes=8) == [
      VideoFileRecord('a/x.mp4', 3),
      VideoFileRecord('b/my clip.webm', 7),
      VideoFileRecord('/abs/c 1.avi', 2, 120),
      VideoFileRecord('d.mp4', 0, 0),
  ]


@pytest.mark.parametrize(
    'line,message',
    [
        ('lonely.mp4', 'expected `path label`'),
        ('a.mp4 x', "label 'x' is not an integer"),
        ('a.mp4 10 1.5', "label '1.5' is not an integer"),
        ('a.mp4 -3 1', 'negative frame count'),
        ('a.mp4 -1', 'label -1 outside'),
        ('a.mp4 30 5', r'label 5 outside \[0, 5\)'),
    ],
)
def test_parse_video_list_file_errors_name_file_and_line(tmp_path, line, message):
  path = tmp_path / 'bad.txt'
  path.write_text(f'ok.mp4 1\n\n{line}\n')
  with pytest.raises(ValueError, match=message) as e:
    parse_video_list_file(path, num_classes=5)
  assert f'{path}:3' in str(e.value)


# ----------------------------------------------------------------------------------------------------
# synthetic --mp4


def test_synthetic_mp4_output(tmp_path):
  out = tmp_path / 'synth'
  synthetic.main(
      [
          '--out',
          str(out),
          '--num_train',
          '3',
          '--num_val',
          '2',
          '--frames',
          '16',
          '--height',
          '48',
          '--width',
          '64',
          '--seed',
          '3',
          '--mp4',
          '--keyframe_interval',
          '6',
      ]
  )
  for split, n in (('train', 3), ('val', 2)):
    frame_records = datasets.parse_list_file(out / f'{split}.txt')
    records = parse_video_list_file(out / f'{split}_videos.txt', num_classes=synthetic.NUM_CLASSES)
    assert [r.path for r in records] == [f'videos/{split}_{i:06d}.mp4' for i in range(n)]
    for rec, frec in zip(records, frame_records):
      assert (rec.num_frames, rec.label) == (16, frec.label)
      path = out / rec.path
      assert keyframe_numbers(path) == [1, 7, 13]
      decoded = sequential_decode(path)  # [16, 48, 64, 3]
      jpegs = np.stack(
          [
              np.asarray(Image.open(out / 'frames' / frec.path / f'img_{t:05d}.jpg'))
              for t in range(1, 17)
          ]
      )
      assert decoded.shape == jpegs.shape == (16, 48, 64, 3)
      assert np.abs(decoded.astype(np.float32) - jpegs).mean() < 4, rec.path
  src = VideoFileSource(
      out, parse_video_list_file(out / 'val_videos.txt'), mode='val', num_segments=8
  )
  assert src[1]['frames'].shape == (8, 48, 64, 3) and src[1]['label'] == 1
  assert not [p for p in os.listdir(out / 'videos') if p.startswith('.')]


def test_synthetic_mp4_added_to_frames_only_dataset(tmp_path):
  kwargs = dict(num_frames=8, height=32, width=32, seed=1)
  synthetic.generate(tmp_path, 2, 1, **kwargs)
  assert not (tmp_path / 'videos').exists() and not (tmp_path / 'train_videos.txt').exists()
  frames_before = {p: p.read_bytes() for p in (tmp_path / 'frames').rglob('*.jpg')}
  summary = synthetic.generate(tmp_path, 2, 1, videos=True, keyframe_interval=4, **kwargs)
  assert summary['generated'] == 3  # the mp4s only
  assert sorted(os.listdir(tmp_path / 'videos')) == [
      'train_000000.mp4',
      'train_000001.mp4',
      'val_000000.mp4',
  ]
  assert {p: p.read_bytes() for p in (tmp_path / 'frames').rglob('*.jpg')} == frames_before
  assert (
      synthetic.generate(tmp_path, 2, 1, videos=True, keyframe_interval=4, **kwargs)['generated']
      == 0
  )
  with pytest.raises(ValueError, match='other settings'):
    synthetic.generate(tmp_path, 2, 1, videos=True, keyframe_interval=8, **kwargs)
  with pytest.raises(ValueError, match='even height and width'):
    synthetic.generate(tmp_path / 'odd', 1, 0, num_frames=8, height=33, width=32, videos=True)
