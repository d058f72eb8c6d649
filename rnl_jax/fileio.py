"""File helpers shared by the trainer, the test protocol and the offline data writers (no JAX).

One home for what every writer needs: atomic writes (a temporary name next to the final one, then
`os.replace`, so a reader never sees half a file), removal of the temporaries an interrupted run
left, 'spawn' worker pools, and durations as H:MM:SS. Paths are path-like (str or os.PathLike).

Temporary names come in two styles, both in the final file's folder (a rename never crosses file
systems):
  `{path}.tmp-<pid>`          suffix style (`temp_path`): list files, JSON, settings
  `.tmp-<pid>-{name}`         prefix style (`temp_sibling`): frame folders and videos of the data
                              writers; `remove_stale_temps` deletes those of processes that are gone
"""

import collections
import contextlib
import itertools
import json
import multiprocessing
import os
import shutil

TMP_PREFIX = '.tmp-'


# --------------------------------------------------------------------------------------------------
# atomic writes


def temp_path(path, suffix=None) -> str:
  """`{path}{suffix}`; the default suffix is `.tmp-<pid>` (one writer process per name)."""
  return os.fspath(path) + (f'.tmp-{os.getpid()}' if suffix is None else suffix)


def temp_sibling(path) -> str:
  """`.tmp-<pid>-{name}` next to `path`, removed first (file or folder) if this process left one."""
  parent, base = os.path.split(os.fspath(path))
  tmp = os.path.join(parent, f'{TMP_PREFIX}{os.getpid()}-{base}')
  remove(tmp)
  return tmp


def remove(path):
  """Removes a file, link or folder tree at `path`; nothing there is fine."""
  if os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path, ignore_errors=True)
  elif os.path.lexists(path):
    os.remove(path)


@contextlib.contextmanager
def atomic_path(path, tmp=None):
  """Yields a temporary path (default `temp_path(path)`) to write; when the block ends it is renamed
  onto `path` (`os.replace`), when the block raises it is removed."""
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
  if only_if_changed and os.path.isfile(path):
    with open(path) as f:
      if f.read() == text:
        return False
  with atomic_path(path, temp_path(path, suffix)) as tmp:
    with open(tmp, 'w') as f:
      f.write(text)
  return True


def write_json(path, obj, *, suffix=None, newline=False, **dump_kwargs):
  """`json.dump(obj, **dump_kwargs)` to `path` atomically (and a final newline if `newline`)."""
  with atomic_path(path, temp_path(path, suffix)) as tmp:
    with open(tmp, 'w') as f:
      json.dump(obj, f, **dump_kwargs)
      if newline:
        f.write('\n')


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
  interrupted run's partial outputs); a missing folder is fine."""
  if not os.path.isdir(folder):
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
