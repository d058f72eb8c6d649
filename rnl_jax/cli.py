"""One manner for every command line of the project (no JAX here: every CLI imports it first).

- A user's mistake (a config value or key, a data file, a list line, a checkpoint) is one line on
  stderr, `error: <what, where, and the fix>`, and exit status 2. The exceptions that mean such a
  mistake derive from `UserError`; a missing file the user named (FileNotFoundError) counts too.
  `--debug` on any command, or RNL_DEBUG=1, shows the traceback instead.
- A bug (any other exception) keeps its traceback: that is what a bug report needs.
- Ctrl-C outside the training loop (which saves first, rnl_jax.train) ends with `interrupted` and
  exit status 130, the shell's code for SIGINT.
- Flags are spelled with underscores (`--skip_corrupt`, as absl and the config keys are); the
  dashed spelling (`--skip-corrupt`) is accepted everywhere too.
"""

import argparse
import contextlib
import os
import sys

from rnl_jax.errors import UserError


def message(error):
  """The one-line text of `error` (a KeyError's str() would add quotes)."""
  text = error.args[0] if len(error.args) == 1 and isinstance(error.args[0], str) else str(error)
  return ' '.join(text.split())


def find_user_error(error):
  """The UserError (or FileNotFoundError) that caused `error`, following `raise ... from` and the
  implicit context (grain re-raises a worker's error inside its own), or None."""
  seen = set()
  while error is not None and id(error) not in seen:
    if isinstance(error, (UserError, FileNotFoundError)):
      return error
    seen.add(id(error))
    error = error.__cause__ or error.__context__
  return None


def debug_requested(argv=None):
  argv = sys.argv if argv is None else argv
  return os.environ.get('RNL_DEBUG', '') not in ('', '0') or '--debug' in argv


@contextlib.contextmanager
def user_errors(debug=None):
  """Turns user mistakes into `error: ...` + exit 2 and Ctrl-C into `interrupted` + exit 130.

  `debug`: the command's parsed --debug flag; None reads `--debug` from sys.argv. RNL_DEBUG=1 in
  the environment counts either way."""
  debug = debug_requested() if debug is None else (debug or debug_requested([]))
  try:
    yield
  except KeyboardInterrupt:
    if debug:
      raise
    print('interrupted', file=sys.stderr)
    raise SystemExit(130) from None
  except Exception as e:  # pylint: disable=broad-except
    found = find_user_error(e)
    if found is None or debug:
      raise
    print(f'error: {message(found)}', file=sys.stderr)
    raise SystemExit(2) from None


def both_spellings(argv):
  """`--a-b[=v]` -> `--a_b[=v]` for every option (values untouched), so parsers that define the
  underscore spelling accept both."""
  out = []
  for arg in argv:
    if arg.startswith('--') and len(arg) > 2:
      name, sep, value = arg[2:].partition('=')
      arg = '--' + name.replace('-', '_') + sep + value
    out.append(arg)
  return out


class ArgumentParser(argparse.ArgumentParser):
  """argparse with the project's manner: both flag spellings, `--debug`, and exit status 2 with one
  line for a usage mistake (argparse's own behaviour)."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.add_argument(
        '--debug', action='store_true', help='show the traceback of an error (also: RNL_DEBUG=1)'
    )

  def parse_args(self, args=None, namespace=None):  # pylint: disable=signature-differs
    return super().parse_args(both_spellings(sys.argv[1:] if args is None else args), namespace)


def comma_list(cast):
  """An argparse `type` for options that take `1,2` as well as `1 2` (use with nargs='+')."""

  def parse(text):
    return [cast(part) for part in text.split(',') if part]

  parse.__name__ = cast.__name__  # argparse's message: "invalid float value: 'x'"
  return parse


def flatten_lists(values):
  """[[1, 2], [3]] (nargs='+' of comma_list) -> [1, 2, 3]."""
  return [v for group in values for v in group]


class BooleanOptionalAction(argparse.BooleanOptionalAction):
  """`--a_b` / `--no_a_b` (argparse's own spells the negation `--no-a_b`, which the rewrite of
  both_spellings would no longer match); `--no-a-b` works too, as every flag."""

  def __init__(self, option_strings, dest, **kwargs):
    super().__init__(option_strings, dest, **kwargs)
    self.option_strings = [
        s.replace('--no-', '--no_', 1) if s.startswith('--no-') else s for s in self.option_strings
    ]

  def __call__(self, parser, namespace, values, option_string=None):
    if option_string in self.option_strings:
      setattr(namespace, self.dest, not option_string.startswith('--no_'))


_ABSL_HELP = ('help', 'helpshort', 'helpfull', 'helpxml', '?')


def absl_flags_parser(parse=None):
  """A `flags_parser` for absl's `app.run`: both flag spellings, `--help` exits 0 (absl's exits 1),
  and a flag mistake is `error: <message> (see --help)` with exit status 2 (absl's: two lines and
  status 1). `parse(argv)` does the parsing (default: absl's FLAGS)."""

  def parser(argv):
    from absl import flags  # pylint: disable=import-outside-toplevel  (absl only where used)

    argv = both_spellings(argv)
    parse_fn = parse or flags.FLAGS
    if any(a.lstrip('-').partition('=')[0] in _ABSL_HELP for a in argv[1:] if a.startswith('-')):
      try:
        return parse_fn(argv)
      except SystemExit as e:
        raise SystemExit(0 if e.code == 1 else e.code) from None
    try:
      return parse_fn(argv)
    except flags.Error as e:
      if debug_requested(argv):
        raise
      print(f'error: {message(e)} (see --help)', file=sys.stderr)
      raise SystemExit(2) from None

  return parser
