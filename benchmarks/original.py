"""The original PyTorch code's own speed on this machine, from a checkout of it, to time beside rnl-jax.

  git clone https://github.com/russellllaputa/region-based-non-local-network /tmp/rnl-original
  python -m venv /tmp/venv-original && /tmp/venv-original/bin/pip install torch torchvision
  /tmp/venv-original/bin/python benchmarks/original.py --checkout /tmp/rnl-original
      [--variants tsm,rnl] [--modes train,eval] [--threads 2] [--steps 5] [--train_batch 2]

Runs in its own virtualenv (the original imports torchvision, which rnl-jax does not install) and
imports nothing of rnl-jax or JAX. It builds the original's `ops.models.TSN` the way its main.py
does for Kinetics: ResNet-50, 8 segments, temporal shift 'blockres' with 1/8 of the channels,
region non-local blocks for `rnl` (none for `tsm`), dropout 0.5, average consensus, random init;
partial BN off, so that every BatchNorm trains, as in `rnl_jax.train`. Cases:

  train  forward, cross-entropy, backward, clip_grad_norm_(20), SGD (momentum 0.9, weight decay
         5e-4, the original's parameter groups) on --train_batch random clips [B, 3T, 224, 224]
  eval   forward of one clip under torch.no_grad(), model.eval()

Each case prints one JSON line (median of --steps after one warm-up, every time, torch version,
threads). Time rnl-jax in the same session with `python -m benchmarks.train_step --config
configs/k400_8f.py --batch 2 --variant tsm|rnl` (docs/performance.md, "Against the original's own
code").

The original's ops/rnl.py imports a package `archs` that the repository does not ship, only for an
isinstance check; an empty stand-in goes on sys.path. Nothing of the original is copied here.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time


def import_tsn(checkout, stand_in_dir):
  """The original's `ops.models.TSN` class, imported from `checkout`; `stand_in_dir` receives an
  empty `archs.small_resnet.ResNet` for ops/rnl.py's isinstance check."""
  if not os.path.isfile(os.path.join(checkout, 'ops', 'models.py')):
    raise SystemExit(f'--checkout {checkout}: no ops/models.py there (clone the original first)')
  os.makedirs(os.path.join(stand_in_dir, 'archs'))
  with open(os.path.join(stand_in_dir, 'archs', '__init__.py'), 'w') as f:
    f.write('from . import small_resnet\n')
  with open(os.path.join(stand_in_dir, 'archs', 'small_resnet.py'), 'w') as f:
    f.write('class ResNet:\n  pass\n')
  sys.path[:0] = [checkout, stand_in_dir]
  from ops.models import TSN  # pylint: disable=import-outside-toplevel

  return TSN


def build(tsn, variant, frames):
  """The original's TSN for `variant` ('tsm' or 'rnl')."""
  return tsn(
      400,
      frames,
      'RGB',
      base_model='resnet50',
      consensus_type='avg',
      dropout=0.5,
      partial_bn=False,
      pretrain='none',
      is_shift=True,
      shift_div=8,
      shift_place='blockres',
      non_local=variant == 'rnl',
      print_spec=False,
  )


def _median_of(fn, steps):
  times = []
  for _ in range(steps + 1):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times[1:]), times


def train_case(model, batch, frames, steps):
  import torch  # pylint: disable=import-outside-toplevel

  optimizer = torch.optim.SGD(model.get_optim_policies(), 0.01, momentum=0.9, weight_decay=5e-4)
  criterion = torch.nn.CrossEntropyLoss()
  clips = torch.randn(batch, 3 * frames, 224, 224)
  labels = torch.randint(0, 400, (batch,))
  model.train()

  def step():
    loss = criterion(model(clips), labels)
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 20)
    optimizer.step()

  return _median_of(step, steps)


def eval_case(model, frames, steps):
  import torch  # pylint: disable=import-outside-toplevel

  clips = torch.randn(1, 3 * frames, 224, 224)
  model.eval()

  def forward():
    with torch.no_grad():
      model(clips)

  return _median_of(forward, steps)


def _run_cases(model, variant, args):
  import torch  # pylint: disable=import-outside-toplevel

  for mode in args.modes.split(','):
    if mode == 'train':
      median, times = train_case(model, args.train_batch, args.frames, args.steps)
    else:
      median, times = eval_case(model, args.frames, args.steps)
    clips = args.train_batch if mode == 'train' else 1
    print(
        json.dumps(
            {
                'implementation': 'original',
                'variant': variant,
                'mode': mode,
                'clips': clips,
                'median_s': round(median, 3),
                'times_s': [round(t, 3) for t in times],
                'torch': torch.__version__,
                'threads': args.threads,
            }
        ),
        flush=True,
    )


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--checkout', required=True, help="a clone of the original's repository")
  parser.add_argument('--variants', default='tsm,rnl')
  parser.add_argument('--modes', default='train,eval')
  parser.add_argument('--threads', type=int, default=os.cpu_count())
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--train_batch', type=int, default=2)
  parser.add_argument('--frames', type=int, default=8)
  args = parser.parse_args()
  import torch  # pylint: disable=import-outside-toplevel

  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  with tempfile.TemporaryDirectory(prefix='original_archs_') as stand_in_dir:
    tsn = import_tsn(args.checkout, stand_in_dir)
    for variant in args.variants.split(','):
      _run_cases(build(tsn, variant, args.frames), variant, args)


if __name__ == '__main__':
  main()
