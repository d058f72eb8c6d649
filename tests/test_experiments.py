"""python -m rnl_jax.experiments.temporal: pair metrics, reports, and a tiny end-to-end run that resumes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from rnl_jax.experiments import temporal

from conftest import REPO

# The smallest runs that work (tests/test_train.py small_config): width-8 ResNet-18, 24/12 videos.
TINY = [
    '--config',
    'configs/tiny.py',
    '--epochs',
    '1',
    '--config_override',
    'model.width=8',
    'data.synthetic.num_train=24',
    'data.synthetic.num_val=12',
]


def test_pair_metrics_from_hand_made_logits():
  # K = 4: pairs (0, 1) and (2, 3).
  logits = np.array(
      [
          [3.0, 1.0, 0.0, 0.0],  # label 0: twin 1 below -> within; top-1 0 -> pair, top-1
          [
              3.0,
              1.0,
              0.0,
              0.0,
          ],  # label 1: twin 0 above -> not within; top-1 0 -> pair (order-blind)
          [0.0, 5.0, 1.0, 2.0],  # label 2: twin 3 above -> not within; top-1 1 -> wrong pair
          [0.0, 5.0, 1.0, 2.0],  # label 3: twin 2 below -> within; top-1 1 -> wrong pair
          [
              1.0,
              1.0,
              0.0,
              0.0,
          ],  # label 0: tie with twin -> not within; top-1 0 (first max) -> pair, top-1
      ]
  )
  m = temporal.pair_metrics(logits, np.array([0, 1, 2, 3, 0]))
  assert m == {'within_pair': 2 / 5, 'pair': 3 / 5, 'top1': 2 / 5, 'num_videos': 5}
  with pytest.raises(ValueError, match='K even'):
    temporal.pair_metrics(np.zeros((2, 3)), np.array([0, 1]))


def test_module_imports_neither_matplotlib_nor_jax():
  """matplotlib (the `experiments` extra) only when plotting; JAX only in the runs (and config checks)."""
  code = (
      'import sys, rnl_jax.experiments.temporal; '
      'assert "matplotlib" not in sys.modules and "jax" not in sys.modules, sorted(sys.modules)'
  )
  proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO)
  assert proc.returncode == 0, proc.stderr


def test_overrides_of_the_experiments_own_keys_are_refused():
  assert temporal.check_overrides(['model.width=8', '--config.optim.base_lr=0.1']) == [
      ('model.width', '8'),
      ('optim.base_lr', '0.1'),
  ]
  for item in ('model.variant=tsm', 'seed=3', 'num_epochs=2', 'test.crops=3', 'data.root=/x'):
    with pytest.raises(ValueError, match='set by the experiment'):
      temporal.check_overrides([item])
  with pytest.raises(ValueError, match='key=value'):
    temporal.check_overrides(['model.width'])


def test_variants_and_seeds():
  got = temporal._variants_and_seeds(['tsn', ' rnl', ''], ['0', ' -1 '])
  assert got == (['tsn', 'rnl'], [0, -1])
  bad = ((['tsn', 'lstm'], ['0']), (['tsn'], ['x']), ([' '], ['0']), (['tsm'], []))
  for variants, seeds in bad:
    with pytest.raises(temporal.ExperimentError, match='variants from .*, seeds integers'):
      temporal._variants_and_seeds(variants, seeds)


def _run(variant, seed, top1s, within):
  curve = [{'step': 75 * (i + 1), 'epoch': float(i + 1), 'top1': t} for i, t in enumerate(top1s)]
  return {
      'run': temporal.run_name(variant, seed),
      'variant': variant,
      'seed': seed,
      'top1': top1s[-1],
      'best_top1': max(top1s),
      'best_step': 75,
      'step': 75 * len(top1s),
      'within_pair': within,
      'pair': 0.9,
      'scores_top1': max(top1s),
      'num_videos': 480,
      'wall_s': None,
      'curve': curve,
  }


def test_reports_of_three_variants(tmp_path):
  runs = [
      _run('tsn', 0, [0.1, 0.4], 0.50),
      _run('tsn', 1, [0.1, 0.5], 0.52),
      _run('tsm', 0, [0.2, 0.7], 0.90),
      _run('tsm', 1, [0.3, 0.8], 0.94),
      _run('rnl', 0, [0.3, 0.9], 0.97),
  ]
  variants = temporal.summarize(runs, ['tsn', 'tsm', 'rnl'])
  assert variants['tsm']['top1_mean'] == pytest.approx(0.75)
  assert variants['tsm']['top1_std'] == pytest.approx(np.std([0.7, 0.8], ddof=1))
  assert variants['rnl']['within_pair_std'] == 0.0 and variants['rnl']['runs'] == 1
  report = {
      'settings': {
          'config': 'configs/synthetic.py',
          'config_overrides': [],
          'epochs': 2.0,
          'eval_every_epochs': 1.0,
          'steps': 150,
          'num_train': 2400,
          'num_val': 480,
          'data_seed': 0,
      },
      'chance': {'top1': 1 / 12, 'within_pair': 0.5, 'pair': 1 / 6},
      'variants': variants,
      'runs': runs,
  }
  temporal.write_markdown(str(tmp_path / 'temporal.md'), report)
  md = (tmp_path / 'temporal.md').read_text()
  assert '| TSM | 75.0 ± 7.1 % | 92.0 ± 2.8 % | 90.0 ± 0.0 % | 2 (seeds 0, 1) |' in md
  assert '| tsn_s1 | 50.0 % | 50.0 % (75) | 52.0 % | 90.0 % | - |' in md
  temporal.plot(str(tmp_path / 'temporal.png'), report)
  assert (tmp_path / 'temporal.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_end_to_end_skips_finished_runs(tmp_path, capsys, monkeypatch):
  """Two tiny runs (TSN, TSM), then the same command again (nothing retrained), then another budget in
  the same workdir (refused). The runs compile without LLVM optimisation: XLA:CPU takes ~50 s (2 busy
  cores) to optimise even the tiny model's init program, 5 s without; this checks plumbing, not numbers.
  """
  monkeypatch.setenv(
      'XLA_FLAGS', f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0"
  )
  workdir = str(tmp_path / 'exp')
  args = ['--workdir', workdir, '--variants', 'tsn,tsm', '--seeds', '0', *TINY]
  first = temporal.main(args)
  results = os.path.join(workdir, 'tsn_s0', 'results.json')
  scores = os.path.join(workdir, 'tsn_s0', 'val_scores.npz')
  mtimes = os.path.getmtime(results), os.path.getmtime(scores)
  with open(os.path.join(workdir, 'temporal.json')) as f:
    saved = json.load(f)
  assert saved == json.loads(json.dumps(first))
  assert [(r['run'], r['variant'], r['seed']) for r in saved['runs']] == [
      ('tsn_s0', 'tsn', 0),
      ('tsm_s0', 'tsm', 0),
  ]
  assert saved['settings']['steps'] == 3 and list(saved['variants']) == ['tsn', 'tsm']
  assert saved['variants']['tsm']['runs'] == 1 and saved['variants']['tsm']['top1_std'] == 0.0
  for r in saved['runs']:
    assert r['step'] == 3 and r['num_videos'] == 12 and [p['epoch'] for p in r['curve']] == [1.0]
    assert r['scores_top1'] == pytest.approx(r['best_top1'])  # the test view is the validation view
    assert 0.0 <= r['within_pair'] <= 1.0 and r['wall_s'] > 0
  with np.load(scores) as z:
    assert z['logits'].shape == (12, 12)
    within = temporal.pair_metrics(z['logits'], z['labels'])['within_pair']
  assert within == saved['runs'][0]['within_pair']
  md = open(os.path.join(workdir, 'temporal.md')).read()
  assert (
      '| TSN (no shift) |' in md
      and '| TSM |' in md
      and '| 1 (seeds 0) |' in md
      and '| tsm_s0 |' in md
  )
  assert open(os.path.join(workdir, 'temporal.png'), 'rb').read(4) == b'\x89PNG'
  capsys.readouterr()

  # The same command again: the finished run is neither retrained nor re-scored; same report.
  again = temporal.main(args)
  assert (os.path.getmtime(results), os.path.getmtime(scores)) == mtimes
  out = capsys.readouterr().out
  assert '[1/2] tsn_s0: finished before, skipped' in out and '[2/2] tsm_s0: finished before' in out
  assert again['runs'] == first['runs']

  # Another budget in the same workdir: refused before anything runs, naming the key.
  with pytest.raises(SystemExit):
    temporal.main([*args, '--epochs', '2'])
  assert 'num_epochs: 1.0 there, 2.0 now' in capsys.readouterr().err
  assert os.path.getmtime(results) == mtimes[0]
