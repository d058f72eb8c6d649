"""Files for the trainer, the test protocol and the data tools, local or in a bucket (no JAX).

Paths: every file the project reads or writes goes through here or through `etils.epath` (the path
type orbax and TFDS use), so `gs://bucket/...` and `s3://bucket/...` work wherever a local path does.
Local paths take the plain `os` calls (same behaviour, errors and speed as before); URLs go to
epath, whose fsspec backend is gcsfs (`pip install -e '.[gcs]'`) or s3fs (`.[s3]`). Paths stay
strings in the rest of the code: `os.path.join` / `dirname` / `basename` are right for URLs too;
`os.path.abspath` / `normpath` are not (they fold `gs://` into `gs:/`): use `absolute`.

Atomic writes: locally a temporary name next to the final one, then `os.replace`, so a reader never
sees half a file. Object stores have no rename (gcsfs and s3fs copy and delete), but an object
becomes visible only when its upload completes, so on a URL each file is written in one upload
instead; writers that need a local file (`atomic_path`) write a local temporary that is uploaded
when the block ends. Folders built file by file (frame folders) are complete when their last file
exists, which the writers write last.

Also here: removal of the temporaries an interrupted run left, 'spawn' worker pools, and durations
as H:MM:SS. Paths are path-like (str or os.PathLike).

Temporary names come in two styles, both in the final file's folder (a rename never crosses file
systems):
  `{path}.tmp-<pid>`          suffix style (`temp_path`): list files, JSON, settings
  `.tmp-<pid>-{name}`         prefix style (`temp_sibling`): frame folders and videos of the data
                              writers; `remove_stale_temps` deletes those of processes that are gone
"""

import builtins
import collections
import contextlib
import functools
import glob as glob_lib
import itertools
import json
import multiprocessing
import os
import shutil
import tempfile

TMP_PREFIX = '.tmp-'


@functools.cache
def _path_type():
  """`etils.epath.Path`, imported on the first URL (local-only processes such as the data workers
  skip importing epath and fsspec). Bucket listings are read fresh: several processes (hosts, data
  workers) write one bucket, and fsspec's listing cache (on by default) would hide another
  process's files."""
  from etils import epath  # pylint: disable=import-outside-toplevel

  try:
    import fsspec  # pylint: disable=import-outside-toplevel
  except ImportError:  # no fsspec: no URL backend either; epath says so on first use
    return epath.Path
  for protocol in ('gcs', 'gs', 's3'):
    fsspec.config.conf.setdefault(protocol, {}).setdefault('use_listings_cache', False)
  return epath.Path


def _url(path):
  """The epath.Path of a URL."""
  return _path_type()(path)


# --------------------------------------------------------------------------------------------------
# paths: local (os) or URL (epath)


def is_remote(path) -> bool:
  """Whether `path` is a URL (`gs://`, `s3://`, ...) rather than a local path."""
  return '://' in os.fspath(path)


def absolute(path) -> str:
  """`os.path.abspath` of a local path; a URL unchanged (abspath would fold `gs://` into `gs:/`)."""
  path = os.fspath(path)
  return path if is_remote(path) else os.path.abspath(path)


def open(path, mode='r', **kwargs):  # pylint: disable=redefined-builtin
  """`open` for a local path (kwargs such as encoding pass through); epath's for a URL."""
  if is_remote(path):
    return _url(path).open(mode)
  return builtins.open(path, mode, **kwargs)


def exists(path) -> bool:
  return _url(path).exists() if is_remote(path) else os.path.exists(path)


def isfile(path) -> bool:
  return _url(path).is_file() if is_remote(path) else os.path.isfile(path)


def isdir(path) -> bool:
  return _url(path).is_dir() if is_remote(path) else os.path.isdir(path)


def listdir(path) -> list:
  """Names in folder `path` (not paths)."""
  if is_remote(path):
    return [p.name for p in _url(path).iterdir()]
  return os.listdir(path)


def makedirs(path):
  """Creates folder `path` and its parents; an existing folder is fine (buckets have no folders:
  a no-op there)."""
  if is_remote(path):
    _url(path).mkdir(parents=True, exist_ok=True)
  else:
    os.makedirs(path, exist_ok=True)


def getsize(path) -> int:
  return _url(path).stat().length if is_remote(path) else os.path.getsize(path)


def read_text(path) -> str:
  with open(path) as f:
    return f.read()


def read_bytes(path) -> bytes:
  with open(path, 'rb') as f:
    return f.read()


def glob(pattern) -> list:
  """Sorted paths matching `pattern` (`*`, `?`, `[...]`; no `**` on URLs: one listing per level)."""
  pattern = os.fspath(pattern)
  if not is_remote(pattern):
    return sorted(glob_lib.glob(pattern))
  if not glob_lib.has_magic(pattern):
    return [pattern] if exists(pattern) else []
  parts = pattern.split('/')
  first = next(i for i, part in enumerate(parts) if glob_lib.has_magic(part))
  return sorted(str(p) for p in _url('/'.join(parts[:first])).glob('/'.join(parts[first:])))


def copy_to_local(path, local_path):
  """Copies file `path` (local or URL) to the local file `local_path` (libraries that only read
  local files)."""
  with open(path, 'rb') as src, builtins.open(local_path, 'wb') as dst:
    shutil.copyfileobj(src, dst, 1 << 22)


def upload(local_path, path):
  """Copies the local file `local_path` to `path` (local or URL) in one write."""
  with builtins.open(local_path, 'rb') as src, open(path, 'wb') as dst:
    shutil.copyfileobj(src, dst, 1 << 22)


# --------------------------------------------------------------------------------------------------
# atomic writes


def temp_path(path, suffix=None) -> str:
  """`{path}{suffix}`; the default suffix is `.tmp-<pid>` (one writer process per name)."""
  return os.fspath(path) + (f'.tmp-{os.getpid()}' if suffix is None else suffix)


def temp_sibling(path) -> str:
  """`.tmp-<pid>-{name}` next to `path`, removed first (file or folder) if this process left one."""
  parent, base = os.path.split(os.fspath(path))
  tmp = os.path.join(parent, f'{TMP_PREFIX}{os.getpid()}-{base}')
  if not is_remote(tmp):  # a bucket gets no temporaries (atomic_path uploads from local disk)
    remove(tmp)
  return tmp


def remove(path):
  """Removes a file, link or folder tree at `path`; nothing there is fine."""
  if is_remote(path):
    p = _url(path)
    if p.is_dir():
      p.rmtree()
    elif p.exists():
      p.unlink()
    return
  if os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path, ignore_errors=True)
  elif os.path.lexists(path):
    os.remove(path)


@contextlib.contextmanager
def atomic_path(path, tmp=None):
  """Yields a temporary path (default `temp_path(path)`) to write; when the block ends it is renamed
  onto `path` (`os.replace`), when the block raises it is removed.

  A URL `path`: the temporary is a local file (any library can write it), uploaded onto `path` in
  one write when the block ends (an object appears only complete); `tmp` is ignored."""
  if is_remote(path):
    with tempfile.TemporaryDirectory(prefix='rnl-upload-') as folder:
      local = os.path.join(folder, os.path.basename(os.fspath(path).rstrip('/')))
      yield local
      upload(local, path)
    return
  tmp = temp_path(path) if tmp is None else os.fspath(tmp)
  try:
    yield tmp
  except BaseException:
    remove(tmp)
    raise
  os.replace(tmp, path)


def write_text(path, text: str, *, suffix=None, only_if_changed=False) -> bool:
  """Writes `text` to `path` atomically (temporary `temp_path(path, suffix)`); returns True.

  only_if_changed: leave a file that already holds exactly `text` alone and return False.
  """
  if only_if_changed and isfile(path) and read_text(path) == text:
    return False
  if is_remote(path):  # one upload: the object appears complete or not at all
    with open(path, 'w') as f:
      f.write(text)
    return True
  with atomic_path(path, temp_path(path, suffix)) as tmp:
    with builtins.open(tmp, 'w') as f:
      f.write(text)
  return True


def write_json(path, obj, *, suffix=None, newline=False, **dump_kwargs):
  """`json.dump(obj, **dump_kwargs)` to `path` atomically (and a final newline if `newline`)."""
  write_text(path, json.dumps(obj, **dump_kwargs) + ('\n' if newline else ''), suffix=suffix)


class RewrittenObject:
  """A write-only binary file at a URL that grows by appends: buckets cannot append to an object,
  so every `flush` uploads everything written so far as the whole object (fine for files of a few
  MB written now and then, such as TensorBoard event files)."""

  def __init__(self, path):
    self.path = os.fspath(path)
    self._data = bytearray()
    self._flushed = -1

  def write(self, data):
    self._data += data
    return len(data)

  def flush(self):
    if len(self._data) != self._flushed:
      with open(self.path, 'wb') as f:
        f.write(bytes(self._data))
      self._flushed = len(self._data)

  def close(self):
    self.flush()


# --------------------------------------------------------------------------------------------------
# leftovers of interrupted runs


def pid_alive(pid: int) -> bool:
  """Whether process `pid` exists (temporary outputs of live writers are left alone)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def remove_stale_temps(folder):
  """Removes the prefix-style temporaries (`.tmp-<pid>-*`) in `folder` whose process is gone (an
  interrupted run's partial outputs); a missing folder is fine. Buckets hold no temporaries."""
  if is_remote(folder) or not os.path.isdir(folder):
    return
  for name in os.listdir(folder):
    if not name.startswith(TMP_PREFIX):
      continue
    pid = name[len(TMP_PREFIX) :].split('-', 1)[0]
    if pid.isdigit() and pid_alive(int(pid)):
      continue
    remove(os.path.join(folder, name))


# --------------------------------------------------------------------------------------------------
# worker pools


def spawn_pool(workers: int):
  """A `multiprocessing` pool of `workers` 'spawn' processes (fresh interpreters: safe with threads
  and JAX in the parent). Leaving its `with` block terminates it."""
  return multiprocessing.get_context('spawn').Pool(workers)


def map_unordered(fn, items, workers: int, *, tasks_per_worker: int = 8, max_chunk: int = 16):
  """Yields `fn(item)` for every item, in completion order.

  workers > 1 (and more than one item): 'spawn' processes (`fn` must be module-level and picklable),
  items handed out in chunks of max(1, min(max_chunk, len(items) // (tasks_per_worker * workers)));
  else in this process, in order. Closing the generator early terminates the pool.
  """
  items = list(items)
  if workers <= 1 or len(items) <= 1:
    for item in items:
      yield fn(item)
    return
  workers = min(int(workers), len(items))
  chunk = max(1, min(max_chunk, len(items) // (tasks_per_worker * workers)))
  with spawn_pool(workers) as pool:
    yield from pool.imap_unordered(fn, items, chunksize=chunk)


def map_ordered(fn, items, workers: int, *, in_flight_per_worker: int = 4):
  """Yields `fn(item)` for every item, in order.

  workers > 1: 'spawn' processes with at most `in_flight_per_worker` tasks per worker in flight (the
  results of a long stream are not all held at once); else in this process. Closing the generator
  early (also on an error) terminates the pool.
  """
  if workers <= 1:
    for item in items:
      yield fn(item)
    return
  with spawn_pool(workers) as pool:
    items = iter(items)
    pending = collections.deque(
        pool.apply_async(fn, (x,)) for x in itertools.islice(items, in_flight_per_worker * workers)
    )
    while pending:
      result = pending.popleft().get()
      for x in itertools.islice(items, 1):
        pending.append(pool.apply_async(fn, (x,)))
      yield result


# --------------------------------------------------------------------------------------------------
# durations


def hms(seconds) -> str:
  """`H:MM:SS` of a duration in seconds (truncated to whole seconds)."""
  seconds = int(seconds)
  return f'{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'
