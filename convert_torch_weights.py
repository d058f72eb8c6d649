"""Converts an original RNL/TSM `.pth.tar` (or a torchvision ImageNet ResNet) into an rnl_jax checkpoint.

  python convert_torch_weights.py SRC.pth.tar DST_DIR             # released RNL / TSM checkpoint
  python convert_torch_weights.py resnet50.pth DST_DIR --imagenet  # backbone for training from ImageNet

The architecture (depth, classes, shift, non-local) is read from the tensor names and written to
DST_DIR/model.json; `rnl_jax.load_checkpoint(DST_DIR)` rebuilds the model. Needs the `[convert]` extra.
`convert_to_directory` is the same conversion from Python (rnl_jax.convert converts,
rnl_jax.checkpoint saves; this entry point joins them, so neither imports the other).
SRC and DST_DIR may be URLs (`gs://bucket/...`, rnl_jax.fileio).
"""

import json
import sys
from typing import Optional

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np

from rnl_jax import checkpoint
from rnl_jax import cli
from rnl_jax import convert
from rnl_jax import fileio

_IMAGENET = flags.DEFINE_bool(
    'imagenet',
    False,
    'SRC is a torchvision ResNet ImageNet state_dict: '
    'write a backbone-only checkpoint (head, shift and RNL are left to '
    'fresh initialisation).',
)
_SHIFT_DIV = flags.DEFINE_integer(
    'shift_div',
    None,
    'Shift fraction 1/shift_div (not stored in the '
    'weights); default: read from the file name (_shift8_), else 8.',
)
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Replace a non-empty DST_DIR.')
_DEBUG = flags.DEFINE_bool('debug', False, 'Show the traceback of an error (also: RNL_DEBUG=1).')


def convert_to_directory(
    src: str,
    dst: str,
    *,
    imagenet: bool = False,
    shift_div: Optional[int] = None,
    overwrite: bool = False,
) -> dict:
  """Converts `src` and saves an rnl_jax checkpoint in `dst`; returns a summary dict."""
  sd, meta = convert.load_torch_state_dict(src)
  kind = convert.infer_kind(sd, src)
  if imagenet != (kind == 'imagenet'):
    raise convert.ConversionError(
        f'{src}: a {"torchvision ImageNet ResNet" if kind == "imagenet" else "TSN checkpoint"}; '
        f'{"add" if kind == "imagenet" else "drop"} --imagenet'
    )
  if imagenet:
    variables, depth = convert.convert_imagenet_state_dict(sd, src)
    checkpoint.save_checkpoint(
        dst,
        variables,
        kind='imagenet_backbone',
        depth=depth,
        source=fileio.absolute(src),
        overwrite=overwrite,
    )
    summary = {'kind': 'imagenet_backbone', 'depth': depth}
  else:
    variables, arch = convert.convert_tsn(sd, src, shift_div)
    inputs, classes = convert.inputs_from_filename(src)
    if classes is not None and len(classes) != arch.num_classes:
      classes = None
    checkpoint.save_checkpoint(
        dst,
        variables,
        architecture=arch,
        source=fileio.absolute(src),
        inputs=inputs,
        classes=classes,
        overwrite=overwrite,
    )
    summary = {
        'kind': 'tsn',
        'architecture': arch.to_dict(),
        'epoch': meta.get('epoch'),
        'best_acc1': meta.get('best_acc1'),
    }
  summary['parameters'] = int(sum(np.size(x) for x in jax.tree.leaves(variables['params'])))
  summary['destination'] = fileio.absolute(dst)
  return summary


def main(argv):
  if len(argv) != 3:  # one line, as every mistake (absl's UsageError prints the whole help)
    print(
        f'error: expected SRC and DST_DIR, got {argv[1:]} (usage: convert_torch_weights.py SRC '
        'DST_DIR [--imagenet] [--shift_div N])',
        file=sys.stderr,
    )
    raise SystemExit(2)
  logging.set_verbosity(logging.WARNING)  # orbax logs every save step at INFO
  # ConversionError, CheckpointError, a missing SRC: `error: ...` and exit status 2
  with cli.user_errors(_DEBUG.value):
    summary = convert_to_directory(
        argv[1],
        argv[2],
        imagenet=_IMAGENET.value,
        shift_div=_SHIFT_DIV.value,
        overwrite=_OVERWRITE.value,
    )
  print(json.dumps(summary, indent=1))


if __name__ == '__main__':
  # `--shift-div` is accepted for `--shift_div`; a flag mistake is one line (rnl_jax.cli)
  app.run(main, flags_parser=cli.absl_flags_parser())
