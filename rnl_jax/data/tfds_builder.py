"""The TFDS builder of frame-folder datasets: TFDS datasets any JAX tool reads, written without TF.

`python -m rnl_jax.data.tfds_write` (and `prepare --format tfds`) build one through
`builder_class(name, plan)`: a subclass of `FrameFolders` named `name`, living in this module (TFDS
requires a builder's module to be inside a package). Reading never needs this module: the dataset
folder holds everything (`dataset_info.json`, `features.json`, `metadata.json`, the ArrayRecord
shards), so plain

    tfds.data_source(NAME, split='train', data_dir=DATA_DIR)   # an ArrayRecordDataSource for grain

works without rnl_jax and without TensorFlow (tensorflow-datasets >= 4.9.10, importlib_resources).

Features of one example (one video, its list line):

    frames      Sequence(Image(encoding_format='jpeg')): frames 1..F of the folder, the JPEG bytes
                as they are on disk (never re-encoded; TFDS decodes them to F uint8 [H, W, 3]
                unless a decoder skips that, as `tfds_source.TfdsSource` does to decode only the
                sampled frames)
    label       ClassLabel with the class names (int64 label)
    path        Text: the list's folder (the video id)
    num_frames  int32 F (the list's frame count)

Examples keep the list order (`disable_shuffling`; keys increase with the list line, spread over
TFDS's key range so its writer sorts them in 1000 buckets instead of one: it holds one bucket in
memory). `metadata.json` (`builder.info.metadata['rnl_jax']`) holds the per-split index, so a
reader lists the videos without reading a record:

    format: 'rnl_jax.tfds', format_version: 1, classes: [names]
    splits: {split: {'path': [...], 'label': [...], 'num_frames': [...]}}   record i = entry i
    skipped: {split: [{'path', 'error'}, ...]}   list entries left out (--skip_corrupt)
    source: {'lists': {split: list file}, 'root', 'template', 'verify'}
"""

import dataclasses
import os
import types
from typing import Optional

import numpy as np
import tensorflow_datasets as tfds

FORMAT_NAME = 'rnl_jax.tfds'
FORMAT_VERSION = 1
VERSION = '1.0.0'
METADATA_KEY = 'rnl_jax'
KEY_RANGE = 1 << 128  # TFDS's hashed-key range: with disable_shuffling, keys are used as they are


@dataclasses.dataclass
class Plan:
  """What to write: per split (TFDS name -> list of `datasets.VideoRecord`), where the frames are,
  and how to read them (see `tfds_write.write`). `read_all(records, on_skip, split)` yields, in
  order, (index, record, JPEG bytes of frames 1..F) of the readable records
  (`tfds_write.frame_reader` bound to the run's root, template, verify, workers, skip_corrupt)."""

  splits: dict
  classes: list
  source: dict
  read_all: object = None
  description: Optional[str] = None


def features(classes):
  """The FeaturesDict of one video (module docstring)."""
  return tfds.features.FeaturesDict(
      {
          'frames': tfds.features.Sequence(tfds.features.Image(encoding_format='jpeg')),
          'label': tfds.features.ClassLabel(names=list(classes)),
          'path': tfds.features.Text(),
          'num_frames': tfds.features.Scalar(dtype=np.int32),
      }
  )


def example_key(index, count):
  """Increasing integer key of list entry `index` of `count`, spread over [0, KEY_RANGE)."""
  return (int(index) * KEY_RANGE) // max(1, int(count))


class FrameFolders(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of the per-dataset builders (`builder_class`); `plan` is set on the subclass."""

  VERSION = tfds.core.Version(VERSION)
  RELEASE_NOTES = {str(VERSION): 'Frame folders written by python -m rnl_jax.data.tfds_write.'}
  plan: Plan = None

  def _info(self):
    p = self.plan
    index = {
        'format': FORMAT_NAME,
        'format_version': FORMAT_VERSION,
        'classes': list(p.classes),
        'splits': {s: {'path': [], 'label': [], 'num_frames': []} for s in p.splits},
        'skipped': {s: [] for s in p.splits},
        'source': dict(p.source),
    }
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            p.description or 'Video frame folders (one example per video), written by rnl_jax.'
        ),
        features=features(p.classes),
        supervised_keys=('frames', 'label'),
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict({METADATA_KEY: index}),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(split) for split in self.plan.splits}

  def _generate_examples(self, split):
    """(key, example) of every readable list entry, in list order; fills the metadata index."""
    records = self.plan.splits[split]
    index = self.info.metadata[METADATA_KEY]
    columns, skipped = index['splits'][split], index['skipped'][split]

    def on_skip(record, message):
      skipped.append({'path': record.path, 'error': message})

    for i, record, frames in self.plan.read_all(records, on_skip, split):
      columns['path'].append(record.path)
      columns['label'].append(int(record.label))
      columns['num_frames'].append(len(frames))
      yield example_key(i, len(records)), {
          'frames': frames,
          'label': int(record.label),
          'path': record.path,
          'num_frames': len(frames),
      }


def builder_class(name, plan):
  """A `FrameFolders` subclass whose TFDS name is `name` (not registered: names never collide)."""
  camel = ''.join(part.capitalize() for part in name.split('_')) or 'FrameFolders'

  def body(ns):
    ns.update(name=name, plan=plan, __module__=__name__)

  return types.new_class(camel, (FrameFolders,), {'skip_registration': True}, body)


def dataset_dir(data_dir, name):
  """Folder of the written dataset: DATA_DIR/NAME/VERSION."""
  return os.path.join(os.fspath(data_dir), name, VERSION)
