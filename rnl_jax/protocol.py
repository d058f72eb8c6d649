"""Test protocol of docs/original.md §6: `python main.py --config=... --config.mode=test`.

(Validation during training is `rnl_jax.train.validate`; this module is the protocol run on a
finished checkpoint.)

Every video of the validation list is seen through `clips x crops` views (clips: `test.dense_clips`
dense windows with `data.dense_sample`, 2 with `test.twice_sample`, else 1; crops: `test.crops` of
`scale_size` with `test.full_res`, else of `image_size`). The model's segment-averaged raw logits are
averaged over all views of a video, attributed by video index (never by batch position; padded rows
are masked), so the result does not depend on `test.views_per_step`, the device count or the process
count. `views_per_step` only bounds memory (30 full-res views of 16-frame RNL need not fit at once).

Written to WORKDIR (process 0), with `test.output` as prefix:
  {output}.json           top1, top5, mean_class_acc, num_videos, the protocol, the checkpoint, timing
  {output}_per_class.csv  label, name, videos, correct, accuracy (top-1 recall per class)
  {output}_scores.npz     video_ids, labels, logits [N, K] (mean over views), class_names, confusion
                          -- the input of `python -m rnl_jax.ensemble` (rnl_jax.scores)
WORKDIR and `test.checkpoint` may be URLs (`gs://bucket/...`, rnl_jax.fileio).
"""

import csv
import functools
import json
import os
import time

from absl import logging
import jax
import ml_collections
import numpy as np
import tqdm

from rnl_jax import checkpoint as checkpoint_lib
from rnl_jax import config as config_lib
from rnl_jax import fileio
from rnl_jax import input_pipeline
from rnl_jax import metrics as metrics_lib
from rnl_jax import scores as scores_lib
from rnl_jax import sharding
from rnl_jax.data import datasets
from rnl_jax.models import clip_groups


def test_views(config):
  """The crops of the test protocol."""
  t = config.test
  return input_pipeline.EvalViews(
      num_crops=t.crops,
      full_res=t.full_res,
      scale_size=config.scale_size,
      input_size=config.image_size,
  )


def test_source(config, paths):
  """The validation list in test mode (clips per video as configured); every listed video must
  exist (checked before anything compiles)."""
  source = input_pipeline.make_source(
      config,
      paths,
      'val',
      'test',
      twice_sample=config.test.twice_sample,
      num_clips=config.test.dense_clips,
  )
  input_pipeline.check_listed_videos(source, paths.val_list)
  return source


def checkpoint_path(config, workdir):
  return config.test.checkpoint or os.path.join(workdir, 'best')


def load_model(config, path):
  """(model, variables) of the checkpoint, with the run-time choices of `config.model`."""
  if not fileio.exists(path):
    raise FileNotFoundError(
        f'config.test.checkpoint: {path} does not exist (train first, or point '
        'config.test.checkpoint at a converted checkpoint or a .pth.tar)'
    )
  dtype = config_lib.DTYPES[config.model.dtype]
  model, variables = checkpoint_lib.load_checkpoint(
      path,
      dropout=0.0,
      normalize_input=True,
      dtype=dtype,
      query_chunk=config_lib.query_chunk_setting(config.model.query_chunk),
      eval_query_chunk=config.model.eval_query_chunk or None,
      eval_attention=config.model.eval_attention,
  )
  if model.num_classes != config.data.num_classes:
    raise ValueError(
        f'config.data.num_classes={config.data.num_classes} but the checkpoint {path} has '
        f'{model.num_classes} classes'
    )
  return model, variables


def video_scores(model, variables, batches, mesh, num_classes, progress=False, clips_per_pass=0):
  """VideoScores of all videos of the EvalBatches `batches` (every view checked in exactly once);
  `clips_per_pass`: views per device per forward pass (clip_groups.eval_step)."""
  eval_fn = jax.jit(
      functools.partial(
          clip_groups.eval_step, model=model, clips=clips_per_pass, shards=mesh.devices.size
      ),
      in_shardings=(sharding.replicated(mesh), sharding.batch_sharding(mesh)),
      out_shardings=sharding.replicated(mesh),
      compiler_options=sharding.compiler_options(),
  )
  variables = jax.device_put(variables, sharding.replicated(mesh))
  scores = metrics_lib.VideoScores(batches.num_videos, num_classes)
  bar = tqdm.tqdm(total=batches.num_videos, unit='video', disable=not progress, dynamic_ncols=True)
  with bar:
    for batch in batches:
      out = jax.device_get(eval_fn(variables, sharding.to_global(batch, mesh)))
      before = int((scores.counts == batches.views_per_video).sum())
      scores.add(out['logits'], out['label'], out['video_index'], out['mask'])
      bar.update(int((scores.counts == batches.views_per_video).sum()) - before)
  scores.check_complete(batches.views_per_video)
  return scores


def per_class_rows(scores, labels, class_names):
  """(label, name, videos, correct, accuracy) per class, from video scores [N, K] and labels [N]."""
  k = scores.shape[1]
  correct = np.argsort(-scores, axis=1, kind='stable')[:, 0] == labels
  rows = []
  for c in range(k):
    n = int((labels == c).sum())
    hit = int(correct[labels == c].sum())
    rows.append((c, class_names[c], n, hit, hit / n if n else float('nan')))
  return rows


def write_results(workdir, output, result, video_ids, labels, logits, class_names):
  """{output}.json, {output}_per_class.csv and {output}_scores.npz in `workdir` (local: plain open()
  as before; a URL: each file one upload when it closes)."""
  with fileio.open(os.path.join(workdir, f'{output}.json'), 'w') as f:
    json.dump(result, f, indent=1)
  with fileio.open(os.path.join(workdir, f'{output}_per_class.csv'), 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(('label', 'name', 'videos', 'correct', 'accuracy'))
    for label, name, n, hit, acc in per_class_rows(logits, labels, class_names):
      w.writerow((label, name, n, hit, f'{acc:.6f}'))
  scores_lib.save_scores(
      os.path.join(workdir, f'{output}_scores.npz'), video_ids, labels, logits, class_names
  )


def test(config: ml_collections.ConfigDict, workdir: str):
  """Runs the test protocol of `config.test` on the val list; returns the metrics dict."""
  config_lib.validate(config)
  if config.mode != 'test':
    raise ValueError(f"config.mode={config.mode!r}: rnl_jax.protocol.test runs config.mode='test'")
  sharding.initialize_distributed(config.distributed)
  workdir = fileio.absolute(workdir)
  fileio.makedirs(workdir)
  root = (
      input_pipeline.prepare_synthetic(config, workdir) if config.data.name == 'synthetic' else None
  )
  paths = input_pipeline.data_paths(config, root)
  source = test_source(config, paths)
  views = test_views(config)
  source.read(0)  # a wrong root / template fails before compiling
  path = checkpoint_path(config, workdir)
  model, variables = load_model(config, path)
  class_names = (
      input_pipeline.class_names(paths)
      or checkpoint_class_names(path)
      or datasets.default_class_names(model.num_classes)
  )

  mesh = sharding.make_mesh()
  sharding.check_batch(config.test.views_per_step, mesh, 'config.test.views_per_step')
  pindex, pcount = jax.process_index(), jax.process_count()
  batches = input_pipeline.EvalBatches(
      source,
      views,
      config.test.views_per_step // pcount,
      num_workers=config.data.num_workers,
      num_threads=config.data.num_threads,
      process_index=pindex,
      process_count=pcount,
  )
  protocol = _protocol(config, source, views, batches, paths.val_list, path)
  start = time.perf_counter()
  scores = video_scores(
      model,
      variables,
      batches,
      mesh,
      model.num_classes,
      progress=pindex == 0,
      clips_per_pass=config.model.eval_clips_per_pass,
  )
  seconds = time.perf_counter() - start
  m = scores.metrics()
  result = dict(
      m,
      protocol=protocol,
      checkpoint=fileio.absolute(path),
      list_file=paths.val_list,
      seconds=seconds,
      videos_per_s=len(source) / seconds,
      views_per_s=len(source) * batches.views_per_video / seconds,
      devices=mesh.devices.size,
      processes=pcount,
  )
  logging.info(
      'test: top1 %.4f top5 %.4f mean class acc %.4f over %d videos (%.1f s, %.1f views/s)',
      m['top1'],
      m['top5'],
      m['mean_class_acc'],
      m['num_videos'],
      seconds,
      result['views_per_s'],
  )
  if pindex == 0:
    video_ids = [source.records[i].path for i in range(len(source))]
    write_results(
        workdir, config.test.output, result, video_ids, scores.labels, scores.scores(), class_names
    )
  return result


def _protocol(config, source, views, batches, val_list, path):
  """The test protocol run (clips, crops, views and frames per video; the result's 'protocol'),
  logged with the video count, the list and the checkpoint before the run starts."""
  protocol = {
      'clips': source.clips_per_video,
      'crops': views.num_crops,
      'full_res': views.full_res,
      'views_per_video': batches.views_per_video,
      'num_segments': config.num_segments,
      'size': views.size,
      'scale_size': config.scale_size,
      'dense_sample': config.data.dense_sample,
      'twice_sample': config.test.twice_sample,
  }
  logging.info(
      'test protocol on %d videos of %s: %d clips x %d crops of %d px, %d frames; checkpoint %s',
      len(source),
      val_list,
      protocol['clips'],
      protocol['crops'],
      protocol['size'],
      config.num_segments,
      path,
  )
  return protocol


def checkpoint_class_names(path):
  """The class names stored with a checkpoint directory, if any."""
  if fileio.isdir(path):
    return checkpoint_lib.read_metadata(path).get('classes')
  return None
