"""Dataset preparation (rnl_jax.data.prepare): a tiny mock of each official download (a few short videos
made with PyAV, annotations in the official formats, one missing video, one corrupt file, one unknown
class, and a zero-frame video or empty folder), prepared in each format and read back through the input
pipeline: labels, frame counts, the exact report, and a second run that does no work.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import av
import numpy as np
from PIL import Image
import pytest

from configs import tiny
from rnl_jax import input_pipeline as ip
from rnl_jax.data import datasets
from rnl_jax.data.prepare import AnnotationError, PrepareError, prepare
from rnl_jax.data.prepare import core, kinetics, media
from rnl_jax.data.kinetics400_classes import NAMES as K400
from rnl_jax.data.video import write_video

REPO = pathlib.Path(__file__).resolve().parents[1]
H, W = 48, 64
SHORT = 32  # --short-side of most tests: frames 43x32, videos 42x32
FORMATS = ('frames', 'arrayrecord', 'videos')
TABLE = {
    'kinetics400': 'kinetics',
    'something_v1': 'something',
    'something_v2': 'somethingv2',
    'ucf101': 'ucf101',
    'hmdb51': 'hmdb51',
}


# ----------------------------------------------------------------------------------------------------
# mock downloads


def _clip(t, seed):
  """uint8 [t, H, W, 3]: a moving gradient plus noise (content differs per seed)."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:H, :W]
  base = np.stack([xx * 3, yy * 4, (xx + yy) * 2], -1).astype(np.float32) + 40 * seed
  frames = [np.roll(base, 3 * i, axis=1) + rng.normal(0, 4, (H, W, 3)) for i in range(t)]
  return np.clip(frames, 0, 255).astype(np.uint8)


def _video(path, t, seed, codec='libx264'):
  path.parent.mkdir(parents=True, exist_ok=True)
  write_video(path, _clip(t, seed), codec=codec, keyframe_interval=5)


def _corrupt(path):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8)))


def _zero_frames(path, codec):
  """A container with a video stream that holds no frame (only audio packets)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  webm = path.suffix == '.webm'
  with av.open(str(path), 'w') as c:
    s = c.add_stream(codec, rate=25)
    s.width, s.height, s.pix_fmt = W, H, 'yuv420p'
    rate, n = (48000, 960) if webm else (16000, 1024)
    a = c.add_stream('libopus' if webm else 'aac', rate=rate)
    frame = av.AudioFrame.from_ndarray(
        np.zeros((1, n), np.float32), format='flt' if webm else 'fltp', layout='mono'
    )
    frame.sample_rate = rate
    for i in range(3):
      frame.pts = i * n
      for p in a.encode(frame):
        c.mux(p)
    for p in a.encode():
      c.mux(p)


def _lines(path, lines):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(''.join(line + '\n' for line in lines))


def mock_kinetics(root):
  header = 'label,youtube_id,time_start,time_end,split'
  _video(root / 'train/abseiling/aaaaaaaaaaa_000010_000020.mp4', 10, 0)
  _video(root / 'train/hurling (sport)/bbbbbbbbbbb_000001_000011.mp4', 9, 1)
  _corrupt(root / "train/massaging person's head/eeeeeeeeeee_000000_000010.mp4")
  _video(root / 'train/dancing on the moon/ggggggggggg_000000_000010.mp4', 8, 2)
  _video(root / 'val/ccccccccccc_000005_000015.mp4', 8, 3)  # flat layout
  _video(root / 'val/yoga/hhhhhhhhhhh_000003_000013.mp4', 11, 4)
  _zero_frames(root / 'val/zumba/fffffffffff_000000_000010.mkv', 'libx264')
  _lines(
      root / 'annotations/train.csv',
      [
          header,
          'abseiling,aaaaaaaaaaa,10,20,train',
          '"hurling (sport)",bbbbbbbbbbb,1,11,train',
          'abseiling,ddddddddddd,0,10,train',
          '"dancing on the moon",ggggggggggg,0,10,train',
          "massaging person's head,eeeeeeeeeee,0,10,train",
      ],
  )
  _lines(
      root / 'annotations/validate.csv',
      [
          header,
          '"passing American football (in game)",ccccccccccc,5,15,val',
          'zumba,fffffffffff,0,10,val',
          'yoga,hhhhhhhhhhh,3,13,val',
      ],
  )
  train_csv, val_csv = str(root / 'annotations/train.csv'), str(root / 'annotations/validate.csv')
  return {
      'train': [
          ('abseiling/aaaaaaaaaaa_000010_000020', 10, 0),
          ('hurling_sport/bbbbbbbbbbb_000001_000011', 9, K400.index('hurling (sport)')),
      ],
      'val': [
          (
              'passing_American_football_in_game/ccccccccccc_000005_000015',
              8,
              K400.index('passing American football (in game)'),
          ),
          ('yoga/hhhhhhhhhhh_000003_000013', 11, K400.index('yoga')),
      ],
      'problems': {
          ('missing', 'train', 'ddddddddddd_000000_000010', f'{train_csv}:4'),
          ('unknown_class', 'train', 'ggggggggggg_000000_000010', f'{train_csv}:5'),
          ('undecodable', 'train', 'eeeeeeeeeee_000000_000010', f'{train_csv}:6'),
          ('zero_frames', 'val', 'fffffffffff_000000_000010', f'{val_csv}:3'),
      },
      'num_classes': 400,
      'fixable': root / "train/massaging person's head/eeeeeeeeeee_000000_000010.mp4",
  }


def _jpeg_folder(folder, t, seed):
  folder.mkdir(parents=True, exist_ok=True)
  for k, frame in enumerate(_clip(t, seed), 1):
    Image.fromarray(frame).save(folder / f'{k:05d}.jpg', quality=90)


def mock_something_v1(root):
  frames = root / '20bn-something-something-v1'
  _jpeg_folder(frames / '1', 8, 0)
  _jpeg_folder(frames / '2', 9, 1)
  _jpeg_folder(frames / '3', 10, 2)
  (frames / '4').mkdir()  # empty folder
  _jpeg_folder(frames / '5', 6, 3)
  (frames / '5' / '00003.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
  _lines(
      root / 'something-something-v1-labels.csv',
      ['Pushing something', 'Holding something', 'Moving something up'],
  )
  _lines(
      root / 'something-something-v1-train.csv',
      [
          '1;Pushing something',
          '4;Holding something',
          '7;Juggling something',
          '5;Moving something up',
      ],
  )
  _lines(
      root / 'something-something-v1-validation.csv',
      ['2;Holding something', '3;Moving something up', '6;Pushing something'],
  )
  train, val = (
      root / 'something-something-v1-train.csv',
      root / 'something-something-v1-validation.csv',
  )
  return {  # labels: the sorted class list (Holding, Moving up, Pushing)
      'train': [('1', 8, 2)],
      'val': [('2', 9, 0), ('3', 10, 1)],
      'problems': {
          ('zero_frames', 'train', '4', f'{train}:2'),
          ('unknown_class', 'train', '7', f'{train}:3'),
          ('undecodable', 'train', '5', f'{train}:4'),
          ('missing', 'val', '6', f'{val}:3'),
      },
      'num_classes': 174,
  }


def mock_something_v2(root):
  videos = root / '20bn-something-something-v2'
  for vid, t in (('10', 8), ('11', 9), ('12', 10)):
    _video(videos / f'{vid}.webm', t, int(vid), codec='libvpx-vp9')
  _corrupt(videos / '14.webm')
  _zero_frames(videos / '16.webm', 'libvpx-vp9')
  labels = {
      'Holding something': '0',
      'Pushing something from left to right': '1',
      'Putting something on something': '2',
  }
  (root / 'something-something-v2-labels.json').write_text(json.dumps(labels))
  entry = lambda vid, template: {
      'id': vid,
      'label': template.lower(),
      'template': template,
      'placeholders': ['a pen'],
  }
  (root / 'something-something-v2-train.json').write_text(
      json.dumps(
          [
              entry('10', 'Holding [something]'),
              entry('13', 'Pushing [something] from left to right'),
              entry('14', 'Putting [something] on [something]'),
              entry('15', 'Juggling [something]'),
          ]
      )
  )
  (root / 'something-something-v2-validation.json').write_text(
      json.dumps(
          [
              entry('11', 'Putting [something] on [something]'),
              entry('16', 'Holding [something]'),
              entry('12', 'Pushing [something] from left to right'),
          ]
      )
  )
  train, val = (
      root / 'something-something-v2-train.json',
      root / 'something-something-v2-validation.json',
  )
  return {
      'train': [('10', 8, 0)],
      'val': [('11', 9, 2), ('12', 10, 1)],
      'problems': {
          ('missing', 'train', '13', f'{train}:entry 2'),
          ('undecodable', 'train', '14', f'{train}:entry 3'),
          ('unknown_class', 'train', '15', f'{train}:entry 4'),
          ('zero_frames', 'val', '16', f'{val}:entry 2'),
      },
      'num_classes': 174,
      'fixable': videos / '14.webm',
  }


def mock_ucf101(root):
  videos = root / 'UCF-101'
  _video(videos / 'ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi', 10, 0, codec='mpeg4')
  _video(videos / 'HandstandPushups/v_HandStandPushups_g08_c01.avi', 9, 1, codec='mpeg4')
  _video(videos / 'YoYo/v_YoYo_g01_c01.avi', 8, 2, codec='mpeg4')
  _corrupt(videos / 'YoYo/v_YoYo_g02_c01.avi')
  _zero_frames(videos / 'YoYo/v_YoYo_g03_c01.avi', 'mpeg4')
  lists = root / 'ucfTrainTestlist'
  _lines(lists / 'classInd.txt', ['1 ApplyEyeMakeup', '2 HandstandPushups', '3 YoYo'])
  _lines(
      lists / 'trainlist01.txt',
      [
          'ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1',
          'HandstandPushups/v_HandStandPushups_g08_c01.avi 2',
          'Juggling/v_Juggling_g01_c01.avi 4',
          'YoYo/v_YoYo_g02_c01.avi 3',
      ],
  )
  _lines(
      lists / 'testlist01.txt',
      [
          'YoYo/v_YoYo_g01_c01.avi',
          'ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi',
          'YoYo/v_YoYo_g03_c01.avi',
      ],
  )
  train, test = lists / 'trainlist01.txt', lists / 'testlist01.txt'
  return {
      'train': [('v_ApplyEyeMakeup_g08_c01', 10, 0), ('v_HandStandPushups_g08_c01', 9, 1)],
      'val': [('v_YoYo_g01_c01', 8, 2)],
      'problems': {
          ('unknown_class', 'train', 'Juggling/v_Juggling_g01_c01.avi', f'{train}:3'),
          ('undecodable', 'train', 'YoYo/v_YoYo_g02_c01.avi', f'{train}:4'),
          ('missing', 'val', 'ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi', f'{test}:2'),
          ('zero_frames', 'val', 'YoYo/v_YoYo_g03_c01.avi', f'{test}:3'),
      },
      'num_classes': 101,
      'fixable': videos / 'YoYo/v_YoYo_g02_c01.avi',
  }


def mock_hmdb51(root):
  videos = root / 'hmdb51_org'
  _video(videos / 'brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi', 10, 0, codec='mpeg4')
  _video(videos / 'brush_hair/Brushing_hair_h_nm_np1_le_goo_1.avi', 9, 1, codec='mpeg4')
  _video(videos / 'kick_ball/Goal_kick_ball_f_cm_np1_ba_med_0.avi', 8, 2, codec='mpeg4')
  _video(videos / 'kick/kick_f_cm_np1_ri_med_0.avi', 10, 4, codec='mpeg4')  # then truncated:
  data = (videos / 'kick/kick_f_cm_np1_ri_med_0.avi').read_bytes()  # opens, 2 frames short
  (videos / 'kick/kick_f_cm_np1_ri_med_0.avi').write_bytes(data[: int(0.9 * len(data))])
  _video(videos / 'kick/unused_kick_f_cm_np1_ri_med_1.avi', 8, 3, codec='mpeg4')
  splits = root / 'testTrainMulti_7030_splits'
  _lines(
      splits / 'brush_hair_test_split1.txt',
      [
          'April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 ',
          'Brushing_hair_h_nm_np1_le_goo_1.avi 2 ',
          'Lost_brush_hair_h_nm_np1_le_goo_2.avi 1 ',
      ],
  )
  _lines(splits / 'kick_ball_test_split1.txt', ['Goal_kick_ball_f_cm_np1_ba_med_0.avi 2 '])
  _lines(
      splits / 'kick_test_split1.txt',
      ['kick_f_cm_np1_ri_med_0.avi 1 ', 'unused_kick_f_cm_np1_ri_med_1.avi 0 '],
  )
  _lines(splits / 'moonwalk_test_split1.txt', ['moonwalk_f_cm_np1_ri_med_0.avi 2 '])
  _lines(splits / 'brush_hair_test_split2.txt', ['April_09_brush_hair_u_nm_np1_ba_goo_0.avi 2 '])
  brush, kick, moon = (splits / f'{c}_test_split1.txt' for c in ('brush_hair', 'kick', 'moonwalk'))
  return {  # TSN's class order: brush_hair 0, kick_ball 20, kick 21
      'train': [('April_09_brush_hair_u_nm_np1_ba_goo_0', 10, 0)],
      'val': [
          ('Brushing_hair_h_nm_np1_le_goo_1', 9, 0),
          ('Goal_kick_ball_f_cm_np1_ba_med_0', 8, 20),
      ],
      'problems': {
          ('missing', 'train', 'Lost_brush_hair_h_nm_np1_le_goo_2.avi', f'{brush}:3'),
          ('undecodable', 'train', 'kick_f_cm_np1_ri_med_0.avi', f'{kick}:1'),
          ('unknown_class', 'val', 'moonwalk_f_cm_np1_ri_med_0.avi', f'{moon}:1'),
      },
      'num_classes': 51,
      'fixable': videos / 'kick/kick_f_cm_np1_ri_med_0.avi',
  }


MOCKS = {
    'kinetics400': mock_kinetics,
    'something_v1': mock_something_v1,
    'something_v2': mock_something_v2,
    'ucf101': mock_ucf101,
    'hmdb51': mock_hmdb51,
}


@pytest.fixture(scope='module')
def mocks(tmp_path_factory):
  """{dataset: (source folder, expectations)}, built once (read-only for the tests)."""
  out = {}
  for name, build in MOCKS.items():
    root = tmp_path_factory.mktemp(name)
    out[name] = (root, build(root))
  return out


def writable_copy(mocks, dataset, dst):
  src, expected = mocks[dataset]
  shutil.copytree(src, dst)
  expected = dict(
      expected,
      problems={(k, s, v, w.replace(str(src), str(dst))) for k, s, v, w in expected['problems']},
  )
  if 'fixable' in expected:
    expected['fixable'] = dst / expected['fixable'].relative_to(src)
  return dst, expected


# ----------------------------------------------------------------------------------------------------
# reading back through the input pipeline


def config_for(dataset, out, fmt, lists):
  """A training config that reads the prepared data, as `--config.data.*` flags would set it."""
  config = tiny.get_config()
  config.data.name = TABLE[dataset]
  config.data.num_classes = datasets.get_dataset(TABLE[dataset]).num_classes
  config.data.root = str(out)
  config.data.format = fmt
  if fmt != 'frames':
    config.data.train_list, config.data.val_list = lists['train'], lists['val']
  return config


def read_back(config, split):
  """(source, [(name, num_frames, label)]) of a split via input_pipeline.make_source."""
  source = ip.make_source(config, ip.data_paths(config), split, 'val')
  records = []
  for r in source.records:
    name = r.path
    if config.data.format == 'videos':  # `<home>/videos/<name>.mp4`, relative to data.root
      assert name.endswith('.mp4') and '/videos/' in name, name
      name = name.split('/videos/', 1)[1][: -len('.mp4')]
    records.append((name, r.num_frames, r.label))
  return source, records


def problems_of(summary):
  with open(summary['report']) as f:
    report = json.load(f)
  return {(p['kind'], p['split'], p['video'], p['where']) for p in report['problems']}, report


def mtimes(paths):
  return {p: os.stat(p).st_mtime_ns for p in paths}


@pytest.mark.parametrize('fmt', FORMATS)
@pytest.mark.parametrize('dataset', list(MOCKS))
def test_prepare_read_back_and_rerun(mocks, dataset, fmt, tmp_path):
  src, expected = mocks[dataset]
  out = tmp_path / 'out'
  summary = prepare(dataset, src, out, fmt, short_side=SHORT, progress=False)
  # The report lists exactly the broken rows, each with its annotation file and line.
  problems, report = problems_of(summary)
  assert problems == expected['problems']
  counts = {k: sum(p[0] == k for p in expected['problems']) for k in core.ann.PROBLEM_KINDS}
  assert summary['problems'] == counts and report['warnings'] == []
  assert summary['listed'] == {s: len(expected[s]) for s in ('train', 'val')}
  # Everything listed loads through the trainer's config, with the right labels and frame counts.
  config = config_for(dataset, out, fmt, summary['lists'])
  width = 42 if fmt == 'videos' else 43  # 32 * 64 / 48 = 42.67; videos: nearest even (ffmpeg -2)
  for split in ('train', 'val'):
    source, records = read_back(config, split)
    assert records == expected[split]
    clip = source.get(len(source) - 1)
    assert clip['label'] == expected[split][-1][2]
    assert clip['frames'].shape == (config.num_segments, SHORT, width, 3)
    if fmt == 'videos':  # the containers hold the listed frame counts
      from rnl_jax.data.video import VideoReader

      for path, (_, num_frames, _) in zip(
          (source.video_path(i) for i in range(len(source))), records
      ):
        with VideoReader(path) as reader:
          assert reader.num_frames == num_frames
  with open(summary['classes']) as f:
    assert len(f.read().splitlines()) == (
        400 if dataset == 'kinetics400' else 51 if dataset == 'hmdb51' else 3
    )
  # A second run does no work and rewrites no list or shard.
  outputs = [
      str(p)
      for p in out.rglob('*')
      if p.is_file() and '.prepare_state' not in p.name and 'prepare_report' not in p.name
  ]
  before = mtimes(outputs)
  again = prepare(dataset, src, out, fmt, short_side=SHORT, progress=False)
  assert again['processed'] == 0 and again['packed'] == []
  assert again['failed_before'] == counts['undecodable'] + counts['zero_frames']
  if fmt == 'arrayrecord':
    assert again['already_packed'] == ['train', 'val']
  else:
    assert again['reused'] == len({n for s in ('train', 'val') for n, _, _ in expected[s]})
  assert problems_of(again)[0] == expected['problems']
  assert mtimes(outputs) == before


# ----------------------------------------------------------------------------------------------------
# the original's layout, sizes and names


def test_frames_are_the_original_tools_layout(mocks, tmp_path):
  """Default sizes and names as the original's tools: Kinetics frames 331 px high (ffmpeg scale=-1:331),
  `<class>/<video>/img_%05d.jpg`, the CSV list the original reads plus the TSM tool's space-separated
  list; Something-V1 frames as released (hard links of the same files)."""
  src, expected = mocks['kinetics400']
  out = tmp_path / 'k'
  prepare('kinetics400', src, out, 'frames', progress=False)
  root = out / 'kinetics'
  tsm = (root / 'train_videofolder.txt').read_text().splitlines()
  assert tsm == [
      f'{n} {f} {label}' for n, f, label in expected['train']
  ]  # `folder num_frames label`
  assert (root / 'shuffled_train_videofolder.csv').read_text().splitlines() == [
      f'{n},{f},{label}' for n, f, label in expected['train']
  ]  # what the original parses
  for name in ('train_videofolder.txt', 'shuffled_train_videofolder.csv'):
    assert [
        (r.path, r.num_frames, r.label) for r in datasets.parse_list_file(root / name, 400)
    ] == expected['train']
  folder = root / 'images' / 'hurling_sport' / 'bbbbbbbbbbb_000001_000011'
  assert sorted(os.listdir(folder)) == [f'img_{k:05d}.jpg' for k in range(1, 10)]
  with Image.open(folder / 'img_00001.jpg') as img:
    assert img.size == (441, 331)  # round(331 * 64 / 48)
  assert (root / 'classes.txt').read_text().splitlines() == [kinetics.normalise(n) for n in K400]
  assert (
      kinetics.normalise('passing American football (in game)')
      == 'passing_American_football_in_game'
  )
  assert kinetics.normalise("massaging person's head") == 'massaging_persons_head'
  # No folder of a video that failed (not even an empty class folder).
  assert sorted(os.listdir(root / 'images')) == sorted(
      {n.split('/')[0] for s in ('train', 'val') for n, _, _ in expected[s]}
  )

  src, expected = mocks['something_v1']
  out = tmp_path / 's1'
  prepare('something_v1', src, out, 'frames', progress=False)
  frames = out / 'something' / 'v1' / 'img'
  assert (out / 'something/v1/val_videofolder.txt').read_text() == '2 9 0\n3 10 1\n'
  assert sorted(os.listdir(frames / '3')) == [f'{k:05d}.jpg' for k in range(1, 11)]
  assert os.path.samefile(
      frames / '3' / '00007.jpg', src / '20bn-something-something-v1/3/00007.jpg'
  )
  assert (
      out / 'something/v1/category.txt'
  ).read_text() == 'Holding something\nMoving something up\nPushing something\n'  # sorted, as gen_label_sthv1


def test_size_rules():
  """ffmpeg's scale=-1:N (height forced, width rounded half away from zero) and -2 (even), short side."""
  Size = media.Size
  assert Size('height', 331).target(340, 256) == (440, 331)  # 439.65
  assert Size('height', 256).target(320, 240) == (341, 256)  # 341.33
  assert Size('height', 3).target(5, 2) == (8, 3)  # 7.5: half away from zero
  assert Size('height', 256).target(240, 320) == (192, 256)  # height even if portrait
  assert Size('short', 256).target(240, 320) == (256, 341)
  assert Size('short', 256).target(640, 272) == (602, 256)
  assert Size('height', 331, even=True).target(340, 256) == (440, 332)
  assert Size('short', 32, even=True).target(64, 48) == (42, 32)
  assert Size('keep').target(65, 47) == (65, 47)
  assert Size('keep', even=True).target(65, 47) == (66, 48)
  with pytest.raises(ValueError, match='size mode'):
    Size('width', 3)


def test_rotation_metadata_is_applied(mocks, monkeypatch):
  """A frame whose display matrix turns it by -90 degrees (ffmpeg: transpose=clock) comes out upright,
  the forced height measured on the displayed picture. (PyAV cannot write such a file: `_rotation`,
  which reads `frame.rotation`, is patched.)"""
  src, _ = mocks['ucf101']
  path = str(src / 'UCF-101/YoYo/v_YoYo_g01_c01.avi')
  plain = list(media.VideoFrames(path, media.Size('keep')))
  monkeypatch.setattr(media, '_rotation', lambda frame: round(-90 / 90) % 4)
  turned = list(media.VideoFrames(path, media.Size('height', 32)))
  assert turned[0].shape == (32, 24, 3)  # displayed 48x64 (portrait) -> 24x32
  small = np.asarray(Image.fromarray(plain[0]).resize((32, 24), Image.BICUBIC), np.float32)
  assert (
      np.abs(np.rot90(small, -1) - turned[0]).mean() < 4
  )  # turned clockwise (swscale vs Pillow bicubic)
  assert np.abs(np.rot90(small, 1) - turned[0]).mean() > 20


def test_output_inside_the_download_is_not_read_as_source(mocks, tmp_path):
  src, expected = writable_copy(mocks, 'kinetics400', tmp_path / 'src')
  out = src / 'prepared'
  prepare('kinetics400', src, out, 'videos', short_side=SHORT, progress=False)
  again = prepare('kinetics400', src, out, 'videos', short_side=SHORT, progress=False)
  assert again['processed'] == 0
  plan = kinetics.read(str(src), exclude=(str(out),))
  assert all(not i.source.startswith(str(out)) for i in plan.items) and len(plan.items) == 6
  assert any(
      i.source.startswith(str(out)) for i in kinetics.read(str(src)).items
  )  # what exclude avoids


# ----------------------------------------------------------------------------------------------------
# resuming, atomicity, failures


def test_resume_redoes_partial_and_changed_sources(mocks, tmp_path):
  src, expected = writable_copy(mocks, 'ucf101', tmp_path / 'src')
  out = tmp_path / 'out'
  first = prepare('ucf101', src, out, 'frames', short_side=SHORT, progress=False)
  assert first['processed'] == 5  # 3 good, 1 corrupt, 1 zero-frame (the missing one is not tried)
  frames = out / 'UCF101' / 'jpg'
  train_list = out / 'UCF101/file_list/ucf101_rgb_train_split_1.txt'
  listed = train_list.read_text()
  # An interrupted run's leftovers: a temporary folder of a dead process, a deleted folder, and an empty
  # folder under a final name (as an older tool leaves behind).
  stale = frames / '.tmp-999999999-v_YoYo_g01_c01'
  stale.mkdir()
  (stale / 'img_00001.jpg').write_bytes(b'partial')
  shutil.rmtree(frames / 'v_ApplyEyeMakeup_g08_c01')
  for f in (frames / 'v_YoYo_g01_c01').iterdir():
    f.unlink()
  second = prepare('ucf101', src, out, 'frames', short_side=SHORT, progress=False)
  assert (second['processed'], second['reused'], second['failed_before']) == (2, 1, 2)
  assert not stale.exists()
  assert len(os.listdir(frames / 'v_YoYo_g01_c01')) == 8
  assert train_list.read_text() == listed
  # A failed source is not decoded again while unchanged; once replaced, it is.
  shutil.copyfile(src / 'UCF-101/YoYo/v_YoYo_g01_c01.avi', expected['fixable'])
  third = prepare('ucf101', src, out, 'frames', short_side=SHORT, progress=False)
  assert (third['processed'], third['failed_before']) == (1, 1)
  assert ('undecodable', 'train', 'YoYo/v_YoYo_g02_c01.avi') not in {
      p[:3] for p in problems_of(third)[0]
  }
  assert train_list.read_text() == listed + 'v_YoYo_g02_c01 8 2\n'
  assert (
      prepare('ucf101', src, out, 'frames', short_side=SHORT, progress=False, retry_failed=True)[
          'processed'
      ]
      == 1
  )  # the zero-frame video, decoded again
  with pytest.raises(PrepareError, match='other settings'):
    prepare('ucf101', src, out, 'frames', short_side=40, progress=False)


def test_interrupted_run_lists_nothing_half_written(mocks, tmp_path, monkeypatch):
  """A crash while writing frames leaves neither a folder under a final name nor a list file."""
  src, _ = mocks['hmdb51']
  out = tmp_path / 'out'
  calls = {'n': 0}
  encode = media.encode_jpeg

  def flaky(rgb, quality=95):
    calls['n'] += 1
    if calls['n'] == 22:  # in the third video (the second, truncated, fails after 8 frames)
      raise OSError('disk full')
    return encode(rgb, quality)

  monkeypatch.setattr(media, 'encode_jpeg', flaky)
  with pytest.raises(OSError, match='disk full'):
    prepare('hmdb51', src, out, 'frames', short_side=SHORT, progress=False)
  frames = out / 'HMDB51' / 'images'
  assert os.listdir(frames) == ['April_09_brush_hair_u_nm_np1_ba_goo_0']  # complete, nothing else
  assert not (out / 'HMDB51' / 'splits').exists()
  monkeypatch.setattr(media, 'encode_jpeg', encode)
  summary = prepare('hmdb51', src, out, 'frames', short_side=SHORT, progress=False)
  # The corrupt video failed before the crash: remembered, not decoded again.
  assert (summary['processed'], summary['reused'], summary['failed_before']) == (2, 1, 1)
  assert (
      out / 'HMDB51/splits/hmdb51_rgb_val_split_1.txt'
  ).read_text() == 'Brushing_hair_h_nm_np1_le_goo_1 9 0\nGoal_kick_ball_f_cm_np1_ba_med_0 8 20\n'


def test_arrayrecord_split_needs_no_frames_once_packed(mocks, tmp_path):
  src, expected = mocks['something_v2']
  out = tmp_path / 'out'
  prepare('something_v2', src, out, 'arrayrecord', short_side=SHORT, progress=False)
  shutil.rmtree(
      out / 'something/v2/20bn-something-something-v2-frames'
  )  # frames deleted after packing
  again = prepare('something_v2', src, out, 'arrayrecord', short_side=SHORT, progress=False)
  assert (again['processed'], again['packed'], again['already_packed']) == (0, [], ['train', 'val'])
  config = config_for('something_v2', out, 'arrayrecord', again['lists'])
  assert read_back(config, 'val')[1] == expected['val']


# ----------------------------------------------------------------------------------------------------
# bad annotations


BAD_ROWS = [
    (
        'something_v1',
        'something-something-v1-train.csv',
        '1;Pushing something\nno semicolon here\n',
        r'something-v1-train.csv:2: expected `id;class`',
    ),
    (
        'ucf101',
        'ucfTrainTestlist/trainlist01.txt',
        'ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 2\n',
        r'trainlist01.txt:1: class index 2 but .*classInd.txt gives .ApplyEyeMakeup. the index 1',
    ),
    (
        'kinetics400',
        'annotations/train.csv',
        'label,youtube_id,time_start,time_end,split\nabseiling,aaaaaaaaaaa,10,20,train\nabseiling,x,1\n',
        r'train.csv:3: 3 fields, the header has 5',
    ),
    (
        'kinetics400',
        'annotations/validate.csv',
        'label,youtube_id,split\n',
        r"validate.csv:1: header .* lacks the column\(s\) \['time_start', 'time_end'\]",
    ),
    (
        'hmdb51',
        'testTrainMulti_7030_splits/kick_test_split1.txt',
        'a.avi 1\nb.avi 7\n',
        r'kick_test_split1.txt:2: expected `<video>.avi <0\|1\|2>`',
    ),
    (
        'something_v2',
        'something-something-v2-labels.json',
        '{"Holding something": "1"}',
        r"labels.json: class 'Holding something' has index '1' but is entry 0",
    ),
]


@pytest.mark.parametrize(
    'dataset,path,text,match', BAD_ROWS, ids=[f'{b[0]}-{i}' for i, b in enumerate(BAD_ROWS)]
)
def test_bad_annotation_rows_name_file_and_line(mocks, tmp_path, dataset, path, text, match):
  src, _ = writable_copy(mocks, dataset, tmp_path / 'src')
  (src / path).write_text(text)
  with pytest.raises(AnnotationError, match=match):
    prepare(dataset, src, tmp_path / 'out', 'frames', short_side=SHORT, progress=False)
  assert not (tmp_path / 'out').exists()  # nothing written before the annotations are read


def test_missing_annotations_and_bad_arguments(tmp_path):
  (tmp_path / 'src').mkdir()
  with pytest.raises(PrepareError, match=r'no Kinetics train annotation CSV found .*train.csv'):
    prepare('kinetics400', tmp_path / 'src', tmp_path / 'out', progress=False)
  with pytest.raises(PrepareError, match='unknown dataset'):
    prepare('kinetics700', tmp_path / 'src', tmp_path / 'out', progress=False)
  with pytest.raises(PrepareError, match='split must be 1, 2 or 3'):
    prepare('ucf101', tmp_path / 'src', tmp_path / 'out', split=4, progress=False)


def test_check_args():
  k400 = ('kinetics400', core.SPECS['kinetics400'])
  assert core._check_args('kinetics', 'tfds', 9, 90, 1, 1, None) == k400  # no numbered splits
  assert core._check_args('ucf101', 'frames', '3', 1, 1, 1, 0)[0] == 'ucf101'
  bad = [
      (('ucf101', 'mp4', 1, 90, 1, 1, None), 'format must be one of'),
      (('hmdb51', 'frames', 0, 90, 1, 1, None), 'split must be 1, 2 or 3 for hmdb51, got 0'),
      (('ucf101', 'frames', 1, 101, 1, 1, None), r'need 1 <= quality <= 100.*got 101, 1, 1'),
      (('ucf101', 'frames', 1, 90, 1, 0, None), r'workers >= 1, got 90, 1, 0'),
      (('ucf101', 'frames', 1, 90, 1, 1, -1), '--short_side must be >= 0, got -1'),
  ]
  for args, match in bad:
    with pytest.raises(PrepareError, match=match):
      core._check_args(*args)


def _item(name, split='train', label=0, source=None):
  return core.ann.Item(split, name, label, source or f'/src/{name}.mp4', f'a.csv:{label + 2}', name)


def test_unique_sources_and_tasks(tmp_path):
  """Output names map to one source each; tasks follow annotation order and skip what is done."""
  items = [_item('b'), _item('a', 'val', 1), _item('c'), _item('b')]  # 'b' listed twice: one source
  plan = core.ann.Plan(['x', 'y'], items, [])
  sources = core._unique_sources(plan)
  assert list(sources) == ['b', 'a', 'c']
  with pytest.raises(
      PrepareError, match=r"two videos would be written as 'a': /src/a.mp4 and /o/a"
  ):
    core._unique_sources(core.ann.Plan([], items + [_item('a', source='/o/a')], []))

  class Layout:
    template = 'img_{:05d}.jpg'
    output = staticmethod(lambda kind, name: str(tmp_path / name))

  (tmp_path / 'c').mkdir()
  (tmp_path / 'c' / 'img_00001.jpg').write_bytes(b'')  # done: reused
  make_task = core._task_maker(plan, Layout, 'frames', media.Size('keep'), 90, 16, 18, 'fast')
  tasks, reused = core._tasks(plan, sources, set(), {}, Layout, 'frames', make_task)
  assert [(t.name, t.source, t.output) for t in tasks] == [
      ('b', '/src/b.mp4', str(tmp_path / 'b')),
      ('a', '/src/a.mp4', str(tmp_path / 'a')),
  ]
  assert reused == 1 and tasks[0].quality == 90 and tasks[0].fps is None
  tasks, reused = core._tasks(
      plan, sources, {'val'}, {'b': ('missing', '')}, Layout, 'frames', make_task
  )
  assert tasks == [] and reused == 1  # 'a': its split is packed, 'b': failed before


def test_output_settings_must_match_existing_outputs(tmp_path):
  class Layout:
    frame_root, videos_dir, state = str(tmp_path / 'frames'), str(tmp_path / 'videos'), 'STATE'
    output = staticmethod(lambda kind, name: os.path.join(tmp_path, kind, name))

  state = core.State(str(tmp_path / 'state.json'))
  frames = core._output_settings('frames', media.Size('short', 32), 90, 16, 18, 'fast')
  assert frames == {'size': media.Size('short', 32).as_dict(), 'quality': 90}
  assert core._output_settings('videos', media.Size('keep'), 90, 16, 18, 'fast')['crf'] == 18
  core._check_output_settings(state, Layout, 'frames', frames, {'a': '/src/a'})
  other = dict(frames, quality=80)
  core._check_output_settings(state, Layout, 'frames', other, {'a': '/src/a'})  # no outputs yet
  assert state.data['settings']['frames'] == other
  os.makedirs(tmp_path / 'frames' / 'a')
  with pytest.raises(
      PrepareError, match=r'frames holds frames prepared with other settings.*STATE'
  ):
    core._check_output_settings(state, Layout, 'frames', frames, {'a': '/src/a'})


def test_item_warnings():
  item = _item('a')
  assert core._item_warnings(item, 3, None) == []
  partial, short = core._item_warnings(item, 2, 'stopped at frame 2')
  assert partial == {
      'kind': 'partial_decode',
      'split': 'train',
      'video': 'a',
      'where': 'a.csv:2',
      'detail': 'stopped at frame 2',
  }
  assert short['kind'] == 'short'
  assert short['detail'].startswith('2 frames: listed, but the loaders')


# ----------------------------------------------------------------------------------------------------
# the command line, with worker processes


def test_cli_with_workers(mocks, tmp_path):
  src, expected = mocks['ucf101']
  out = tmp_path / 'out'
  cmd = [
      sys.executable,
      '-m',
      'rnl_jax.data.prepare',
      'ucf101',
      '--source',
      str(src),
      '--out',
      str(out),
      '--format',
      'videos',
      '--short-side',
      str(SHORT),
      '--workers',
      '2',
  ]
  run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
  assert run.returncode == 0, run.stderr
  summary = json.loads(run.stdout.splitlines()[-1])
  assert summary['processed'] == 5 and summary['listed'] == {'train': 2, 'val': 1}
  assert 'not listed: missing 1, undecodable 1, zero_frames 1, unknown_class 1' in run.stderr
  assert '--config.data.format=videos' in run.stderr
  assert (
      out / 'UCF101/file_list/ucf101_videos_val_split_1.txt'
  ).read_text() == 'UCF101/videos/v_YoYo_g01_c01.mp4 8 2\n'
  bad = subprocess.run(
      cmd[:4] + ['--source', str(tmp_path / 'nowhere'), '--out', str(out)],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=120,
      check=False,
  )
  assert bad.returncode == 2 and 'is not a folder' in bad.stderr
