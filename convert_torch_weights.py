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

from rnl_jax import cli
from rnl_jax import convert

_IMAGENET = flags.DEFINE_bool('imagenet', False, 'SRC is a torchvision ResNet ImageNet state_dict: '
                              'write a backbone-only checkpoint (head, shift and RNL are left to '
                              'fresh initialisation).')
_SHIFT_DIV = flags.DEFINE_integer('shift_div', None, 'Shift fraction 1/shift_div (not stored in the '
                                  'weights); default: read from the file name (_shift8_), else 8.')
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Replace a non-empty DST_DIR.')
_DEBUG = flags.DEFINE_bool('debug', False, 'Show the traceback of an error (also: RNL_DEBUG=1).')


def main(argv):
  if len(argv) != 3:   # one line, as every mistake (absl's UsageError prints the whole help)
    print(f'error: expected SRC and DST_DIR, got {argv[1:]} (usage: convert_torch_weights.py SRC '
          'DST_DIR [--imagenet] [--shift_div N])', file=sys.stderr)
    raise SystemExit(2)
  logging.set_verbosity(logging.WARNING)  # orbax logs every save step at INFO
  # ConversionError, CheckpointError, a missing SRC: `error: ...` and exit status 2
  with cli.user_errors(_DEBUG.value or cli.debug_requested([])):
    summary = convert.convert_to_directory(argv[1], argv[2], imagenet=_IMAGENET.value,
                                           shift_div=_SHIFT_DIV.value, overwrite=_OVERWRITE.value)
  print(json.dumps(summary, indent=1))


if __name__ == '__main__':
  # `--shift-div` is accepted for `--shift_div`; a flag mistake is one line (rnl_jax.cli)
  app.run(main, flags_parser=cli.absl_flags_parser())
