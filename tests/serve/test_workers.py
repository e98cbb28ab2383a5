"""The worker process's call loop (run in-process here): slices, replies first, work done ahead."""

from __future__ import annotations

import queue
from dataclasses import dataclass, field

import numpy as np

from speechlm.serve.session import Output, run_slices
from speechlm.serve.workers import _WorkerLoop


@dataclass
class Sliced:
    """Each push: ``before`` slices, the reply, ``after`` slices of work ahead; logs them all."""

    name: str
    log: list
    before: int = 0
    after: int = 0
    fail_ahead: bool = False
    pushes: int = 0

    def slices(self, op: str, *args):
        self.pushes += 1
        call = f"{self.name}{self.pushes}"
        for i in range(self.before):
            self.log.append(f"{call} slice {i}")
            sum(range(2000))  # a little compute: the loop counts it
            yield None
        self.log.append(f"{call} reply")
        yield Output("listening", tokens=[self.pushes])
        for i in range(self.after):
            if self.fail_ahead:
                raise RuntimeError(f"{call} failed ahead")
            self.log.append(f"{call} ahead {i}")
            yield None

    def push(self, frame: np.ndarray) -> Output:
        return run_slices(self.slices("push", frame))

    def end_turn(self) -> Output:
        return run_slices(self.slices("end_turn"))

    def reset(self) -> None:
        pass


@dataclass
class Factory:
    sessions: list = field(default_factory=list)
    name: str = "fake"
    sample_rate: int = 16_000
    frame_samples: int = 1280

    def new_session(self) -> Sliced:
        return self.sessions.pop(0)

    def warmup(self) -> None:
        pass


class Pipe:
    def __init__(self) -> None:
        self.sent: list[tuple] = []

    def send(self, reply: tuple) -> None:
        self.sent.append(reply)


def run(sessions: list[Sliced], calls: list[tuple[int, int, str]]) -> list[tuple]:
    """``calls`` (rid, sid, op) all queued before the loop starts; the replies in order."""
    pipe, inbox = Pipe(), queue.SimpleQueue()
    for rid, sid, op in calls:
        inbox.put((rid, sid, op, (np.zeros(1280, np.float32),) if op == "push" else ()))
    inbox.put(None)
    _WorkerLoop(Factory(list(sessions)), pipe).run(inbox)
    return pipe.sent


def test_a_short_call_is_answered_between_the_slices_of_a_long_one():
    log: list[str] = []
    long, short = Sliced("A", log, before=4, after=2), Sliced("B", log)
    replies = run([long, short], [(0, 0, "open"), (1, 1, "open"), (2, 0, "push"), (3, 1, "push")])
    assert [r[0] for r in replies] == [0, 1, 3, 2]  # B's frame did not wait for all of A's
    assert all(error is None for _, error, _, _ in replies)
    assert log.index("B1 reply") < log.index("A1 slice 1") and log[-1] == "A1 ahead 1"
    rid, _, output, seconds = replies[-1]
    assert output.tokens == [1] and seconds > 0  # compute until the reply, ahead work not in it


def test_work_ahead_waits_for_replies_and_ends_before_the_sessions_next_call():
    log: list[str] = []
    a, b = Sliced("A", log, after=3), Sliced("B", log, before=1)
    run([a, b], [(0, 0, "open"), (1, 1, "open"), (2, 0, "push"), (3, 1, "push")])
    assert log.index("B1 reply") < log.index("A1 ahead 0")  # replies before work ahead
    log.clear()
    a, b = Sliced("A", log, after=3), Sliced("B", log, before=1)
    replies = run([a, b], [(0, 0, "open"), (1, 1, "open"), (2, 0, "push"), (3, 1, "push"),
                           (4, 0, "push")])
    assert sorted(r[0] for r in replies) == [0, 1, 2, 3, 4]
    assert log.index("A1 ahead 2") < log.index("A2 reply")  # a session's calls stay in order


def test_work_ahead_that_fails_is_reported_by_the_sessions_next_call_only():
    log: list[str] = []
    a, b = Sliced("A", log, after=1, fail_ahead=True), Sliced("B", log)
    replies = {r[0]: r for r in run([a, b], [(0, 0, "open"), (1, 1, "open"), (2, 0, "push"),
                                             (3, 0, "push"), (4, 1, "push"), (5, 0, "close"),
                                             (6, 0, "push")])}
    assert replies[2][1] is None and replies[4][1] is None  # A's reply went out, B unaffected
    assert "A1 failed ahead" in str(replies[3][1])  # A's next call gets the error
    assert isinstance(replies[6][1], KeyError)  # a closed session has no calls
    assert 5 not in replies  # close has no reply


def test_sessions_without_slices_run_each_call_at_once():
    class Plain:
        def push(self, frame):
            return Output("listening", frame[:2])

    pipe, inbox = Pipe(), queue.SimpleQueue()
    for call in [(0, 0, "open", ()), (1, 0, "push", (np.ones(1280, np.float32),)), None]:
        inbox.put(call)
    _WorkerLoop(Factory([Plain()]), pipe).run(inbox)
    assert [r[0] for r in pipe.sent] == [0, 1] and pipe.sent[1][2].audio.tolist() == [1, 1]
