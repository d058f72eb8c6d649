"""Temporal reasoning: TSN (no shift) vs TSM vs TSM + RNL on the synthetic time-reversed pairs.

    python -m rnl_jax.experiments.temporal --workdir DIR [--variants tsn,tsm,rnl] [--seeds 0,1,2]
        [--epochs 10] [--eval_every_epochs 1] [--config configs/synthetic.py]
        [--config_override key=value ...] [--xla_cache PATH]

Every variant x seed is one `python main.py` run in DIR/<variant>_s<seed> with the same config (the
--config file, then --config_override), `model.variant=<variant>`, `seed=<seed>` (the training seed:
init, data order, augmentation), `num_epochs` and `eval_every_epochs` as given and one shared dataset
in DIR/data (generated on first use; its seed `data.synthetic.seed` does not follow `seed`, so every
run sees the same videos). After training, the run's best checkpoint (by val top-1) goes through the
test protocol with the validation view (1 clip of TSN segment centres x 1 centre crop:
`--config.mode=test`, written to DIR/<run>/val_scores.npz) to get per-video logits, from which:

  within-pair accuracy  fraction of val videos whose true class's logit is above its twin's (label ^ 1:
                        classes 2k and 2k + 1 are each other's time reversal, rnl_jax.data.synthetic)
  pair accuracy         fraction whose top-1 class is in the right pair (order-blind), for context

Chance: 1/12 top-1, 1/2 within pair, 1/6 pair. An order-blind model (TSN averages per-frame scores)
sees a video and its reversed twin as the same multiset of frames, so it is at chance within a pair.
That is exact for TSN's training sampling (so TSN has no direction signal to learn); the validation view
of configs/synthetic.py (4 segment centres of 24 frames, 6 per segment: even) is not symmetric under
reversal (frames 3, 9, 15, 21 (0-based) vs the twin's 20, 14, 8, 2 of the forward clip; see
rnl_jax.data.synthetic), so TSN's within-pair accuracy is ~50 % up to seed noise, not exactly 50 %.
The data is left as it is.

Outputs in DIR:
  temporal.json   per run: variant, seed, final val top-1, best val top-1 and its step, within-pair and
                  pair accuracy (best checkpoint), wall seconds, the validation curve; per variant:
                  mean and std (sample std, ddof=1; 0 for one seed) over seeds; the settings
  temporal.md     the table: variant | val top-1 | within-pair | pair (mean +- std) | runs, and per run
  temporal.png    val top-1 vs epoch (one colour per variant, thin line per seed, thick mean, chance)
                  and within-pair accuracy per run (matplotlib, imported only here)
  <run>/          the run's workdir (main.py's layout), train.log and test.log (its output), timing.json

Runs are subprocesses (`python main.py`, one for training, one for the test protocol), not in-process
calls: each starts with clean XLA/grain/orbax state (nothing accumulates over 9 runs), a crash names
its run and leaves its log, an interrupted run resumes from its last checkpoint, and a run is exactly
the documented command (its log starts with it). Process start is ~5 s; compiled programs are shared
through a persistent XLA cache (DIR/xla_cache unless JAX_COMPILATION_CACHE_DIR or --xla_cache say
otherwise), so the seeds of a variant compile the init, training and evaluation programs once.

Resumable: a run whose results.json reached the run's total steps is not trained again, one with
checkpoints resumes from its latest, and a finished run's scores are reused. A run directory made with
a different config (e.g. another --epochs) is an error naming the differing keys; use another --workdir.

Budget (defaults: 10 epochs of 75 steps of 32 clips, an evaluation every epoch): on an idle 2-core CPU
RNL trains at ~0.14 s/step with data loading (measured on the main job; TSN/TSM a bit less), so 9 runs
take ~9 x (105 s training + 10 x ~3 s evaluation + ~45 s process starts, compilation and the test
protocol; the last two are estimates) = ~27 min, less with the shared compilation cache. `--epochs 8`
gives ~23 min. With the 20-epoch recipe (configs/synthetic.py) RNL
reaches ~79 % val top-1 after 10 epochs and ~85 % after 20; a 10-epoch run has its own (shorter)
cosine schedule.
"""

import collections
import json
import math
import os
import pathlib
import subprocess
import sys
import time
import warnings

import numpy as np

from rnl_jax import cli
from rnl_jax import fileio
from rnl_jax.errors import UserError

VARIANTS = ('tsn', 'tsm', 'rnl')
LABELS = {'tsn': 'TSN (no shift)', 'tsm': 'TSM', 'rnl': 'TSM + RNL'}
COLOURS = {'tsn': 'C0', 'tsm': 'C1', 'rnl': 'C2'}
DEFAULT_EPOCHS = 10.0
DEFAULT_EVAL_EVERY = 1.0
# Keys the experiment sets itself (not --config_override): per run, the budget, and the test protocol.
CONTROLLED = (
    'mode',
    'seed',
    'model.variant',
    'data.root',
    'num_epochs',
    'num_train_steps',
    'eval_every_epochs',
    'test.',
)
# Time model of the budget estimate (configs/synthetic.py, idle 2-core CPU): STEP_S measured on the main
# job, EVAL_S (480 videos, checkpoint saves) and RUN_OVERHEAD_S (2 processes, compiles, test) estimated.
STEP_S = 0.14
EVAL_S = 3.0
RUN_OVERHEAD_S = 45.0

REPO = pathlib.Path(__file__).resolve().parents[2]
MAIN = REPO / 'main.py'


class RunFailed(RuntimeError):
  """A main.py subprocess failed; the message names the run and shows the end of its log."""


class ExperimentError(UserError, ValueError):
  """Options or a work directory the experiment cannot use; the message names the option or run."""


# ----------------------------------------------------------------------------------------------------
# metrics


def pair_metrics(logits, labels):
  """Within-pair, pair and top-1 accuracy of per-video logits [N, K] (K even) against labels [N].

  within_pair: logits[i, y] > logits[i, y ^ 1] (strictly: a tie is not a decision); pair: the top-1
  class (lowest index on ties) is y or y ^ 1.
  """
  logits, labels = np.asarray(logits, np.float64), np.asarray(labels, np.int64)
  if logits.ndim != 2 or logits.shape[1] % 2 or logits.shape[0] != labels.shape[0]:
    raise ValueError(
        f'logits {logits.shape} / labels {labels.shape}: expected [N, K] with K even and N '
        'labels'
    )
  n = labels.shape[0]
  rows = np.arange(n)
  top = np.argmax(logits, axis=1)
  return {
      'within_pair': float(np.mean(logits[rows, labels] > logits[rows, labels ^ 1]))
      if n
      else math.nan,
      'pair': float(np.mean(top // 2 == labels // 2)) if n else math.nan,
      'top1': float(np.mean(top == labels)) if n else math.nan,
      'num_videos': int(n),
  }


def mean_std(values):
  values = np.asarray(values, np.float64)
  return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0


# ----------------------------------------------------------------------------------------------------
# configs and runs


def run_name(variant, seed):
  return f'{variant}_s{seed}'


def check_overrides(overrides):
  """key=value strings -> [(key, value)]; the experiment's own keys are refused."""
  pairs = []
  for item in overrides:
    key, sep, value = item.partition('=')
    key = key.strip().removeprefix('--config.').removeprefix('config.')
    if not sep or not key:
      raise ExperimentError(f'--config_override {item!r}: expected key=value (e.g. model.width=8)')
    if any(key == c or (c.endswith('.') and key.startswith(c)) for c in CONTROLLED):
      raise ExperimentError(
          f'--config_override {key}: set by the experiment (variants, seeds, '
          '--epochs, --eval_every_epochs, the data root and the test protocol '
          'are its own options)'
      )
    pairs.append((key, value))
  return pairs


def run_flags(variant, seed, args, overrides):
  """The `--config.*` flags of one run (training); the same list builds the config here."""
  flags = [f'--config.{k}={v}' for k, v in overrides]
  flags += [
      f'--config.model.variant={variant}',
      f'--config.seed={seed}',
      f'--config.data.root={os.path.join(args.workdir, "data")}',
      f'--config.num_epochs={args.epochs}',
      f'--config.eval_every_epochs={args.eval_every_epochs}',
  ]
  return flags


def test_flags(config):
  """The test protocol = the validation view: 1 clip (segment centres) x 1 centre crop of image_size.

  `views_per_step` = the training eval batch (1 view per video there too), so the eval program is the
  one training compiled (persistent cache); it bounds memory only, never the result.
  """
  return [
      '--config.mode=test',
      '--config.test.crops=1',
      '--config.test.twice_sample=False',
      '--config.test.full_res=False',
      '--config.test.output=val',
      '--config.test.checkpoint=',
      f'--config.test.views_per_step={config.eval_batch_size}',
  ]


def load_config(config_file, flags):
  """The config main.py builds from `--config=config_file` + `flags` (same parser, same values)."""
  from absl import flags as absl_flags  # pylint: disable=import-outside-toplevel
  from ml_collections import config_flags as cf  # pylint: disable=import-outside-toplevel

  if str(REPO) not in sys.path:  # recipes import `configs.default` (beside main.py)
    sys.path.insert(0, str(REPO))
  argv = ['temporal', f'--config={config_file}', *flags]
  fv = absl_flags.FlagValues()
  with warnings.catch_warnings():  # ml_collections loads the file with the deprecated load_module
    warnings.simplefilter('ignore', DeprecationWarning)
    cf.DEFINE_config_file(
        'config', config_file, 'Config file.', flag_values=fv, lock_config=True, sys_argv=argv
    )
    fv(argv)
  return fv['config'].value


def _flat(d, prefix=''):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def run_state(run_dir, config):
  """'new' | 'partial' | 'done' for a run directory; ValueError if it was made with another config."""
  config_path = os.path.join(run_dir, 'config.json')
  if not os.path.exists(config_path):
    return 'new'
  with open(config_path) as f:
    saved = json.load(f)
  want = _flat(json.loads(json.dumps(config.to_dict())))
  have = _flat(saved['config'])
  diff = sorted(
      k for k in set(want) | set(have) if want.get(k, '<unset>') != have.get(k, '<unset>')
  )
  if diff:
    shown = ', '.join(
        f'{k}: {have.get(k, "<unset>")!r} there, {want.get(k, "<unset>")!r} now' for k in diff[:5]
    )
    raise ExperimentError(
        f'{run_dir} was made with another config ({shown}'
        f'{", ..." if len(diff) > 5 else ""}); use another --workdir or delete '
        'that run'
    )
  results_path = os.path.join(run_dir, 'results.json')
  if os.path.exists(results_path):
    with open(results_path) as f:
      if json.load(f).get('step') == saved['derived']['num_train_steps']:
        return 'done'
  return 'partial'


def scores_fresh(run_dir):
  """The run's val_scores.npz exists and is newer than its last evaluation."""
  scores = os.path.join(run_dir, 'val_scores.npz')
  results = os.path.join(run_dir, 'results.json')
  return os.path.exists(scores) and os.path.getmtime(scores) >= os.path.getmtime(results)


def run_main(name, run_dir, config_file, flags, log_name, env):
  """`python main.py --config=... --workdir=run_dir flags` with its output in run_dir/log_name."""
  cmd = [sys.executable, str(MAIN), f'--config={config_file}', f'--workdir={run_dir}', *flags]
  os.makedirs(run_dir, exist_ok=True)
  log_path = os.path.join(run_dir, log_name)
  start = time.perf_counter()
  with open(log_path, 'a') as log:
    log.write(f'$ {" ".join(cmd)}\n')
    log.flush()
    rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, check=False).returncode
  if rc != 0:
    with open(log_path, errors='replace') as f:
      tail = ''.join(f.readlines()[-25:])
    raise RunFailed(f'{name}: main.py exited with status {rc}; the end of {log_path}:\n{tail}')
  return time.perf_counter() - start


def estimate_seconds(config):
  """A priori wall time of one run (the time model of the module docstring)."""
  steps = math.ceil(
      config.num_epochs
      * config.data.synthetic.num_train
      / (config.batch_size * config.batch_multiplier)
  )
  evals = math.ceil(config.num_epochs / config.eval_every_epochs) if config.eval_every_epochs else 1
  return RUN_OVERHEAD_S + steps * STEP_S + evals * EVAL_S


def collect(run_dir, variant, seed):
  """The per-run record of temporal.json from the run's files."""
  with open(os.path.join(run_dir, 'results.json')) as f:
    results = json.load(f)
  with np.load(os.path.join(run_dir, 'val_scores.npz')) as z:
    m = pair_metrics(z['logits'], z['labels'])
  timing = {'train_s': None, 'test_s': None}
  if os.path.exists(os.path.join(run_dir, 'timing.json')):
    with open(os.path.join(run_dir, 'timing.json')) as f:
      timing.update(json.load(f))
  history = results['history']
  best = max(history, key=lambda h: h['top1'])  # first of the maxima: the one `best/` holds
  return {
      'run': run_name(variant, seed),
      'variant': variant,
      'seed': seed,
      'top1': results['top1'],
      'best_top1': best['top1'],
      'best_step': best['step'],
      'step': results['step'],
      'within_pair': m['within_pair'],
      'pair': m['pair'],
      'scores_top1': m['top1'],
      'num_videos': m['num_videos'],
      'wall_s': None if None in timing.values() else timing['train_s'] + timing['test_s'],
      'curve': [{'step': h['step'], 'epoch': h['epoch'], 'top1': h['top1']} for h in history],
  }


def summarize(runs, variants):
  out = {}
  for v in variants:
    rs = [r for r in runs if r['variant'] == v]
    if not rs:
      continue
    s = {'runs': len(rs), 'seeds': [r['seed'] for r in rs]}
    for key in ('top1', 'best_top1', 'within_pair', 'pair'):
      s[f'{key}_mean'], s[f'{key}_std'] = mean_std([r[key] for r in rs])
    out[v] = s
  return out


# ----------------------------------------------------------------------------------------------------
# reports


def _pct(mean, std=None):
  return f'{100 * mean:.1f} %' if std is None else f'{100 * mean:.1f} ± {100 * std:.1f} %'


def write_markdown(path, report):
  s, chance = report['settings'], report['chance']
  lines = [
      '# Temporal reasoning: TSN vs TSM vs TSM + RNL on time-reversed pairs',
      '',
      f"`{s['config']}`{''.join(f' `{o}`' for o in s['config_overrides'])}, {s['epochs']:g} epochs "
      f"({s['steps']} steps), validation every {s['eval_every_epochs']:g} epochs; "
      f"{s['num_train']} train / {s['num_val']} val videos (data seed {s['data_seed']}). "
      f'Mean ± std over seeds (sample std).',
      '',
      '| variant | val top-1 | within-pair | pair | runs |',
      '|---|---|---|---|---|',
  ]
  for v, m in report['variants'].items():
    lines.append(
        f"| {LABELS[v]} | {_pct(m['top1_mean'], m['top1_std'])} | "
        f"{_pct(m['within_pair_mean'], m['within_pair_std'])} | "
        f"{_pct(m['pair_mean'], m['pair_std'])} "
        f"| {m['runs']} (seeds {', '.join(map(str, m['seeds']))}) |"
    )
  lines += [
      '',
      f"Chance: top-1 {_pct(chance['top1'])}, within-pair {_pct(chance['within_pair'])}, pair "
      f"{_pct(chance['pair'])}. val top-1: the last evaluation. Within-pair (the true class's logit above "
      "its time-reversed twin's) and pair (top-1 in the right pair, order-blind): the best checkpoint by "
      'val top-1, on the same validation view (1 clip x 1 centre crop).',
      '',
      '| run | val top-1 | best top-1 (step) | within-pair | pair | wall |',
      '|---|---|---|---|---|---|',
  ]
  for r in report['runs']:
    wall = '-' if r['wall_s'] is None else f"{r['wall_s']:.0f} s"
    lines.append(
        f"| {r['run']} | {_pct(r['top1'])} | {_pct(r['best_top1'])} ({r['best_step']}) | "
        f"{_pct(r['within_pair'])} | {_pct(r['pair'])} | {wall} |"
    )
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')


def plot(path, report):
  """temporal.png: val top-1 vs epoch per variant (seeds thin, mean thick) and within-pair per run."""
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel  (optional dependency)

  fig = Figure(figsize=(11, 4.2), layout='constrained')
  ax, bx = fig.subplots(1, 2, width_ratios=(2, 1))
  variants = list(report['variants'])
  for v in variants:
    runs = [r for r in report['runs'] if r['variant'] == v]
    by_epoch = {}
    for r in runs:
      e = [p['epoch'] for p in r['curve']]
      t = [p['top1'] for p in r['curve']]
      ax.plot(e, t, color=COLOURS[v], lw=0.8, alpha=0.5)
      for ep, top in zip(e, t):
        by_epoch.setdefault(round(ep, 6), []).append(top)
    epochs = sorted(k for k, vals in by_epoch.items() if len(vals) == len(runs))
    ax.plot(
        epochs,
        [np.mean(by_epoch[k]) for k in epochs],
        color=COLOURS[v],
        lw=2.5,
        marker='o',
        ms=3,
        label=f'{LABELS[v]} (mean of {len(runs)})',
    )
    xs = [variants.index(v) + (i - (len(runs) - 1) / 2) * 0.08 for i in range(len(runs))]
    bx.scatter(xs, [r['within_pair'] for r in runs], color=COLOURS[v], s=18, alpha=0.7)
    bx.hlines(
        report['variants'][v]['within_pair_mean'],
        variants.index(v) - 0.25,
        variants.index(v) + 0.25,
        color=COLOURS[v],
        lw=2.5,
    )
  chance = report['chance']
  ax.axhline(chance['top1'], color='grey', ls='--', lw=1, label=f"chance ({chance['top1']:.3f})")
  ax.set(xlabel='epoch', ylabel='val top-1', ylim=(0, 1), title='validation top-1')
  ax.set_xlim(left=0)
  ax.grid(alpha=0.3)
  ax.legend(loc='upper left', fontsize=8)
  bx.axhline(chance['within_pair'], color='grey', ls='--', lw=1, label='chance (0.5)')
  bx.set(
      xticks=range(len(variants)),
      xticklabels=[LABELS[v] for v in variants],
      ylim=(0, 1),
      xlim=(-0.6, len(variants) - 0.4),
      ylabel='within-pair accuracy',
      title='within-pair (best checkpoint)',
  )
  bx.grid(alpha=0.3, axis='y')
  bx.legend(loc='lower right', fontsize=8)
  fig.savefig(path, dpi=120)


# ----------------------------------------------------------------------------------------------------
# the experiment


def _log(msg):
  print(f'[temporal {time.strftime("%H:%M:%S")}] {msg}', flush=True)


def _child_env(args):
  env = dict(os.environ)
  cache = args.xla_cache
  if cache is None:
    cache = env.get('JAX_COMPILATION_CACHE_DIR') or os.path.join(args.workdir, 'xla_cache')
  if cache:
    env['JAX_COMPILATION_CACHE_DIR'] = os.path.abspath(cache)
  else:
    env.pop('JAX_COMPILATION_CACHE_DIR', None)
  return env


class _Run(collections.namedtuple('_Run', 'variant seed name run_dir config flags')):
  """One planned run: its variant and seed, its name and directory, its config and main.py flags."""


def run_experiment(args):
  """Trains / evaluates what is missing, then writes temporal.json, .md and .png; returns the
  report.

  Phases: check the arguments, plan every run (configs checked, run directories compared with them
  before anything runs), run what is missing, then report.
  """
  args.workdir = os.path.abspath(args.workdir)
  overrides = check_overrides(args.config_override)
  variants, seeds = _variants_and_seeds(args.variants, args.seeds)
  if not MAIN.is_file():
    raise FileNotFoundError(f'{MAIN} not found: run from a checkout of the repository')
  config_file = args.config if os.path.exists(args.config) else str(REPO / args.config)
  config_file = os.path.abspath(config_file)
  plan = _plan_runs(variants, seeds, args, overrides, config_file)
  runs = _run_all(plan, args, config_file, variants, seeds)
  report = _report(args, plan[0].config, runs, config_file, overrides, variants, seeds)
  _write_reports(args.workdir, report)
  return report


def _variants_and_seeds(variant_args, seed_args):
  """(variants, int seeds) of the --variants / --seeds items (blank items dropped); an
  ExperimentError naming both flags for an unknown variant, a non-integer seed or an empty list."""
  variants = [v.strip() for v in variant_args if v.strip()]  # lists (parse_args)
  seeds = [s.strip() for s in seed_args if s.strip()]
  bad = [v for v in variants if v not in VARIANTS] + [
      s for s in seeds if not s.lstrip('-').isdigit()
  ]
  seeds = [int(s) for s in seeds] if not bad else []
  if bad or not variants or not seeds:
    raise ExperimentError(
        f'--variants {",".join(variant_args)!r} / --seeds '
        f'{",".join(seed_args)!r}: variants from {VARIANTS}, seeds integers, '
        'at least one of each'
    )
  return variants, seeds


def _plan_runs(variants, seeds, args, overrides, config_file):
  """The `_Run`s, variant-major; every config is built and validated first, so a bad override or a
  non-synthetic dataset fails before any run starts."""
  from rnl_jax import config as config_lib  # pylint: disable=import-outside-toplevel

  plan = []
  for v in variants:
    for s in seeds:
      flags = run_flags(v, s, args, overrides)
      config = load_config(config_file, flags)
      config_lib.validate(config)
      if config.data.name != 'synthetic' or config.data.num_classes % 2:
        raise ExperimentError(
            f'config.data.name={config.data.name!r}: the experiment needs the '
            'synthetic time-reversed pairs (data.name=synthetic)'
        )
      name = run_name(v, s)
      plan.append(_Run(v, s, name, os.path.join(args.workdir, name), config, flags))
  return plan


def _run_all(plan, args, config_file, variants, seeds):
  """Runs (trains and/or tests) every run of the plan that is not finished, logging progress and an
  ETA; returns every run's `collect` record in plan order."""
  # Every run directory is checked before anything runs (a config mismatch fails first).
  states = {p.name: run_state(p.run_dir, p.config) for p in plan}
  todo = [p for p in plan if states[p.name] != 'done' or not scores_fresh(p.run_dir)]
  estimate = {p.name: estimate_seconds(p.config) for p in plan}
  _log(
      f'{len(plan)} runs ({", ".join(variants)} x seeds {", ".join(map(str, seeds))}) in '
      f'{args.workdir}: {len(plan) - len(todo)} finished, {len(todo)} to do; estimate '
      f'{fileio.hms(round(sum(estimate[p.name] for p in todo)))} '
      'on an idle 2-core CPU'
  )
  env = _child_env(args)
  os.makedirs(args.workdir, exist_ok=True)
  measured = []  # wall seconds of the runs trained in this invocation
  runs = []
  for i, p in enumerate(plan):
    tag = f'[{i + 1}/{len(plan)}] {p.name}'
    if states[p.name] == 'done' and scores_fresh(p.run_dir):
      runs.append(collect(p.run_dir, p.variant, p.seed))
      _log(f'{tag}: finished before, skipped')
      continue
    trained, seconds = _run_one(p, states[p.name], tag, config_file, env)
    if trained:
      measured.append(seconds)
    r = collect(p.run_dir, p.variant, p.seed)
    runs.append(r)
    left = [q for q in todo if q.name not in {done['run'] for done in runs}]
    eta = (np.mean(measured) if measured else estimate[p.name]) * len(left)
    _log(
        f"{tag}: val top-1 {r['top1']:.4f} (best {r['best_top1']:.4f} at step {r['best_step']}), "
        f"within-pair {r['within_pair']:.4f}, pair {r['pair']:.4f} ({seconds:.0f} s); "
        f'{len(left)} runs left, ETA {fileio.hms(round(eta))}'
    )
  return runs


def _run_one(run, state, tag, config_file, env):
  """Trains the run unless it reached its steps (`state` 'done'), then runs the test protocol on its
  best checkpoint; adds the times to its timing.json. Returns (trained, wall seconds)."""
  timing_path = os.path.join(run.run_dir, 'timing.json')
  timing = {'train_s': 0.0, 'test_s': 0.0}
  if os.path.exists(timing_path):
    with open(timing_path) as f:
      timing.update(json.load(f))
  start = time.perf_counter()
  trained = state != 'done'
  if trained:
    _log(
        f'{tag}: training ({"resuming" if state == "partial" else "new"}, '
        f'{run.config.num_epochs:g} epochs) -> {run.run_dir}/train.log'
    )
    timing['train_s'] += run_main(run.name, run.run_dir, config_file, run.flags, 'train.log', env)
  test = run.flags + test_flags(run.config)
  timing['test_s'] = run_main(run.name, run.run_dir, config_file, test, 'test.log', env)
  with open(timing_path, 'w') as f:
    json.dump(timing, f)
  return trained, time.perf_counter() - start


def _report(args, c, runs, config_file, overrides, variants, seeds):
  """The report (temporal.json): the settings (from the first run's config `c`), chance levels, the
  per-variant summaries over seeds and every run."""
  return {
      'settings': {
          'config': os.path.relpath(config_file, REPO)
          if config_file.startswith(str(REPO))
          else config_file,
          'config_overrides': [f'{k}={v}' for k, v in overrides],
          'epochs': args.epochs,
          'eval_every_epochs': args.eval_every_epochs,
          'steps': runs[0]['step'],
          'num_train': c.data.synthetic.num_train,
          'num_val': c.data.synthetic.num_val,
          'data_seed': c.data.synthetic.seed,
          'variants': variants,
          'seeds': seeds,
      },
      'chance': {
          'top1': 1 / c.data.num_classes,
          'within_pair': 0.5,
          'pair': 2 / c.data.num_classes,
      },
      'variants': summarize(runs, variants),
      'runs': runs,
  }


def _write_reports(workdir, report):
  """Writes temporal.json, temporal.md and temporal.png into `workdir`; logs each variant's line."""
  with open(os.path.join(workdir, 'temporal.json'), 'w') as f:
    json.dump(report, f, indent=1)
  write_markdown(os.path.join(workdir, 'temporal.md'), report)
  plot(os.path.join(workdir, 'temporal.png'), report)
  for v, m in report['variants'].items():
    _log(
        f"{LABELS[v]}: val top-1 {_pct(m['top1_mean'], m['top1_std'])}, within-pair "
        f"{_pct(m['within_pair_mean'], m['within_pair_std'])}, "
        f"pair {_pct(m['pair_mean'], m['pair_std'])} ({m['runs']} runs)"
    )
  _log(f'wrote {workdir}/temporal.json, temporal.md, temporal.png')


def parse_args(argv=None):
  parser = cli.ArgumentParser(
      prog='python -m rnl_jax.experiments.temporal', description=__doc__.split('\n', 1)[0]
  )
  parser.add_argument('--workdir', required=True, help='experiment directory (runs, data, reports)')
  parser.add_argument(
      '--variants',
      type=cli.comma_list(str),
      nargs='+',
      default=None,
      help='tsn, tsm, rnl: `tsn,tsm` or `tsn tsm` (default: all three)',
  )
  parser.add_argument(
      '--seeds',
      type=cli.comma_list(str),
      nargs='+',
      default=None,
      help='training seeds: `0,1,2` or `0 1 2` (the default)',
  )
  parser.add_argument(
      '--epochs', type=float, default=DEFAULT_EPOCHS, help='training epochs per run'
  )
  parser.add_argument(
      '--eval_every_epochs',
      type=float,
      default=DEFAULT_EVAL_EVERY,
      help='validation interval (the curve), in epochs',
  )
  parser.add_argument(
      '--config',
      default='configs/synthetic.py',
      help='config file (relative to the current directory or the repository)',
  )
  parser.add_argument(
      '--config_override',
      nargs='+',
      action='extend',
      default=[],
      metavar='KEY=VALUE',
      help='config values for every run, as main.py --config.KEY=VALUE',
  )
  parser.add_argument(
      '--xla_cache',
      default=None,
      help='persistent XLA compilation cache of the runs (default: '
      "$JAX_COMPILATION_CACHE_DIR or WORKDIR/xla_cache; '' = none)",
  )
  args = parser.parse_args(argv)
  args.variants = cli.flatten_lists(args.variants) if args.variants else list(VARIANTS)
  args.seeds = cli.flatten_lists(args.seeds) if args.seeds else ['0', '1', '2']
  return args


def main(argv=None):
  args = parse_args(argv)
  with cli.user_errors(args.debug):  # ExperimentError: `error: ..`, 2
    try:
      return run_experiment(args)
    except RunFailed as e:  # the run's own log tail says why; exit status 1 as before
      print(f'error: {e}', file=sys.stderr)
      raise SystemExit(1) from None


if __name__ == '__main__':
  main()
