"""Pace on a busy machine: the count of runnable tasks (Contention) sends every step to the caller's thread
alone while other jobs want the cores, without timed trials, and gives them back when the machine is quiet."""

from __future__ import annotations

from nnc.backend.threads import Contention, Pace, machine_contention, runnable_reader


class FakeMachine:
    """A pool of `threads` threads on `cores` cores beside `others` busy tasks; steps cost cost[solo]
    seconds of a fake clock, and `ways` records how each step ran."""

    def __init__(self, threads=2, cores=2, others=0, cost=None):
        self.threads, self.others = threads, others
        self.cost = cost or {False: 1.0, True: 1.6}
        self.now, self.solo, self.ways = 0.0, False, []
        self.contention = Contention(threads, cores, self.runnable)
        self.pace = Pace(self, clock=lambda: self.now, contention=self.contention)

    def runnable(self) -> int:   # after a step: our spinning workers, or the caller alone, and the others
        return (1 if self.solo else self.threads) + self.others

    def run(self, steps: int) -> None:
        def entry():
            self.ways.append(self.solo)
            self.now += self.cost[self.solo]
            return 0

        for _ in range(steps):
            assert self.pace.call(entry, ()) == 0


def test_a_busy_process_sends_every_step_to_one_thread_without_trials_and_quiet_brings_them_back():
    machine = FakeMachine(others=1, cost={False: 1.0, True: 1.6})   # timing alone would keep all threads
    machine.run(400)
    window = Contention.EVERY * Contention.WINDOW
    assert machine.contention.busy
    assert all(machine.ways[window:])         # alone from the first window on: no trial on all threads
    assert all(machine.ways[Contention.WINDOW // 2 + 1:])   # the first samples, one per step, say so at once
    machine.others = 0
    machine.run(200)
    assert not machine.contention.busy
    assert not any(machine.ways[-100:])       # the quiet machine's steps are on all threads again


def test_a_task_that_runs_for_a_moment_changes_nothing():
    machine = FakeMachine()
    for i in range(40):
        machine.others = 1 if i % 4 == 0 else 0   # busy in one sample of four
        machine.run(Contention.EVERY)
    assert not machine.contention.busy
    assert machine.ways[:Pace.FIRST_PERIOD] == [False] * Pace.FIRST_PERIOD


def test_spare_cores_are_left_to_others():
    machine = FakeMachine(threads=2, cores=4, others=2)   # two busy tasks, two cores of four for us
    machine.run(300)
    assert not machine.contention.busy and not any(machine.ways[:Pace.FIRST_PERIOD])
    machine.others = 3
    machine.run(300)
    assert machine.contention.busy and all(machine.ways[-200:])


def test_more_threads_than_cores_alone_is_left_to_the_timed_trials():
    machine = FakeMachine(threads=4, cores=2, others=0)   # --oversubscribe on a quiet machine
    machine.run(300)
    assert not machine.contention.busy and not any(machine.ways[:Pace.FIRST_PERIOD])


def test_the_runnable_count_is_read_from_proc_loadavg(tmp_path):
    fake = tmp_path / "loadavg"
    fake.write_text("0.52 0.58 0.59 3/467 12345\n")
    assert runnable_reader(str(fake))() == 3
    assert runnable_reader(str(tmp_path / "absent")) is None
    (tmp_path / "odd").write_text("nothing here\n")
    assert runnable_reader(str(tmp_path / "odd")) is None
    here = machine_contention(2)
    if here is not None:     # Linux: this very thread is running
        assert here.runnable() >= 1


def test_every_executable_shares_one_reader_of_the_runnable_count():
    """One open /proc/loadavg per process, not one per executable (a loop compiling executables would run out
    of file descriptors)."""
    first, second = machine_contention(2), machine_contention(4)
    if first is None:
        return   # no /proc/loadavg here: nothing is opened at all
    assert first.runnable is second.runnable
