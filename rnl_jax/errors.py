"""The exceptions that mean a user's mistake (no JAX here, so every module can raise them).

Command lines print such an error as one line and exit 2 (rnl_jax.cli); any other exception is a
bug and keeps its traceback. Each class also derives from the builtin a caller would expect
(ValueError), so `except ValueError` keeps working.
"""


class UserError(Exception):
  """A mistake the user can fix; the message names the key, file or line, and the fix."""


class ConfigError(UserError, ValueError):
  """A config value or key: the message names `config.<key>`, the value and what is expected."""


class DataError(UserError, ValueError):
  """A dataset file: a list line, a missing video, an empty split; names the file (and line)."""
