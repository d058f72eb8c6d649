"""Converts an original RNL/TSM `.pth.tar` (or a torchvision ImageNet ResNet) into an rnl_jax checkpoint.

  python convert_torch_weights.py SRC.pth.tar DST_DIR             # released RNL / TSM checkpoint
  python convert_torch_weights.py resnet50.pth DST_DIR --imagenet  # backbone for training from ImageNet

The architecture (depth, classes, shift, non-local) is read from the tensor names and written to
DST_DIR/model.json; `rnl_jax.load_checkpoint(DST_DIR)` rebuilds the model. Needs the `[convert]` extra.
"""
import json
import sys

from absl import app
from absl import flags
from absl import logging

from rnl_jax import checkpoint
from rnl_jax import convert

_IMAGENET = flags.DEFINE_bool('imagenet', False, 'SRC is a torchvision ResNet ImageNet state_dict: '
                              'write a backbone-only checkpoint (head, shift and RNL are left to '
                              'fresh initialisation).')
_SHIFT_DIV = flags.DEFINE_integer('shift_div', None, 'Shift fraction 1/shift_div (not stored in the '
                                  'weights); default: read from the file name (_shift8_), else 8.')
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Replace a non-empty DST_DIR.')


def main(argv):
  if len(argv) != 3:
    raise app.UsageError('usage: convert_torch_weights.py SRC DST_DIR [--imagenet] [--shift_div N]')
  logging.set_verbosity(logging.WARNING)  # orbax logs every save step at INFO
  try:
    summary = convert.convert_to_directory(argv[1], argv[2], imagenet=_IMAGENET.value,
                                           shift_div=_SHIFT_DIV.value, overwrite=_OVERWRITE.value)
  except (convert.ConversionError, checkpoint.CheckpointError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  print(json.dumps(summary, indent=1))


if __name__ == '__main__':
  app.run(main)
