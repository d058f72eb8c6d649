"""`train_and_evaluate(config, workdir)`: the original's training recipe on any number of devices/hosts.

Edges (files, logs, checkpoints, the input pipeline) live in the loop here; `train_step` and
`clip_groups.eval_step` (validation's forward) are pure functions jitted once over a 1-D `data`
mesh: parameters replicated, batches sharded, so BatchNorm statistics are global-batch statistics
(the original's SyncBatchNorm).

One optimizer step = `batch_multiplier` forwards of `batch_size` clips (a `lax.scan`; BatchNorm
statistics per forward and running stats updated after each, gradients of loss / M summed), then the
original's SGD (rnl_jax.optim). A step whose loss or gradient norm is not finite leaves the state
untouched and stops the run with a message naming the step; the last good checkpoint stays.

Workdir layout:
  config.json        the config and the derived batch / lr / step counts (written at start)
  checkpoints/<step> orbax: train state (params, batch_stats, opt_state, step, rng) + grain iterator
                     state per process; the last `keep_checkpoints` are kept; resumed automatically
  best/              the best model by validation top-1 (rnl_jax.load_checkpoint format)
  results.json       latest evaluation (step, epoch, top1, top5, mean_class_acc, num_videos,
                     wall_time_s) plus the history of all evaluations and the best top-1
  tensorboard/       tensorboardX event files (process 0)
  data/              the generated synthetic dataset (data.name='synthetic', data.root='')
"""

import contextlib
import dataclasses
import functools
import json
import math
import os
import signal
import sys
import time
from typing import Any

from absl import logging
import flax
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from rnl_jax import checkpoint as checkpoint_lib
from rnl_jax import config as config_lib
from rnl_jax import convert
from rnl_jax import fileio
from rnl_jax import input_check
from rnl_jax import input_pipeline
from rnl_jax import metrics as metrics_lib
from rnl_jax import optim
from rnl_jax import sharding
from rnl_jax.models import clip_groups


class TrainingError(RuntimeError):
  """A run that cannot go on (non-finite loss, ...); the message says where."""


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # optimizer steps done
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array  # PRNG key (uint32[2]); dropout keys are folded from it per step/micro-batch

  @property
  def variables(self):
    return {'params': self.params, 'batch_stats': self.batch_stats}


# ----------------------------------------------------------------------------------------------------
# pure steps


def cross_entropy(logits, labels):
  """Mean softmax cross-entropy over the batch, in float32."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels).mean()


def _topk_correct(logits, labels, k):
  top = jax.lax.top_k(logits, min(k, logits.shape[-1]))[1]  # [B, k]
  return (top == labels[:, None]).any(axis=-1).mean()


def train_step(state, batch, *, model, tx, lr_fn):
  """One optimizer step over batch['frames'] [M, B, T, S, S, 3] uint8, batch['label'] [M, B]."""
  num_micro = batch['label'].shape[0]
  step_rng = jax.random.fold_in(state.rng, state.step)

  def micro_grads(params, batch_stats, frames, labels, i):
    def loss_fn(params):
      logits, updated = model.apply(
          {'params': params, 'batch_stats': batch_stats},
          frames,
          train=True,
          rngs={'dropout': jax.random.fold_in(step_rng, i)},
          mutable=['batch_stats'],
      )
      loss = cross_entropy(logits, labels)
      return loss / num_micro, (loss, logits, updated['batch_stats'])

    (_, (loss, logits, batch_stats)), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
    out = {
        'loss': loss,
        'top1': _topk_correct(logits, labels, 1),
        'top5': _topk_correct(logits, labels, 5),
    }
    return g, batch_stats, out

  # Micro-batch 0 outside the loop: its gradient starts the sum (adding it to zeros, or running a
  # single-iteration loop, makes XLA:CPU compile the backward pass several times slower).
  grads, batch_stats, first = micro_grads(
      state.params, state.batch_stats, batch['frames'][0], batch['label'][0], 0
  )
  per_micro = jax.tree.map(lambda x: x[None], first)
  if num_micro > 1:

    def body(carry, xs):
      grads, batch_stats = carry
      g, batch_stats, out = micro_grads(state.params, batch_stats, *xs)
      return (jax.tree.map(jnp.add, grads, g), batch_stats), out

    (grads, batch_stats), rest = jax.lax.scan(
        body,
        (grads, batch_stats),
        (batch['frames'][1:], batch['label'][1:], jnp.arange(1, num_micro)),
    )
    per_micro = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), per_micro, rest)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  grad_norm = optax.tree.norm(grads)
  loss = per_micro['loss'].mean()
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
  new_state = state.replace(
      step=state.step + jnp.where(finite, 1, 0),
      params=keep(params, state.params),
      batch_stats=keep(batch_stats, state.batch_stats),
      opt_state=keep(opt_state, state.opt_state),
  )
  metrics = {
      'loss': loss,
      'top1': per_micro['top1'].mean(),
      'top5': per_micro['top5'].mean(),
      'grad_norm': grad_norm,
      'lr': lr_fn(state.step),
      'finite': finite,
  }
  return new_state, metrics


# ----------------------------------------------------------------------------------------------------
# set-up helpers


def _is_chief():
  return jax.process_index() == 0


def _write_json(path, obj):
  if _is_chief():
    fileio.write_json(path, obj, suffix='.tmp', indent=2, sort_keys=True)


def initial_variables(model, config, sample):
  """Fresh variables (the original's init), overlaid with an ImageNet backbone or an RNL checkpoint."""
  # The key is an argument, not a constant: runs with other seeds reuse the compiled init (cache).
  init = jax.jit(lambda key, x: model.init(key, x, train=False))
  variables = init(jax.random.PRNGKey(config.seed), sample)
  variables = {'params': variables['params'], 'batch_stats': variables['batch_stats']}
  if config.init.imagenet:
    pretrained, meta = checkpoint_lib.restore_variables(config.init.imagenet)
    if meta['kind'] != 'imagenet_backbone':
      raise ValueError(
          f'config.init.imagenet={config.init.imagenet!r} is a {meta["kind"]} checkpoint; '
          'expected convert_torch_weights.py --imagenet output'
      )
    variables = convert.merge_pretrained(variables, pretrained, config.init.imagenet)
    logging.info('initialised the backbone from %s', config.init.imagenet)
  elif config.init.checkpoint:
    pretrained, _ = checkpoint_lib.restore_variables(config.init.checkpoint)
    if config.init.new_head:
      pretrained = {
          k: {n: v for n, v in tree.items() if n != 'new_fc'} for k, tree in pretrained.items()
      }
    variables = convert.merge_pretrained(variables, pretrained, config.init.checkpoint)
    logging.info(
        'initialised from %s%s',
        config.init.checkpoint,
        ' (new head)' if config.init.new_head else '',
    )
  return variables


class _Preemption:
  """SIGTERM (a scheduler's preemption) or Ctrl-C (SIGINT) -> save a checkpoint at the end of the
  current step and exit as the signal would (143 / 130), so a restart resumes there. A second
  Ctrl-C raises KeyboardInterrupt at once (the last finished checkpoint stays)."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signal = None
    self._previous = {}

  @property
  def requested(self):
    return self.signal is not None

  @property
  def name(self):
    return signal.Signals(self.signal).name

  @property
  def exit_code(self):
    return 128 + self.signal

  def __enter__(self):
    for signum in self.SIGNALS:
      try:
        self._previous[signum] = signal.signal(signum, self._handle)
      except ValueError:  # not the main thread: no handler
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    if signum == signal.SIGINT and self.signal == signal.SIGINT:
      raise KeyboardInterrupt
    self.signal = self.signal or signum
    if signum == signal.SIGINT:
      print(
          'Ctrl-C: saving a checkpoint after this step (Ctrl-C again to stop at once)',
          file=sys.stderr,
          flush=True,
      )

  def __exit__(self, *exc):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)


class _Writer:
  """TensorBoard scalars on process 0 (tensorboardX: no TensorFlow needed). A bucket logdir gets
  its event file through fileio (tensorboardX's own gs:// and s3:// writers need
  google-cloud-storage or boto3 and their own credentials setup)."""

  def __init__(self, logdir):
    self._writer = None
    if _is_chief():
      from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
      from tensorboardX import record_writer  # pylint: disable=import-outside-toplevel

      if fileio.is_remote(logdir):
        scheme = logdir.split('://', 1)[0]
        record_writer.register_writer_factory(scheme, _BucketEventFiles())
      self._writer = SummaryWriter(logdir)

  def scalars(self, step, values):
    if self._writer is not None:
      for k, v in values.items():
        self._writer.add_scalar(k, v, step)
      self._writer.flush()

  def close(self):
    if self._writer is not None:
      self._writer.close()


class _BucketEventFiles:
  """tensorboardX writer factory for URLs: event files as fileio.RewrittenObject (an object cannot
  be appended to, so each flush uploads the whole file; scalars keep it small)."""

  def open(self, path):
    return fileio.RewrittenObject(path)

  def directory_check(self, path):
    fileio.makedirs(path)


# ----------------------------------------------------------------------------------------------------
# the loop


def validate(eval_fn, variables, batches, mesh, num_classes):
  """Validation: video-level metrics of `variables` over the EvalBatches `batches` of the val list
  (all processes together). The test protocol (clips x crops views, on a finished checkpoint) is
  rnl_jax.protocol."""
  scores = metrics_lib.VideoScores(batches.num_videos, num_classes)
  for batch in batches:
    out = jax.device_get(eval_fn(variables, sharding.to_global(batch, mesh)))
    scores.add(out['logits'], out['label'], out['video_index'], out['mask'])
  scores.check_complete(batches.views_per_video)
  return scores.metrics()


def model_inputs(config):
  """How the model is fed (saved with checkpoints for inference tools)."""
  return {
      'num_segments': config.num_segments,
      'image_size': config.image_size,
      'scale_size': config.scale_size,
      'dense_sample': config.data.dense_sample,
  }


@dataclasses.dataclass(frozen=True)
class RunPlan:
  """What a run derives from its config and its train list (docs/original.md §5.1-5.3); written to
  WORKDIR/config.json as 'derived'.

  Attributes:
    clips_per_step: clips per optimizer step, batch_size x batch_multiplier.
    lr: the base lr scaled by the linear scaling rule to clips_per_step.
    micro_batches_per_epoch: forwards of batch_size clips per pass over the train list (fractional).
    steps_per_epoch: optimizer steps per pass over the train list (fractional).
    num_train_steps: optimizer steps of the whole run (config.num_train_steps, else num_epochs'
      worth).
    num_train_videos: videos in the train list.
  """

  clips_per_step: int
  lr: float
  micro_batches_per_epoch: float
  steps_per_epoch: float
  num_train_steps: int
  num_train_videos: int

  def to_dict(self):
    return dataclasses.asdict(self)


def run_plan(config, num_train_videos) -> RunPlan:
  """Batch, lr and step arithmetic of docs/original.md §5.1-5.3 for this run."""
  step_batch = config.batch_size * config.batch_multiplier
  lr = optim.scaled_lr(config.optim.base_lr, step_batch, config.optim.reference_batch)
  micro_per_epoch = num_train_videos / config.batch_size
  steps_per_epoch = micro_per_epoch / config.batch_multiplier
  schedule_steps = max(1, math.ceil(config.num_epochs * steps_per_epoch))
  total = config.num_train_steps if config.num_train_steps > 0 else schedule_steps
  if config.optim.schedule == 'cos' and total > schedule_steps:
    # The cosine ends at 0 after num_epochs: every step past it would train with lr 0.
    raise ValueError(
        f'config.num_train_steps={config.num_train_steps} runs past the cosine lr schedule, which ends '
        f'(lr 0) at config.num_epochs={config.num_epochs:g} = {schedule_steps} steps of {step_batch} '
        f'clips over {num_train_videos} videos; raise config.num_epochs to at least '
        f'{total / steps_per_epoch:.3g} or lower config.num_train_steps'
    )
  return RunPlan(
      clips_per_step=step_batch,
      lr=lr,
      micro_batches_per_epoch=micro_per_epoch,
      steps_per_epoch=steps_per_epoch,
      num_train_steps=total,
      num_train_videos=num_train_videos,
  )


# ----------------------------------------------------------------------------------------------------
# set-up phases


@dataclasses.dataclass(frozen=True)
class RunData:
  """The run's data: where it is, its class names, the train and val sources (missing videos
  already dropped or reported), and which listed videos were missing per split."""

  paths: Any
  class_names: Any
  train_source: Any
  val_source: Any
  missing: dict


def load_data(config, workdir) -> RunData:
  """Finds (or generates) the data and checks it before anything compiles: every listed video
  exists (input_pipeline.check_listed_videos), and one video per split reads (a wrong root,
  template or format fails here, not after compiling)."""
  root = (
      input_pipeline.prepare_synthetic(config, workdir) if config.data.name == 'synthetic' else None
  )
  paths = input_pipeline.data_paths(config, root)
  train_source = input_pipeline.make_source(config, paths, 'train', 'train')
  val_source = input_pipeline.make_source(config, paths, 'val', 'val')
  missing = {
      split: input_pipeline.check_listed_videos(source, list_path)
      for split, source, list_path in (
          ('train', train_source, paths.train_list),
          ('val', val_source, paths.val_list),
      )
  }
  for source in (train_source, val_source):
    source.read(0, np.random.default_rng(0))
  return RunData(paths, input_pipeline.class_names(paths), train_source, val_source, missing)


def make_mesh(config):
  """The 1-D data mesh over all devices; both batch sizes must split over it."""
  mesh = sharding.make_mesh()
  sharding.check_batch(config.batch_size, mesh, 'config.batch_size')
  sharding.check_batch(config.eval_batch_size, mesh, 'config.eval_batch_size')
  return mesh


def record_plan(config, plan, data, mesh, workdir):
  """Logs the run plan and writes WORKDIR/config.json (config, plan, devices, processes)."""
  if plan.clips_per_step != config.optim.reference_batch:
    logging.info(
        'linear scaling rule: %d clips per step -> lr %.6g (base_lr %.6g per %d clips)',
        plan.clips_per_step,
        plan.lr,
        config.optim.base_lr,
        config.optim.reference_batch,
    )
  logging.info(
      '%d train videos, %d val videos; %d clips per step (%d x %d forwards) on %d devices '
      '/ %d processes; %.1f steps per epoch, %d steps',
      len(data.train_source),
      len(data.val_source),
      plan.clips_per_step,
      config.batch_size,
      config.batch_multiplier,
      mesh.devices.size,
      jax.process_count(),
      plan.steps_per_epoch,
      plan.num_train_steps,
  )
  _write_json(
      os.path.join(workdir, 'config.json'),
      {
          'config': config.to_dict(),
          'derived': plan.to_dict(),
          'devices': mesh.devices.size,
          'processes': jax.process_count(),
      },
  )


def create_train_state(config, model, plan, mesh):
  """(state replicated over `mesh`, optimizer, lr schedule) of a fresh run: the original's init
  (or a pretrained overlay) and its SGD with parameter groups."""
  lr_fn = optim.lr_schedule(
      plan.lr,
      schedule=config.optim.schedule,
      num_epochs=config.num_epochs,
      warmup_epochs=config.optim.warmup_epochs,
      lr_steps=config.optim.lr_steps,
      micro_batches_per_epoch=plan.micro_batches_per_epoch,
      batch_multiplier=config.batch_multiplier,
  )
  t, s = config.num_segments, config.image_size
  variables = initial_variables(model, config, jnp.zeros((1, t, s, s, 3), jnp.uint8))
  tx = optim.sgd(
      variables['params'],
      lr_fn,
      momentum=config.optim.momentum,
      weight_decay=config.optim.weight_decay,
      clip_grad_norm=config.optim.clip_grad_norm,
      grouping=config.optim.grouping,
      fc_lr5=config.optim.fc_lr5,
  )
  state = TrainState(
      step=jnp.zeros((), jnp.int32),
      params=variables['params'],
      batch_stats=variables['batch_stats'],
      opt_state=tx.init(variables['params']),
      rng=jax.random.PRNGKey(config.seed + 1),
  )
  return jax.device_put(state, sharding.replicated(mesh)), tx, lr_fn


def make_iterators(config, data):
  """(training iterator of this process's block of each global batch, validation batches)."""
  pindex, pcount = jax.process_index(), jax.process_count()
  d = config.data
  train_iter = input_pipeline.train_iterator(
      data.train_source,
      input_pipeline.train_augment(config),
      global_batch_size=config.batch_size,
      seed=config.seed,
      num_workers=d.num_workers,
      num_threads=d.num_threads,
      prefetch=d.prefetch,
      process_index=pindex,
      process_count=pcount,
  )
  eval_batches = input_pipeline.EvalBatches(
      data.val_source,
      input_pipeline.val_views(config),
      config.eval_batch_size // pcount,
      num_workers=d.num_workers,
      num_threads=d.num_threads,
      process_index=pindex,
      process_count=pcount,
  )
  return train_iter, eval_batches


def compile_steps(config, model, tx, lr_fn, mesh):
  """(train_step_fn, eval_step_fn): the pure steps jitted over `mesh` (parameters replicated,
  batches sharded on their batch axis; the train state is donated)."""
  replicated = sharding.replicated(mesh)
  train_step_fn = jax.jit(
      functools.partial(train_step, model=model, tx=tx, lr_fn=lr_fn),
      in_shardings=(replicated, sharding.batch_sharding(mesh, batch_axis=1)),
      out_shardings=(replicated, replicated),
      donate_argnums=0,
      compiler_options=sharding.compiler_options(),
  )
  eval_step_fn = jax.jit(
      functools.partial(
          clip_groups.eval_step,
          model=model,
          clips=config.model.eval_clips_per_pass,
          shards=mesh.devices.size,
      ),
      in_shardings=(replicated, sharding.batch_sharding(mesh)),
      out_shardings=replicated,
      compiler_options=sharding.compiler_options(),
  )
  return train_step_fn, eval_step_fn


# ----------------------------------------------------------------------------------------------------
# "is it time to" and timing helpers (big_vision's u.itstime / u.chrono)


def itstime(step, every_steps, total_steps):
  """True at every `every_steps`-th step and at the last step."""
  return step == total_steps or (every_steps > 0 and step % every_steps == 0)


class ValidationClock:
  """When validation is due: at every multiple of `every` (fractional) steps and at the end; 0
  means only at the end. A resumed run continues with the next multiple after its step."""

  def __init__(self, every, step):
    self.every = every
    self.next = (math.floor(step / every) + 1) * every if every else math.inf

  def due(self, step, total):
    return step >= self.next or step == total

  def passed(self, step):
    """Marks the validation at `step` done."""
    while self.next <= step:
      self.next += self.every


class Chrono:
  """Wall-clock accounting of the step loop. The input check (how long the device waited for
  batches, input_check.py) runs from the end of the first step on, so compilation is excluded,
  and seconds spent validating or saving (`paused`) are excluded too. A log window is the steps
  since the last log line."""

  def __init__(self):
    self.check = input_check.InputCheck()
    self.run_start = self.run_first = None
    self.paused_seconds = 0.0
    self.window_start, self.window_first = time.perf_counter(), 0

  def dispatched(self, metrics):
    """After a step is dispatched; the first one is waited for (it includes compilation)."""
    self.check.dispatched(metrics)
    if self.run_start is None:
      jax.block_until_ready(metrics)
      self.run_start, self.run_first = time.perf_counter(), self.check.dispatched_steps

  @contextlib.contextmanager
  def paused(self):
    start = time.perf_counter()
    try:
      yield
    finally:
      self.paused_seconds += time.perf_counter() - start

  def window_idle_seconds(self):
    return self.check.idle_seconds(self.window_first)

  def next_window(self):
    self.window_start, self.window_first = time.perf_counter(), self.check.dispatched_steps

  def summary(self, clips_per_step):
    """The input check's figures since the first step ({} before a second step ran)."""
    steps = self.check.dispatched_steps - self.run_first if self.run_first is not None else 0
    if not steps:
      return {}
    seconds = time.perf_counter() - self.run_start - self.paused_seconds
    return {
        'device_idle': self.check.idle_seconds(self.run_first) / seconds,
        'host_wait': self.check.host_wait_seconds(self.run_first) / seconds,
        'steps': steps,
        'seconds': seconds,
        'clips_per_s': steps * clips_per_step / seconds,
    }

  def close(self):
    self.check.close()


# ----------------------------------------------------------------------------------------------------
# the run


@dataclasses.dataclass
class _Run:
  """What the phases of one `train_and_evaluate` share: its plan, files and iterators. `state`
  and `results` (results.json) change as it trains; everything else is fixed at start."""

  config: Any
  workdir: str
  plan: RunPlan
  mesh: Any
  data: RunData
  manager: Any
  writer: Any
  train_iter: Any
  eval_batches: Any
  start_time: float
  state: Any = None
  results: dict = dataclasses.field(default_factory=lambda: {'history': [], 'best_top1': -1.0})

  @property
  def results_path(self):
    return os.path.join(self.workdir, 'results.json')

  @property
  def checkpoints(self):
    return os.path.join(self.workdir, 'checkpoints')


def restore_or_start(run):
  """Resumes from the latest checkpoint (train state, this process's iterator position, the
  results up to that step) if the workdir has one; else the fresh state stays."""
  step = run.manager.latest_step()
  if step is not None:
    replicated = sharding.replicated(run.mesh)
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), run.state
    )
    restored = run.manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target),
            data=grain.checkpoint.CheckpointRestore(run.train_iter),
        ),
    )
    run.state = restored['state']
    if fileio.exists(run.results_path):
      run.results = json.loads(fileio.read_text(run.results_path))
      run.results['history'] = [h for h in run.results['history'] if h['step'] <= step]
      run.results['best_top1'] = max([h['top1'] for h in run.results['history']], default=-1.0)
    logging.info('resumed from %s at step %d', run.checkpoints, step)
  run.results['missing_videos'] = {split: len(v) for split, v in run.data.missing.items()}
  run.results.setdefault('replaced_videos', 0)


def save_checkpoint(run, step):
  """Saves the train state and every process's iterator position as checkpoint `step` (async)."""
  run.manager.save(
      step,
      args=ocp.args.Composite(
          state=ocp.args.StandardSave(run.state),
          data=grain.checkpoint.CheckpointSave(run.train_iter),
      ),
      force=True,
  )


def save_best(run, step):
  """WORKDIR/best: the current variables in the load_checkpoint format (architecture, inputs and
  class names with them), replacing the previous best."""
  config = run.config
  checkpoint_lib.save_checkpoint(
      os.path.join(run.workdir, 'best'),
      jax.device_get(run.state.variables),
      architecture=config_lib.architecture_from_config(config),
      source=f'{run.workdir} step {step}',
      inputs=model_inputs(config),
      classes=run.data.class_names,
      overwrite=True,
  )


def validate_and_record(run, eval_step_fn, step):
  """Validation at `step`: logged, written to TensorBoard and results.json; a new best top-1 is
  saved to WORKDIR/best. Returns the metrics."""
  t0 = time.perf_counter()
  m = validate(
      eval_step_fn, run.state.variables, run.eval_batches, run.mesh, run.config.data.num_classes
  )
  epoch = step * run.plan.clips_per_step / run.plan.num_train_videos
  m.update(
      step=step,
      epoch=epoch,
      wall_time_s=time.time() - run.start_time,
      eval_seconds=time.perf_counter() - t0,
  )
  logging.info(
      'eval at step %d (epoch %.2f): top1 %.4f top5 %.4f mean class acc %.4f over %d '
      'videos (%.1f s)',
      step,
      epoch,
      m['top1'],
      m['top5'],
      m['mean_class_acc'],
      m['num_videos'],
      m['eval_seconds'],
  )
  run.writer.scalars(
      step,
      {'val/top1': m['top1'], 'val/top5': m['top5'], 'val/mean_class_acc': m['mean_class_acc']},
  )
  run.results['history'].append(m)
  run.results.update({k: m[k] for k in LAST_METRICS})
  if m['top1'] > run.results['best_top1']:
    run.results['best_top1'] = m['top1']
    save_best(run, step)
  _write_json(run.results_path, run.results)
  return m


def next_batch(run, chrono):
  """The next optimizer step's batch {'frames': [M, B/P, T, S, S, 3], 'label': [M, B/P]} of this
  process, and the videos replaced in it (skip_corrupt) as list paths."""
  t0 = time.perf_counter()
  micro = [next(run.train_iter) for _ in range(run.config.batch_multiplier)]
  chrono.check.waited(t0, time.perf_counter())
  batch = {k: np.stack([m[k] for m in micro]) for k in ('frames', 'label')}
  return batch, _replaced_videos(run.data.train_source, micro)


def _replaced_videos(source, micro):
  """Paths of the unreadable videos replaced in the micro-batches. A source replaces video i by
  the first readable one of i+1, i+2, ..., so an example that skipped k came from i + k."""
  paths = []
  for m in micro:
    for index, k in zip(m['video_index'], m['skipped']):
      paths += [source.video_path((int(index) - j) % len(source)) for j in range(int(k), 0, -1)]
  return paths


def train_steps(run, train_step_fn, eval_step_fn):
  """The step loop from the state's step to the plan's last: step, then (when due) log, validate,
  save. SIGTERM or Ctrl-C saves at the end of the step and exits (143 / 130)."""
  config, total = run.config, run.plan.num_train_steps
  step = int(jax.device_get(run.state.step))
  clock = ValidationClock(config.eval_every_epochs * run.plan.steps_per_epoch, step)
  chrono, window, pending = Chrono(), [], None  # pending: the previous step's metrics, checked late
  try:
    with _Preemption() as preemption:
      while step < total:
        batch, replaced = next_batch(run, chrono)
        run.state, metrics = train_step_fn(
            run.state, sharding.to_global(batch, run.mesh, batch_axis=1)
        )
        chrono.dispatched(metrics)
        if pending is not None:
          _check_finite(pending, step)  # blocks on the previous step only
        step, pending = step + 1, metrics
        window.append((metrics, replaced))
        is_eval, is_log = clock.due(step, total), itstime(step, config.log_every_steps, total)
        is_save = is_eval or itstime(step, config.checkpoint_every_steps, 0)
        if is_log or is_eval or is_save or preemption.requested:
          _check_finite(metrics, step)  # never log, validate or save a broken state
          pending = None
        if is_log:
          _log_window(run, window, step, chrono)
          window = []
        with chrono.paused():
          if is_eval:
            clock.passed(step)
            validate_and_record(run, eval_step_fn, step)
          if is_save or preemption.requested:  # a signal may arrive during validation
            save_checkpoint(run, step)
        if preemption.requested:
          run.manager.wait_until_finished()
          logging.warning(
              '%s: saved step %d to %s; exiting', preemption.name, step, run.checkpoints
          )
          raise SystemExit(preemption.exit_code)
    if pending is not None:
      _check_finite(pending, step)
    _record_input_check(run, chrono)
  finally:
    chrono.close()
  return step


def _record_input_check(run, chrono):
  """Logs and records (results.json 'input') how long the device waited for data."""
  jax.block_until_ready(run.state.step)  # the last step's time counts
  summary = chrono.summary(run.plan.clips_per_step)
  if not summary:
    return
  run.results['input'] = summary
  logging.info(
      'input check: the device waited for data %.1f%% of %.1f s training over the last '
      '%d steps (%.2f clips/s; the host waited %.1f%%, counting waits while the device '
      'computed; the first step (compilation), evaluation and checkpoint saves '
      'excluded)%s',
      100 * summary['device_idle'],
      summary['seconds'],
      summary['steps'],
      summary['clips_per_s'],
      100 * summary['host_wait'],
      ': input-bound' if summary['device_idle'] > 0.1 else '',
  )
  _write_json(run.results_path, run.results)


LAST_METRICS = ('step', 'epoch', 'top1', 'top5', 'mean_class_acc', 'num_videos', 'wall_time_s')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Trains and validates as configured; returns the last validation's metrics (dict).

  Phases: check the config and the data (nothing compiled yet), plan the run, create the state,
  restore it if the workdir has a checkpoint, run the steps (validating and saving when due),
  validate and save the final step if that did not happen on the way."""
  config_lib.validate(config)  # before any compilation or data access
  sharding.initialize_distributed(config.distributed)
  checkpoint_lib.check_location(workdir)  # checkpoints live in the workdir
  workdir = fileio.absolute(workdir)  # a local folder or a gs:// URL
  fileio.makedirs(workdir)
  start_time = time.time()
  data = load_data(config, workdir)
  model = config_lib.model_from_config(config)
  mesh = make_mesh(config)
  plan = run_plan(config, len(data.train_source))
  record_plan(config, plan, data, mesh, workdir)
  state, tx, lr_fn = create_train_state(config, model, plan, mesh)
  train_iter, eval_batches = make_iterators(config, data)
  manager = ocp.CheckpointManager(
      os.path.join(workdir, 'checkpoints'),
      options=ocp.CheckpointManagerOptions(
          max_to_keep=config.keep_checkpoints, enable_async_checkpointing=True, create=True
      ),
  )
  run = _Run(
      config,
      workdir,
      plan,
      mesh,
      data,
      manager,
      _Writer(os.path.join(workdir, 'tensorboard')),
      train_iter,
      eval_batches,
      start_time,
      state=state,
  )
  try:
    restore_or_start(run)
    train_step_fn, eval_step_fn = compile_steps(config, model, tx, lr_fn, mesh)
    step = train_steps(run, train_step_fn, eval_step_fn)
    if not run.results['history'] or run.results['history'][-1]['step'] != step:
      validate_and_record(run, eval_step_fn, step)
      save_checkpoint(run, step)
  finally:
    manager.wait_until_finished()
    manager.close()
    run.writer.close()
    close = getattr(train_iter, 'close', None)
    if close is not None:
      close()
  return {k: run.results[k] for k in LAST_METRICS}


def _check_finite(metrics, step):
  """Raises TrainingError when optimizer step `step` (1-based) had a non-finite loss or gradient."""
  if not bool(jax.device_get(metrics['finite'])):
    loss, norm = jax.device_get((metrics['loss'], metrics['grad_norm']))
    raise TrainingError(
        f'non-finite loss {float(loss)} / gradient norm {float(norm)} at step '
        f'{step}; the update was not applied and the run stops here (the '
        'last checkpoint is intact; lower the lr or check the data)'
    )


def _log_window(run, window, step, chrono):
  """Logs the window's mean metrics, speed, the device's idle time waiting for input and the
  videos replaced in it (skip_corrupt: named, and counted in results.json); starts a new window."""
  plan, total = run.plan, run.plan.num_train_steps
  values = jax.device_get([m for m, _ in window])
  replaced = [path for _, paths in window for path in paths]
  mean = {k: float(np.mean([v[k] for v in values])) for k in ('loss', 'top1', 'top5', 'grad_norm')}
  seconds = time.perf_counter() - chrono.window_start
  clips = len(window) * plan.clips_per_step
  mean.update(
      lr=float(values[-1]['lr']),
      clips_per_s=clips / seconds,
      input_idle=chrono.window_idle_seconds() / seconds,
      skipped=len(replaced),
  )
  eta = (total - step) * seconds / len(window)
  logging.info(
      'step %d/%d (epoch %.2f): loss %.4f top1 %.3f top5 %.3f lr %.5g grad norm %.3g | '
      '%.1f clips/s, idle on input %.0f%%, ETA %s',
      step,
      total,
      step / plan.steps_per_epoch,
      mean['loss'],
      mean['top1'],
      mean['top5'],
      mean['lr'],
      mean['grad_norm'],
      mean['clips_per_s'],
      100 * mean['input_idle'],
      fileio.hms(eta),
  )
  if replaced:
    run.results['replaced_videos'] = run.results.get('replaced_videos', 0) + len(replaced)
    logging.warning(
        '%d unreadable videos replaced in the last %d steps: %s',
        len(replaced),
        len(window),
        ', '.join(replaced),
    )
  run.writer.scalars(step, {f'train/{k}': v for k, v in mean.items()})
  chrono.next_window()
