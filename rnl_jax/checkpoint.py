"""Model checkpoints: orbax-saved variables plus `model.json`, which says how to rebuild the model.

Layout of a checkpoint directory:
  model.json   {"format": 1, "kind": "tsn" | "imagenet_backbone", "architecture": {...}, "source": ...,
                "inputs": {num_segments, image_size, scale_size, dense_sample} (optional: how the
                model was trained / is meant to be fed), "classes": [name of label i, ...] (optional)}
  variables/   orbax StandardCheckpointer tree {'params': ..., 'batch_stats': ...}
"""

import json
import os
from typing import Any, Optional, Sequence, Tuple

import jax
import orbax.checkpoint as ocp

from rnl_jax import fileio
from rnl_jax.errors import UserError
from rnl_jax.models.resnet import ResNet
from rnl_jax.models.tsn import TSN, Architecture, abstract_variables, build_model

MODEL_FILE = 'model.json'
VARIABLES_DIR = 'variables'
FORMAT = 1
TORCH_SUFFIXES = ('.pth.tar', '.pth', '.pt', '.tar')
INPUT_KEYS = ('num_segments', 'image_size', 'scale_size', 'dense_sample')


class CheckpointError(UserError, ValueError):
  """A checkpoint directory that cannot be read; the message names the path."""


def check_location(directory: str):
  """CheckpointError unless orbax can write and read checkpoints at `directory`: a local path or
  `gs://` (tensorstore's GCS driver). orbax-checkpoint 0.12 builds its tensorstore spec for `gs://`
  only and folds other URLs (`s3://`) into an invalid local path."""
  directory = os.fspath(directory)
  if fileio.is_remote(directory) and not directory.startswith('gs://'):
    raise CheckpointError(
        f'{directory}: orbax checkpoints go to local paths or gs:// only (orbax-checkpoint '
        'cannot write other URLs); mount the bucket (e.g. mountpoint-s3) and give the mount path, '
        'or use gs://'
    )


def save_checkpoint(
    directory: str,
    variables,
    *,
    architecture: Optional[Architecture] = None,
    kind: str = 'tsn',
    depth: Optional[int] = None,
    width: int = 64,
    source: Optional[str] = None,
    inputs: Optional[dict] = None,
    classes: Optional[Sequence[str]] = None,
    overwrite: bool = False,
) -> str:
  """Writes `variables` ({'params', 'batch_stats'}) and `model.json` into `directory`.

  `inputs` ({num_segments, image_size, scale_size, dense_sample}) and `classes` (label order) are
  optional metadata for inference tools (rnl_jax.classify, rnl_jax.protocol).
  """
  check_location(directory)
  directory = fileio.absolute(directory)  # local or a gs:// URL (orbax writes both)
  if fileio.isdir(directory) and fileio.listdir(directory) and not overwrite:
    raise CheckpointError(
        f'{directory}: exists and is not empty (pass overwrite=True / --overwrite)'
    )
  fileio.makedirs(directory)
  meta = {'format': FORMAT, 'kind': kind, 'source': source}
  if inputs:
    unknown = set(inputs) - set(INPUT_KEYS)
    if unknown:
      raise CheckpointError(f'inputs: unknown keys {sorted(unknown)} (expected {INPUT_KEYS})')
    meta['inputs'] = dict(inputs)
  if classes is not None:
    if kind == 'tsn' and len(classes) != architecture.num_classes:
      raise CheckpointError(f'{len(classes)} class names for {architecture.num_classes} classes')
    meta['classes'] = [str(c) for c in classes]
  if kind == 'tsn':
    meta['architecture'] = architecture.to_dict()
  else:
    meta['depth'] = depth
    meta['width'] = width
  variables = {k: variables[k] for k in ('params', 'batch_stats')}
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(os.path.join(directory, VARIABLES_DIR), variables, force=overwrite)
    ckptr.wait_until_finished()
  if jax.process_index() == 0:  # written last: marks a complete save
    fileio.write_json(os.path.join(directory, MODEL_FILE), meta, indent=1)
  return directory


def read_metadata(directory: str) -> dict:
  path = os.path.join(directory, MODEL_FILE)
  if not fileio.isfile(path):
    raise CheckpointError(f'{directory}: not an rnl_jax checkpoint (no {MODEL_FILE})')
  try:
    meta = json.loads(fileio.read_text(path))
  except json.JSONDecodeError as e:
    raise CheckpointError(f'{path}: invalid JSON ({e})') from None
  if meta.get('format') != FORMAT:
    raise CheckpointError(f'{path}: format {meta.get("format")!r}, this version reads {FORMAT}')
  return meta


def restore_variables(directory: str):
  """(variables, metadata) of a checkpoint directory, restored onto the default device."""
  check_location(directory)
  meta = read_metadata(directory)
  if meta['kind'] == 'tsn':
    arch = Architecture(**meta['architecture'])
    abstract = abstract_variables(build_model(arch, dropout=0.0), (1, 1, 32, 32, 3))
  elif meta['kind'] == 'imagenet_backbone':
    backbone = ResNet(
        meta['depth'], 1, shift_place=None, non_local=False, width=meta.get('width', 64)
    )
    abstract = abstract_variables(backbone, (1, 32, 32, 3))
    abstract = {col: {'base_model': tree} for col, tree in abstract.items()}
  else:
    raise CheckpointError(f'{directory}: unknown checkpoint kind {meta["kind"]!r}')
  with ocp.StandardCheckpointer() as ckptr:
    try:
      variables = ckptr.restore(os.path.join(fileio.absolute(directory), VARIABLES_DIR), abstract)
    except (ValueError, KeyError, FileNotFoundError) as e:
      raise CheckpointError(f'{directory}: variables do not match model.json ({e})') from None
  return variables, meta


def load_checkpoint(path: str, **model_kwargs: Any) -> Tuple[TSN, dict]:
  """`(model, variables)` from a checkpoint directory, or from an original `.pth.tar` (converted in
  memory; needs torch). `model_kwargs` go to `build_model` (dropout, query_chunk, normalize_input,
  dtype). `model.apply(variables, x, train=False)` maps `[N, T, H, W, 3]` to `[N, num_classes]`."""
  if path.endswith(TORCH_SUFFIXES) and fileio.isfile(path):
    from rnl_jax import convert  # pylint: disable=g-import-not-at-top

    variables, arch = convert.convert_checkpoint(path)
  else:
    variables, meta = restore_variables(path)
    if meta['kind'] != 'tsn':
      raise CheckpointError(
          f'{path}: an ImageNet backbone checkpoint; build a model and use '
          f'rnl_jax.convert.merge_pretrained to initialise it'
      )
    arch = Architecture(**meta['architecture'])
  return build_model(arch, **model_kwargs), variables
