"""Input check: how long the device sat idle waiting for the next batch.

Dispatch is asynchronous: the host asks the input pipeline for batch k+1 while step k still runs on
the device. Time the host spends blocked on the pipeline is therefore not lost time unless step k
has already finished: only that part of the wait leaves the device idle. The host's wait alone
overstates input-boundness (docs/performance.md#input-check).

A watcher thread blocks on each dispatched step's outputs and records when they are ready; the idle
time of the wait before dispatch n is the part of [wait start, wait end] after step n-1 finished
(all of it before the first dispatch). Recording happens when the watcher wakes, so the idle time is
a slight underestimate (thread wake-up, microseconds to a millisecond).
"""

import bisect
import queue
import threading
import time

import jax


class InputCheck:
  """Per-step input waits and step completion times, for the device-idle fraction.

  Call `waited(start, end)` for each wait on the input pipeline, then `dispatched(outputs)` with the
  step it fed; `idle_seconds(first)` sums the device-idle part of the waits before dispatches
  first, first+1, ...; `host_wait_seconds(first)` sums the waits themselves.
  """

  def __init__(self, block=jax.block_until_ready, clock=time.perf_counter):
    self._block, self._clock = block, clock
    self._queue = queue.Queue()
    self._done = {}  # dispatch index -> time its outputs were ready
    self._waits = []  # (index of the dispatch the wait fed, start, end), in order
    self._dispatched = 0
    self._thread = threading.Thread(target=self._watch, name='input-check', daemon=True)
    self._thread.start()

  def _watch(self):
    while True:
      item = self._queue.get()
      try:
        if item is None:
          return
        index, outputs = item
        self._block(outputs)
        self._done[index] = self._clock()
      finally:
        self._queue.task_done()

  @property
  def dispatched_steps(self):
    return self._dispatched

  def waited(self, start, end):
    """The host waited for input from `start` to `end` (clock seconds) before the next dispatch."""
    self._waits.append((self._dispatched, start, end))

  def dispatched(self, outputs):
    """A step was dispatched; `outputs` (any pytree of arrays) are ready when it has finished."""
    self._queue.put((self._dispatched, outputs))
    self._dispatched += 1

  def idle_seconds(self, first=0):
    """Seconds the device had no step in flight while the host waited for input, over the waits
    before dispatches >= `first` (blocks until the steps dispatched so far have finished)."""
    self._queue.join()
    total = 0.0
    for index, start, end in self._since(first):
      previous_done = self._done[index - 1] if index > 0 else float('-inf')
      total += max(0.0, end - max(start, previous_done))
    return total

  def host_wait_seconds(self, first=0):
    """Seconds the host waited for input before dispatches >= `first` (device busy or not)."""
    return sum(end - start for _, start, end in self._since(first))

  def _since(self, first):
    """The waits before dispatches >= `first` (a log window reads only its own: no quadratic cost)."""
    return self._waits[bisect.bisect_left(self._waits, first, key=lambda w: w[0]) :]

  def close(self):
    self._queue.put(None)
    self._thread.join()
