"""Command line of `python -m rnl_jax.data.prepare` (see the package docstring)."""

import json
import os
import sys

from rnl_jax import cli
from rnl_jax.data.prepare import core, media


def main(argv=None):
  """Parses the command line, runs `core.prepare`, prints its summary; returns the summary."""
  args = _parser().parse_args(argv)
  with cli.user_errors(args.debug):  # PrepareError: `error: ..`, exit 2
    summary = core.prepare(
        core.ALIASES.get(args.dataset, args.dataset),
        args.source,
        args.out,
        args.format,
        short_side=args.short_side,
        workers=args.workers,
        split=args.split,
        annotations=args.annotations,
        label_map=args.label_map,
        quality=args.quality,
        keyframe_interval=args.keyframe_interval,
        crf=args.crf,
        retry_failed=args.retry_failed,
        progress=args.progress,
    )
  _print_summary(summary)
  return summary


def _parser():
  """The command line's argument parser (cli.ArgumentParser: also --debug)."""
  parser = cli.ArgumentParser(
      prog='python -m rnl_jax.data.prepare',
      description='Prepares an official dataset download for training.',
  )
  parser.add_argument(
      'dataset',
      metavar='DATASET',
      choices=sorted(core.SPECS) + sorted(core.ALIASES),
      help='kinetics400, something_v1, something_v2, ucf101 or hmdb51; the '
      "trainer's config.data.name is accepted too (kinetics, something, "
      'somethingv2)',
  )
  parser.add_argument(
      '--source', required=True, help='the download (videos or frame folders, annotations)'
  )
  parser.add_argument(
      '--out', required=True, help="dataset root written (the trainer's config.data.root)"
  )
  parser.add_argument('--format', default='frames', choices=core.FORMATS)
  parser.add_argument(
      '--short_side',
      type=int,
      default=None,
      help='scale the shorter side to N (0: as decoded); default: the '
      "original's frame height (Kinetics 331, Something-V2/UCF101/HMDB51 "
      '256, Something-V1 as released)',
  )
  parser.add_argument(
      '--workers', type=int, default=os.cpu_count() or 1, help='worker processes (spawn)'
  )
  parser.add_argument('--split', type=int, default=1, help='ucf101 / hmdb51: split 1, 2 or 3')
  parser.add_argument(
      '--annotations',
      default=None,
      help='folder holding the annotation files (default: searched under --source)',
  )
  parser.add_argument(
      '--label_map',
      default=None,
      help="kinetics400: class-name file (default: the original's " 'kinetics_label_map.txt)',
  )
  parser.add_argument(
      '--quality', type=int, default=media.JPEG_QUALITY, help='JPEG quality of frames'
  )
  parser.add_argument(
      '--keyframe_interval',
      type=int,
      default=media.KEYFRAME_INTERVAL,
      help='--format videos: frames between keyframes',
  )
  parser.add_argument(
      '--crf', type=int, default=media.CRF, help='--format videos: x264 constant quality'
  )
  parser.add_argument(
      '--retry_failed',
      action='store_true',
      help='decode again the sources that failed in an earlier run',
  )
  parser.add_argument(
      '--no_progress', dest='progress', action='store_false', help='no progress bar'
  )
  return parser


def _print_summary(summary):
  """What was done and what needs a look, on stderr; the summary as one JSON line on stdout."""
  counts = summary['problems']
  listed = ', '.join(f'{s} {n}' for s, n in summary['listed'].items() if n is not None)
  print(
      f'listed: {listed or "(already packed)"}; processed {summary["processed"]}, reused '
      f'{summary["reused"]}, failed earlier {summary["failed_before"]}',
      file=sys.stderr,
  )
  print(
      'not listed: '
      + ', '.join(f'{k} {v}' for k, v in counts.items())
      + f' (details in {summary["report"]})',
      file=sys.stderr,
  )
  for note, n in summary['notes'].items():
    print(f'note: {n} {note}', file=sys.stderr)
  if summary['warnings']:
    print(
        f'warning: {summary["warnings"]} listed videos need a look (report "warnings")',
        file=sys.stderr,
    )
  for split in summary['empty_splits']:
    print(f'warning: the {split} list is empty', file=sys.stderr)
  print(f'train with: {summary["config"]}', file=sys.stderr)
  print(json.dumps(summary))


if __name__ == '__main__':
  main()
