"""A bench job's time limit: `job_timeout` for each instance (re-armed as each is scored), the whole job's
`job_timeout × instances` only as a backstop — on a fake clock, then with the production default."""

from __future__ import annotations

import pytest

from stepscope import events
from stepscope.config import Settings
from stepscope.worker import Deadline, JobTimeout, bench_deadline, rearming


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def instance_event() -> dict:
    return events.bench_instance_event("maze", 0, 1, "maze/seed000000", {}, {"done": 1, "total": 4})


def test_one_stuck_instance_times_out_at_its_own_limit_not_the_jobs():
    clock = FakeClock()
    deadline = bench_deadline(Settings(job_timeout=10), instances=4, clock=clock)
    assert (deadline.limit, deadline.total) == (10, 40)
    clock.now += 9.5
    deadline.check()  # within the instance's 10 s
    clock.now += 1.0  # 10.5 s into the first instance: the old single deadline (40 s) would let it run on
    with pytest.raises(JobTimeout, match="bench instance ran past its 10 s timeout"):
        deadline.check()


def test_each_scored_instance_rearms_the_limit_and_the_total_is_a_backstop():
    clock = FakeClock()
    deadline = bench_deadline(Settings(job_timeout=10), instances=4, clock=clock)
    seen: list[dict] = []
    emit = rearming(seen.append, deadline)
    for _ in range(4):  # four instances of 9 s each: 36 s, each within its own 10 s
        clock.now += 9.0
        deadline.check()
        emit(instance_event())
    assert [e["type"] for e in seen] == [events.BENCH_INSTANCE] * 4  # the events still go out
    emit({"type": events.STEP})  # other events do not re-arm
    clock.now += 4.5  # 40.5 s in all, 4.5 s into this piece: only the total is past
    with pytest.raises(JobTimeout, match="job ran past its 40 s total timeout"):
        deadline.check()


def test_an_experiments_deadline_is_its_one_limit():
    clock = FakeClock()
    deadline = Deadline(5, clock=clock)
    clock.now += 5.0
    deadline.check()
    clock.now += 0.5
    with pytest.raises(JobTimeout, match="job ran past its 5 s timeout"):
        deadline.check()


def test_the_production_default_gives_each_instance_the_job_timeout(monkeypatch):
    """The twin of the fake-clock tests: the default setting, unchanged."""
    monkeypatch.delenv("STEPSCOPE_JOB_TIMEOUT", raising=False)
    default = Settings.model_fields["job_timeout"].default
    deadline = bench_deadline(Settings(), instances=3)
    assert deadline.limit == default == 3600 and deadline.total == 3 * default
    deadline.check()  # a fresh deadline on the real clock is not past
