"""InputCheck: the device-idle part of the host's waits for input, with a controlled clock."""

import threading

import numpy as np
import jax.numpy as jnp

from rnl_jax import input_check


class _Step:
  """A dispatched step that finishes when the test calls `finish(at)`."""

  def __init__(self):
    self.event, self.at = threading.Event(), None

  def finish(self, at):
    self.at = at
    self.event.set()


def test_only_waits_after_the_previous_step_finished_count_as_idle():
  finished = []

  def block(step):  # the watcher: wait for the step, then the clock reads its end
    step.event.wait()
    finished.append(step.at)

  check = input_check.InputCheck(block=block, clock=lambda: finished[-1])
  steps = [_Step() for _ in range(4)]
  check.waited(0.0, 1.0)  # before the first dispatch: nothing in flight, all idle
  check.dispatched(steps[0])
  check.waited(2.0, 3.0)  # step 0 finishes at 2.5: idle 0.5
  steps[0].finish(2.5)
  check.dispatched(steps[1])
  check.waited(4.0, 5.0)  # step 1 still running when the batch came (done at 6): idle 0
  check.dispatched(steps[2])
  steps[1].finish(6.0)
  check.waited(7.0, 7.25)  # step 2 done at 6.5, before the wait began: all 0.25 idle
  steps[2].finish(6.5)
  check.dispatched(steps[3])
  steps[3].finish(9.0)
  assert check.dispatched_steps == 4
  assert check.idle_seconds() == 1.0 + 0.5 + 0.0 + 0.25
  assert check.idle_seconds(first=2) == 0.25
  assert check.host_wait_seconds() == 1.0 + 1.0 + 1.0 + 0.25
  assert check.host_wait_seconds(first=1) == 2.25
  assert finished == [2.5, 6.0, 6.5, 9.0]
  check.close()


def test_real_arrays_block_until_ready():
  check = input_check.InputCheck()
  check.waited(0.0, 0.0)
  check.dispatched({'loss': jnp.ones(()) * 2, 'x': np.zeros(3)})
  assert check.idle_seconds() == 0.0 and check.dispatched_steps == 1
  check.close()
  assert not check._thread.is_alive()  # pylint: disable=protected-access
