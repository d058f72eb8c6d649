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
  step: jax.Array          # optimizer steps done
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array           # PRNG key (uint32[2]); dropout keys are folded from it per step/micro-batch

  @property
  def variables(self):
    return {'params': self.params, 'batch_stats': self.batch_stats}


# ----------------------------------------------------------------------------------------------------
# pure steps


def cross_entropy(logits, labels):
  """Mean softmax cross-entropy over the batch, in float32."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels).mean()


def _topk_correct(logits, labels, k):
  top = jax.lax.top_k(logits, min(k, logits.shape[-1]))[1]     # [B, k]
  return (top == labels[:, None]).any(axis=-1).mean()


def train_step(state, batch, *, model, tx, lr_fn):
  """One optimizer step over batch['frames'] [M, B, T, S, S, 3] uint8, batch['label'] [M, B]."""
  num_micro = batch['label'].shape[0]
  step_rng = jax.random.fold_in(state.rng, state.step)

  def micro_grads(params, batch_stats, frames, labels, i):
    def loss_fn(params):
      logits, updated = model.apply({'params': params, 'batch_stats': batch_stats}, frames, train=True,
                                    rngs={'dropout': jax.random.fold_in(step_rng, i)},
                                    mutable=['batch_stats'])
      loss = cross_entropy(logits, labels)
      return loss / num_micro, (loss, logits, updated['batch_stats'])

    (_, (loss, logits, batch_stats)), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
    out = {'loss': loss, 'top1': _topk_correct(logits, labels, 1), 'top5': _topk_correct(logits, labels, 5)}
    return g, batch_stats, out

  # Micro-batch 0 outside the loop: its gradient starts the sum (adding it to zeros, or running a
  # single-iteration loop, makes XLA:CPU compile the backward pass several times slower).
  grads, batch_stats, first = micro_grads(state.params, state.batch_stats, batch['frames'][0],
                                          batch['label'][0], 0)
  per_micro = jax.tree.map(lambda x: x[None], first)
  if num_micro > 1:
    def body(carry, xs):
      grads, batch_stats = carry
      g, batch_stats, out = micro_grads(state.params, batch_stats, *xs)
      return (jax.tree.map(jnp.add, grads, g), batch_stats), out

    (grads, batch_stats), rest = jax.lax.scan(
        body, (grads, batch_stats), (batch['frames'][1:], batch['label'][1:], jnp.arange(1, num_micro)))
    per_micro = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), per_micro, rest)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  grad_norm = optax.tree.norm(grads)
  loss = per_micro['loss'].mean()
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
  new_state = state.replace(step=state.step + jnp.where(finite, 1, 0), params=keep(params, state.params),
                            batch_stats=keep(batch_stats, state.batch_stats),
                            opt_state=keep(opt_state, state.opt_state))
  metrics = {'loss': loss, 'top1': per_micro['top1'].mean(), 'top5': per_micro['top5'].mean(),
             'grad_norm': grad_norm, 'lr': lr_fn(state.step), 'finite': finite}
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
      raise ValueError(f'config.init.imagenet={config.init.imagenet!r} is a {meta["kind"]} checkpoint; '
                       'expected convert_torch_weights.py --imagenet output')
    variables = convert.merge_pretrained(variables, pretrained, config.init.imagenet)
    logging.info('initialised the backbone from %s', config.init.imagenet)
  elif config.init.checkpoint:
    pretrained, _ = checkpoint_lib.restore_variables(config.init.checkpoint)
    if config.init.new_head:
      pretrained = {k: {n: v for n, v in tree.items() if n != 'new_fc'} for k, tree in pretrained.items()}
    variables = convert.merge_pretrained(variables, pretrained, config.init.checkpoint)
    logging.info('initialised from %s%s', config.init.checkpoint,
                 ' (new head)' if config.init.new_head else '')
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
      except ValueError:   # not the main thread: no handler
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    if signum == signal.SIGINT and self.signal == signal.SIGINT:
      raise KeyboardInterrupt
    self.signal = self.signal or signum
    if signum == signal.SIGINT:
      print('Ctrl-C: saving a checkpoint after this step (Ctrl-C again to stop at once)',
            file=sys.stderr, flush=True)

  def __exit__(self, *exc):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)


class _Writer:
  """TensorBoard scalars on process 0 (tensorboardX: no TensorFlow needed)."""

  def __init__(self, logdir):
    self._writer = None
    if _is_chief():
      from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
      self._writer = SummaryWriter(logdir)

  def scalars(self, step, values):
    if self._writer is not None:
      for k, v in values.items():
        self._writer.add_scalar(k, v, step)
      self._writer.flush()

  def close(self):
    if self._writer is not None:
      self._writer.close()


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
  return {'num_segments': config.num_segments, 'image_size': config.image_size,
          'scale_size': config.scale_size, 'dense_sample': config.data.dense_sample}


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
        f'{total / steps_per_epoch:.3g} or lower config.num_train_steps')
  return RunPlan(clips_per_step=step_batch, lr=lr, micro_batches_per_epoch=micro_per_epoch,
                 steps_per_epoch=steps_per_epoch, num_train_steps=total,
                 num_train_videos=num_train_videos)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Trains and validates as configured; returns the last validation's metrics (dict)."""
  config_lib.validate(config)                       # before any compilation or data access
  sharding.initialize_distributed(config.distributed)
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  start_time = time.time()

  root = (input_pipeline.prepare_synthetic(config, workdir) if config.data.name == 'synthetic'
          else None)
  paths = input_pipeline.data_paths(config, root)
  class_names = input_pipeline.class_names(paths)
  train_source = input_pipeline.make_source(config, paths, 'train', 'train')
  val_source = input_pipeline.make_source(config, paths, 'val', 'val')
  missing = {split: input_pipeline.check_listed_videos(source, list_path)
             for split, source, list_path in (('train', train_source, paths.train_list),
                                              ('val', val_source, paths.val_list))}
  for source in (train_source, val_source):   # wrong root / template / format: fail before compiling
    source.read(0, np.random.default_rng(0))
  model = config_lib.model_from_config(config)
  mesh = sharding.make_mesh()
  sharding.check_batch(config.batch_size, mesh, 'config.batch_size')
  sharding.check_batch(config.eval_batch_size, mesh, 'config.eval_batch_size')

  plan = run_plan(config, len(train_source))
  if plan.clips_per_step != config.optim.reference_batch:
    logging.info('linear scaling rule: %d clips per step -> lr %.6g (base_lr %.6g per %d clips)',
                 plan.clips_per_step, plan.lr, config.optim.base_lr, config.optim.reference_batch)
  logging.info('%d train videos, %d val videos; %d clips per step (%d x %d forwards) on %d devices / %d '
               'processes; %.1f steps per epoch, %d steps', len(train_source), len(val_source),
               plan.clips_per_step, config.batch_size, config.batch_multiplier, mesh.devices.size,
               jax.process_count(), plan.steps_per_epoch, plan.num_train_steps)
  _write_json(os.path.join(workdir, 'config.json'),
              {'config': config.to_dict(), 'derived': plan.to_dict(), 'devices': mesh.devices.size,
               'processes': jax.process_count()})

  lr_fn = optim.lr_schedule(plan.lr, schedule=config.optim.schedule, num_epochs=config.num_epochs,
                            warmup_epochs=config.optim.warmup_epochs, lr_steps=config.optim.lr_steps,
                            micro_batches_per_epoch=plan.micro_batches_per_epoch,
                            batch_multiplier=config.batch_multiplier)
  t, s = config.num_segments, config.image_size
  sample = jnp.zeros((1, t, s, s, 3), jnp.uint8)
  variables = initial_variables(model, config, sample)
  tx = optim.sgd(variables['params'], lr_fn, momentum=config.optim.momentum,
                 weight_decay=config.optim.weight_decay, clip_grad_norm=config.optim.clip_grad_norm,
                 grouping=config.optim.grouping, fc_lr5=config.optim.fc_lr5)
  replicated = sharding.replicated(mesh)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=variables['params'],
                     batch_stats=variables['batch_stats'], opt_state=tx.init(variables['params']),
                     rng=jax.random.PRNGKey(config.seed + 1))
  state = jax.device_put(state, replicated)
  del variables

  pindex, pcount = jax.process_index(), jax.process_count()
  train_iter = input_pipeline.train_iterator(
      train_source, input_pipeline.train_augment(config), global_batch_size=config.batch_size,
      seed=config.seed, num_workers=config.data.num_workers, num_threads=config.data.num_threads,
      prefetch=config.data.prefetch, process_index=pindex, process_count=pcount)
  eval_batches = input_pipeline.EvalBatches(
      val_source, input_pipeline.val_views(config), config.eval_batch_size // pcount,
      num_workers=config.data.num_workers, num_threads=config.data.num_threads, process_index=pindex,
      process_count=pcount)

  ckpt_dir = os.path.join(workdir, 'checkpoints')
  manager = ocp.CheckpointManager(ckpt_dir, options=ocp.CheckpointManagerOptions(
      max_to_keep=config.keep_checkpoints, enable_async_checkpointing=True, create=True))
  results_path = os.path.join(workdir, 'results.json')
  results = {'history': [], 'best_top1': -1.0}
  if manager.latest_step() is not None:
    step0 = manager.latest_step()
    restored = manager.restore(step0, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), state)),
        data=grain.checkpoint.CheckpointRestore(train_iter)))
    state = restored['state']
    if os.path.exists(results_path):
      with open(results_path) as f:
        results = json.load(f)
      results['history'] = [h for h in results['history'] if h['step'] <= step0]
      results['best_top1'] = max([h['top1'] for h in results['history']], default=-1.0)
    logging.info('resumed from %s at step %d', ckpt_dir, step0)
  results['missing_videos'] = {split: len(videos) for split, videos in missing.items()}

  batch_sharding = sharding.batch_sharding(mesh, batch_axis=1)
  train_step_fn = jax.jit(functools.partial(train_step, model=model, tx=tx, lr_fn=lr_fn),
                          in_shardings=(replicated, batch_sharding),
                          out_shardings=(replicated, replicated), donate_argnums=0,
                          compiler_options=sharding.compiler_options())
  eval_step_fn = jax.jit(functools.partial(clip_groups.eval_step, model=model,
                                           clips=config.model.eval_clips_per_pass,
                                           shards=mesh.devices.size),
                         in_shardings=(replicated, sharding.batch_sharding(mesh)),
                         out_shardings=replicated, compiler_options=sharding.compiler_options())

  def save(step):
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                               data=grain.checkpoint.CheckpointSave(train_iter)),
                 force=True)

  def run_validation(step):
    t0 = time.perf_counter()
    m = validate(eval_step_fn, state.variables, eval_batches, mesh, config.data.num_classes)
    epoch = step * plan.clips_per_step / plan.num_train_videos
    m.update(step=step, epoch=epoch, wall_time_s=time.time() - start_time,
             eval_seconds=time.perf_counter() - t0)
    logging.info('eval at step %d (epoch %.2f): top1 %.4f top5 %.4f mean class acc %.4f over %d videos '
                 '(%.1f s)', step, epoch, m['top1'], m['top5'], m['mean_class_acc'], m['num_videos'],
                 m['eval_seconds'])
    writer.scalars(step, {'val/top1': m['top1'], 'val/top5': m['top5'],
                          'val/mean_class_acc': m['mean_class_acc']})
    results['history'].append(m)
    results.update({k: m[k] for k in ('step', 'epoch', 'top1', 'top5', 'mean_class_acc', 'num_videos',
                                      'wall_time_s')})
    if m['top1'] > results['best_top1']:
      results['best_top1'] = m['top1']
      checkpoint_lib.save_checkpoint(os.path.join(workdir, 'best'), jax.device_get(state.variables),
                                     architecture=config_lib.architecture_from_config(config),
                                     source=f'{workdir} step {step}', inputs=model_inputs(config),
                                     classes=class_names, overwrite=True)
    _write_json(results_path, results)
    return m

  writer = _Writer(os.path.join(workdir, 'tensorboard'))
  total = plan.num_train_steps
  step = int(jax.device_get(state.step))
  eval_every = config.eval_every_epochs * plan.steps_per_epoch
  next_eval = (math.floor(step / eval_every) + 1) * eval_every if eval_every else math.inf
  pending = None                        # metrics of the previous step, checked one step late
  window, window_start = [], time.perf_counter()
  window_first = 0                      # dispatch index of the window's first step
  # Input check, from the end of the first step (compilation included) on: the device's idle time
  # waiting for batches (input_check.py), start, first dispatch, seconds in evaluation and
  # checkpoint saves (not counted).
  check = input_check.InputCheck()
  run_start, run_first, run_paused = None, None, 0.0
  try:
    with _Preemption() as preemption:
      while step < total:
        t0 = time.perf_counter()
        micro = [next(train_iter) for _ in range(config.batch_multiplier)]
        check.waited(t0, time.perf_counter())
        batch = {k: np.stack([m[k] for m in micro]) for k in ('frames', 'label')}   # [M, B/P, ...]
        skipped = sum(int(m['skipped'].sum()) for m in micro)
        state, metrics = train_step_fn(state, sharding.to_global(batch, mesh, batch_axis=1))
        check.dispatched(metrics)
        if run_start is None:             # the input check starts when the first step is done
          jax.block_until_ready(metrics)
          run_start, run_first = time.perf_counter(), check.dispatched_steps
        if pending is not None:
          _check_finite(pending, step)    # blocks on the previous step only
        step += 1
        pending = metrics
        window.append((metrics, skipped))
        is_eval = step >= next_eval or step == total
        is_log = step % config.log_every_steps == 0 or step == total
        is_save = is_eval or step % config.checkpoint_every_steps == 0
        if is_log or is_eval or is_save or preemption.requested:
          _check_finite(metrics, step)    # never log, evaluate or save a broken state
          pending = None
        if is_log:
          _log_window(writer, window, step, total, check.idle_seconds(window_first), window_start,
                      plan)
          window, window_start, window_first = [], time.perf_counter(), check.dispatched_steps
        paused_at = time.perf_counter()
        if is_eval:
          while next_eval <= step:
            next_eval += eval_every
          run_validation(step)
        if is_save or preemption.requested:   # a signal may arrive during validation
          save(step)
        run_paused += time.perf_counter() - paused_at
        if preemption.requested:
          manager.wait_until_finished()
          logging.warning('%s: saved step %d to %s; exiting', preemption.name, step, ckpt_dir)
          raise SystemExit(preemption.exit_code)
    if pending is not None:
      _check_finite(pending, step)
    run_steps = check.dispatched_steps - run_first if run_first is not None else 0
    if run_steps:
      jax.block_until_ready(state.step)
      seconds = time.perf_counter() - run_start - run_paused
      results['input'] = {'device_idle': check.idle_seconds(run_first) / seconds,
                          'host_wait': check.host_wait_seconds(run_first) / seconds,
                          'steps': run_steps, 'seconds': seconds,
                          'clips_per_s': run_steps * plan.clips_per_step / seconds}
      logging.info('input check: the device waited for data %.1f%% of %.1f s training over the last '
                   '%d steps (%.2f clips/s; the host waited %.1f%%, counting waits while the device '
                   'computed; the first step (compilation), evaluation and checkpoint saves excluded)%s',
                   100 * results['input']['device_idle'], seconds, run_steps,
                   results['input']['clips_per_s'], 100 * results['input']['host_wait'],
                   ': input-bound' if results['input']['device_idle'] > 0.1 else '')
      _write_json(results_path, results)
    if not results['history'] or results['history'][-1]['step'] != step:
      run_validation(step)
      save(step)
  finally:
    check.close()
    manager.wait_until_finished()
    manager.close()
    writer.close()
    close = getattr(train_iter, 'close', None)
    if close is not None:
      close()
  return {k: results[k] for k in ('step', 'epoch', 'top1', 'top5', 'mean_class_acc', 'num_videos',
                                  'wall_time_s')}


def _check_finite(metrics, step):
  """Raises TrainingError when optimizer step `step` (1-based) had a non-finite loss or gradient."""
  if not bool(jax.device_get(metrics['finite'])):
    loss, norm = jax.device_get((metrics['loss'], metrics['grad_norm']))
    raise TrainingError(f'non-finite loss {float(loss)} / gradient norm {float(norm)} at step '
                        f'{step}; the update was not applied and the run stops here (the '
                        'last checkpoint is intact; lower the lr or check the data)')


def _log_window(writer, window, step, total, input_idle, window_start, plan):
  """Logs the window's mean metrics, speed and device-idle time waiting for input (seconds)."""
  values = jax.device_get([m for m, _ in window])
  mean = {k: float(np.mean([v[k] for v in values])) for k in ('loss', 'top1', 'top5', 'grad_norm')}
  seconds = time.perf_counter() - window_start
  clips = len(window) * plan.clips_per_step
  mean.update(lr=float(values[-1]['lr']), clips_per_s=clips / seconds,
              input_idle=input_idle / seconds, skipped=sum(s for _, s in window))
  eta = (total - step) * seconds / len(window)
  logging.info('step %d/%d (epoch %.2f): loss %.4f top1 %.3f top5 %.3f lr %.5g grad norm %.3g | %.1f '
               'clips/s, idle on input %.0f%%, ETA %s', step, total, step / plan.steps_per_epoch,
               mean['loss'], mean['top1'], mean['top5'], mean['lr'], mean['grad_norm'],
               mean['clips_per_s'], 100 * mean['input_idle'], fileio.hms(eta))
  if mean['skipped']:
    logging.warning('%d unreadable videos replaced in the last %d steps', mean['skipped'], len(window))
  writer.scalars(step, {f'train/{k}': v for k, v in mean.items()})

