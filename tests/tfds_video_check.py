"""Reading a catalog-style TFDS video dataset (frames as `tfds.features.Video`), where TensorFlow is
installed: `pip install -e '.[tfds-tf]'`, then

    python tests/tfds_video_check.py [DATA_DIR]

builds a 6-video `tfds.features.Video` dataset (PNG frames, array_record) with TFDS and reads it
back through `rnl_jax.data.tfds_source.TfdsSource`: every sampled frame must equal the generated
pixels bit for bit and every label must match. Not part of the pytest suite: the suite's
environment has no TensorFlow (tests/test_tfds.py checks the one-line error there instead).
"""

import os
import sys
import tempfile

import numpy as np
import tensorflow_datasets as tfds

from rnl_jax.data import tfds_source

NAMES = ['a', 'b', 'c']
FIRST = 10  # video k has FIRST + k frames, so a record's frame count names its video


def clip(k):
  """uint8 [FIRST + k, 32, 40, 3] of video k."""
  return np.random.default_rng(k).integers(0, 256, (FIRST + k, 32, 40, 3), dtype=np.uint8)


class RnlVideoCheck(tfds.core.GeneratorBasedBuilder):
  """6 videos as `tfds.features.Video` (the catalog's way, which needs TensorFlow to read)."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    features = {
        'video': tfds.features.Video(shape=(None, 32, 40, 3)),
        'label': tfds.features.ClassLabel(names=NAMES),
    }
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples()}

  def _generate_examples(self):
    for k in range(6):
      yield k, {'video': clip(k), 'label': k % len(NAMES)}


def main(data_dir):
  RnlVideoCheck(data_dir=data_dir, file_format='array_record').download_and_prepare()
  source = tfds_source.TfdsSource('rnl_video_check', 'train', data_dir, mode='val', num_segments=4)
  for i, record in enumerate(source.records):
    k = record.num_frames - FIRST
    numbers = np.asarray(source.sample(i, record.num_frames)).reshape(-1)  # 1-based
    assert np.array_equal(source.get(i)['frames'], clip(k)[numbers - 1]), record
    assert source.label(i) == k % len(NAMES), record
  print(f'ok: {len(source)} Video records read through TfdsSource, frames and labels exact')


if __name__ == '__main__':
  main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(tempfile.mkdtemp(), 'tfds'))
