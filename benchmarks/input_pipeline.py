"""Input pipeline throughput per core: clips/s of decode + sampling + augmentation in one process.

  python -m benchmarks.input_pipeline [--videos 16] [--frames 96] [--clips 200] [--only a,b] [--data DIR]

Generates its own data (textured 340x256 frames with moving shapes and sensor noise, JPEG quality 90,
as frame folders, mp4 with a keyframe every 250 and every 30 frames, ArrayRecord shards and a TFDS
dataset), then
times each method on one core (OpenCV limited to one thread, single process) for 8-frame TSN clips
with 224 px output:

  baseline_train   the original loader's method: PIL decode, PIL GroupMultiScaleCrop + bilinear resize
                   + flip, ToTorchFormatTensor + GroupNormalize to float32 [T, 3, 224, 224]
  baseline_val     same for validation: PIL decode, PIL resize 256 + centre crop, float32 normalise
  frames_train     FrameFolderSource + train_views (uint8 out; normalisation happens on the device);
                   JPEG decoded by simplejpeg with Pillow's exact pixels
  frames_train_fast the same with decoder='simplejpeg_fast' (fast IDCT/upsampling: approximate pixels)
  frames_val       FrameFolderSource + centre-crop view (pixel-identical to baseline_val before normalising)
  frames_test3     FrameFolderSource test mode, 3 full-res 256 crops (views counted as clips)
  mp4_k250_train   VideoFileSource (keyframe every 250) + train_views
  mp4_k30_train    VideoFileSource (keyframe every 30) + train_views
  arrayrecord_train ArrayRecordSource (one record per frame, the frame folders' JPEG bytes) + train_views
  tfds_train       TfdsSource (TFDS dataset of tfds_write: one record per video, the frame folders'
                   JPEG bytes; a clip reads the whole video, decodes 8 frames) + train_views

Prints clips/s per core (clips / process CPU seconds) and wall clips/s. Figures depend on the JPEG
content: noisy frames decode slower than smooth synthetic ones, so these data are on the slow side.
"""

import argparse
import os
import tempfile
import time

import cv2
import numpy as np
from PIL import Image

from rnl_jax.data import sampling, sources, transforms

WIDTH, HEIGHT, T = 340, 256, 8
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
TEMPLATE = 'img_{:05d}.jpg'
TFDS_NAME = 'rnl_bench'


# ----------------------------------------------------------------------------------------------------
# data


def textured_video(rng, num_frames):
  """uint8 [F, 256, 340, 3]: smooth random background, a moving disc, per-frame sensor noise."""
  low = rng.random((HEIGHT // 16, WIDTH // 16, 3)).astype(np.float32)
  background = cv2.resize(low, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC) * 180 + 30
  background += rng.normal(0, 12, background.shape).astype(np.float32)  # fixed texture
  ys, xs = np.mgrid[:HEIGHT, :WIDTH]
  colour = rng.uniform(0, 255, 3).astype(np.float32)
  frames = np.empty((num_frames, HEIGHT, WIDTH, 3), np.uint8)
  for t in range(num_frames):
    cx, cy = 40 + (WIDTH - 80) * t / max(1, num_frames - 1), HEIGHT / 2 + 40 * np.sin(t / 7)
    disc = ((xs - cx) ** 2 + (ys - cy) ** 2 < 35**2)[..., None]
    frame = np.where(disc, colour, background) + rng.normal(0, 4, background.shape)  # sensor noise
    frames[t] = np.clip(frame, 0, 255)
  return frames


def _packed(index_file, num_videos):
  """Whether `index_file` is a readable ArrayRecord index (current format) of `num_videos` videos."""
  from rnl_jax.data import arrayrecord  # pylint: disable=import-outside-toplevel

  try:
    return arrayrecord.read_index(index_file)['num_videos'] == num_videos
  except (OSError, ValueError):  # absent, or an older format: (re)pack
    return False


def _tfds_written(data_dir, num_videos):
  """Whether `data_dir` holds the benchmark's TFDS dataset of `num_videos` videos."""
  import json  # pylint: disable=import-outside-toplevel

  try:
    with open(os.path.join(data_dir, TFDS_NAME, '1.0.0', 'metadata.json')) as f:
      return len(json.load(f)['rnl_jax']['splits']['train']['path']) == num_videos
  except (OSError, ValueError, KeyError):
    return False


def make_data(root, num_videos, num_frames, kinds):
  """Frame folders (always), mp4s, ArrayRecord shards and a TFDS dataset (when asked) under `root`;
  list records."""
  rng = np.random.default_rng(0)
  records = []
  for v in range(num_videos):
    name = f'video_{v:03d}'
    folder = os.path.join(root, 'frames', name)
    video = None
    if not os.path.isdir(folder):
      video = textured_video(rng, num_frames)
      os.makedirs(folder)
      for t, frame in enumerate(video, 1):
        Image.fromarray(frame).save(os.path.join(folder, TEMPLATE.format(t)), quality=90)
    for interval in (250, 30):
      path = os.path.join(root, f'mp4_k{interval}', name + '.mp4')
      if f'mp4_k{interval}' in kinds and not os.path.exists(path):
        from rnl_jax.data import video as video_lib  # pylint: disable=import-outside-toplevel

        os.makedirs(os.path.dirname(path), exist_ok=True)
        if video is None:
          video = np.stack(
              [
                  np.asarray(Image.open(os.path.join(folder, TEMPLATE.format(t))))
                  for t in range(1, num_frames + 1)
              ]
          )
        video_lib.write_video(path, video, keyframe_interval=interval)
    records.append((name, num_frames, v % 10))
  with open(os.path.join(root, 'list.txt'), 'w') as f:
    f.writelines(f'{n} {c} {label}\n' for n, c, label in records)
  if 'arrayrecord' in kinds and not _packed(os.path.join(root, 'ar', 'bench.json'), len(records)):
    from rnl_jax.data import pack  # pylint: disable=import-outside-toplevel

    pack.pack(
        os.path.join(root, 'list.txt'),
        os.path.join(root, 'frames'),
        os.path.join(root, 'ar', 'bench'),
        template=TEMPLATE,
        verify='header',
        overwrite=True,
        progress=False,
    )
  if 'tfds' in kinds and not _tfds_written(os.path.join(root, 'tfds'), len(records)):
    from rnl_jax.data import tfds_write  # pylint: disable=import-outside-toplevel

    tfds_write.write(
        TFDS_NAME,
        os.path.join(root, 'tfds'),
        root=os.path.join(root, 'frames'),
        train_list=os.path.join(root, 'list.txt'),
        template=TEMPLATE,
        verify='header',
        overwrite=True,
        progress=False,
    )
  return records


# ----------------------------------------------------------------------------------------------------
# the original loader's method (docs/original.md §4.1, 4.2, 4.4)


def _pil_frames(root, record, indices):
  return [
      Image.open(os.path.join(root, 'frames', record[0], TEMPLATE.format(int(i)))).convert('RGB')
      for i in indices
  ]


def _normalise(images):
  """ToTorchFormatTensor + GroupNormalize: float32 [T, 3, H, W]."""
  x = np.stack([np.asarray(im, np.float32) for im in images]) / 255.0
  return np.ascontiguousarray(((x - MEAN) / STD).transpose(0, 3, 1, 2))


def baseline_train(root, records, rng):
  record = records[rng.integers(len(records))]
  indices = sampling.tsn_train(record[1], T, rng)
  images = _pil_frames(root, record, indices)
  x, y, cw, ch = transforms.multiscale_crop_params(WIDTH, HEIGHT, rng)
  images = [im.crop((x, y, x + cw, y + ch)).resize((224, 224), Image.BILINEAR) for im in images]
  if rng.random() < 0.5:
    images = [im.transpose(Image.FLIP_LEFT_RIGHT) for im in images]
  return _normalise(images)


def baseline_val(root, records, rng):
  record = records[rng.integers(len(records))]
  images = _pil_frames(root, record, sampling.tsn_val(record[1], T))
  w, h = transforms.scaled_size(WIDTH, HEIGHT)
  images = [im.resize((w, h), Image.BILINEAR) for im in images]
  x, y = transforms.center_crop_offset(w, h, 224, 224)
  return _normalise([im.crop((x, y, x + 224, y + 224)) for im in images])


# ----------------------------------------------------------------------------------------------------
# ours


def _train(source):
  def run(root, records, rng):
    del root
    ex = source.get(int(rng.integers(len(records))), rng)
    return transforms.train_views(ex['frames'], rng)

  return run


def _views(source, num_crops, full_res):
  def run(root, records, rng):
    del root
    ex = source.get(int(rng.integers(len(records))))
    return transforms.test_views(ex['frames'], num_crops, full_res)

  return run, num_crops * source.clips_per_video


def methods(root, records, names):
  """name -> (fn(root, records, rng), clips per call)."""
  frames = os.path.join(root, 'frames')
  out = {'baseline_train': (baseline_train, 1), 'baseline_val': (baseline_val, 1)}
  if 'frames_train' in names:
    out['frames_train'] = (
        _train(sources.FrameFolderSource(frames, records, TEMPLATE, mode='train', num_segments=T)),
        1,
    )
  if 'frames_train_fast' in names:
    out['frames_train_fast'] = (
        _train(
            sources.FrameFolderSource(
                frames, records, TEMPLATE, mode='train', num_segments=T, decoder='simplejpeg_fast'
            )
        ),
        1,
    )
  if 'frames_val' in names:
    out['frames_val'] = _views(
        sources.FrameFolderSource(frames, records, TEMPLATE, mode='val', num_segments=T), 1, False
    )
  if 'frames_test3' in names:
    out['frames_test3'] = _views(
        sources.FrameFolderSource(frames, records, TEMPLATE, mode='test', num_segments=T), 3, True
    )
  for interval in (250, 30):
    name = f'mp4_k{interval}_train'
    if name in names:
      from rnl_jax.data import datasets, video  # pylint: disable=import-outside-toplevel

      recs = [datasets.VideoFileRecord(f'{n}.mp4', label) for n, _, label in records]
      out[name] = (
          _train(
              video.VideoFileSource(
                  os.path.join(root, f'mp4_k{interval}'), recs, mode='train', num_segments=T
              )
          ),
          1,
      )
  if 'arrayrecord_train' in names:
    from rnl_jax.data import arrayrecord  # pylint: disable=import-outside-toplevel

    out['arrayrecord_train'] = (
        _train(
            arrayrecord.ArrayRecordSource(
                os.path.join(root, 'ar', 'bench.json'), mode='train', num_segments=T
            )
        ),
        1,
    )
  if 'tfds_train' in names:
    from rnl_jax.data import tfds_source  # pylint: disable=import-outside-toplevel

    out['tfds_train'] = (
        _train(
            tfds_source.TfdsSource(
                TFDS_NAME, 'train', os.path.join(root, 'tfds'), mode='train', num_segments=T
            )
        ),
        1,
    )
  return {k: v for k, v in out.items() if k in names}


ALL = (
    'baseline_train',
    'baseline_val',
    'frames_train',
    'frames_train_fast',
    'frames_val',
    'frames_test3',
    'mp4_k250_train',
    'mp4_k30_train',
    'arrayrecord_train',
    'tfds_train',
)


def time_method(fn, root, records, num_calls, seed=0):
  """(cpu seconds, wall seconds) of num_calls calls after 3 warm-up calls."""
  rng = np.random.default_rng(seed)
  for _ in range(3):
    fn(root, records, rng)
  cpu, wall = time.process_time(), time.perf_counter()
  for _ in range(num_calls):
    fn(root, records, rng)
  return time.process_time() - cpu, time.perf_counter() - wall


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--videos', type=int, default=16)
  parser.add_argument('--frames', type=int, default=96)
  parser.add_argument('--clips', type=int, default=200, help='calls timed per method')
  parser.add_argument('--only', default=','.join(ALL))
  parser.add_argument('--data', default=None, help='data folder (kept; default: a temporary one)')
  args = parser.parse_args()
  cv2.setNumThreads(1)
  names = [n for n in args.only.split(',') if n]
  unknown = set(names) - set(ALL)
  if unknown:
    parser.error(f'unknown methods {sorted(unknown)}; known: {", ".join(ALL)}')
  kinds = {
      'mp4_k250' if 'mp4_k250_train' in names else '',
      'mp4_k30' if 'mp4_k30_train' in names else '',
      'arrayrecord' if 'arrayrecord_train' in names else '',
      'tfds' if 'tfds_train' in names else '',
  }
  with tempfile.TemporaryDirectory() as tmp:
    root = args.data or tmp
    os.makedirs(root, exist_ok=True)
    t0 = time.perf_counter()
    records = make_data(root, args.videos, args.frames, kinds)
    print(
        f'data: {args.videos} videos x {args.frames} frames of {WIDTH}x{HEIGHT} in {root} '
        f'({time.perf_counter() - t0:.0f} s)'
    )
    table = methods(root, records, names)
    base = None
    print(f'{"method":20s} {"clips/s/core":>12s} {"wall clips/s":>12s} {"x baseline_train":>16s}')
    for name in names:
      fn, clips = table[name]
      cpu, wall = time_method(fn, root, records, args.clips)
      per_core = args.clips * clips / cpu
      base = per_core if name == 'baseline_train' else base
      ratio = f'{per_core / base:.2f}' if base else '-'
      print(
          f'{name:20s} {per_core:12.1f} {args.clips * clips / wall:12.1f} {ratio:>16s}', flush=True
      )


if __name__ == '__main__':
  main()
