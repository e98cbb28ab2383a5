"""Where sessions run: worker processes (the default) or threads of the server process.

A small model on a CPU is bound by Python overhead, not by arithmetic: its sessions in threads of
one process take turns on the GIL and use about one core however many there are (measured: the
server got 1.09 cores of 2 at 8 sessions). :class:`ProcessSessions` starts ``workers`` processes
instead, each with its own copy of the model; a session is pinned to the worker with the fewest
sessions when it opens and every call of that session goes to it over a pipe, so sessions on
different workers run in parallel and a session's state never crosses processes. A worker that
dies (a crash in native code, the OOM killer) ends only its own sessions, each with a clear
error, and is replaced. :class:`ThreadSessions` keeps everything in the server process: one copy
of the weights, for models whose kernels release the GIL (large models, GPUs).

A worker runs its sessions' calls a slice at a time when the session offers slices
(:class:`~speechlm.serve.session.SlicedSession`): slices that lead to a reply first, a slice per
session in turn (a frame that just arrived waits behind the current slice of the 60 ms frame
that ends another session's turn, not behind all of it), then the work a session does ahead for
its next call. Each session's calls still run one at a time, in order, and that work finishes
before its next call starts.

Both hand out :class:`SessionHandle` objects the connection awaits, so the event loop never runs
the model.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import psutil

from speechlm.core.errors import SpeechLMError
from speechlm.serve.session import Output, SessionFactory

log = logging.getLogger(__name__)

FactorySource = SessionFactory | Callable[[], SessionFactory]  # a factory, or how to build one
WORKER_MODES = ("process", "thread")
SLICED_OPS = ("push", "end_turn")  # the calls a SlicedSession runs in slices


@dataclass(frozen=True)
class ModelInfo:
    """What the connection needs to know about the served model (the handshake)."""

    name: str
    sample_rate: int
    frame_samples: int


class WorkerLost(RuntimeError):
    """The worker process that ran a session exited; the session cannot go on."""


def build_factory(source: FactorySource) -> SessionFactory:
    return source if isinstance(source, SessionFactory) else source()


def info_of(factory: SessionFactory) -> ModelInfo:
    return ModelInfo(factory.name, factory.sample_rate, factory.frame_samples)


class SessionHandle(ABC):
    """One session as the event loop sees it: awaitable calls, each ``(result, compute seconds)``."""

    async def push(self, frame: np.ndarray) -> tuple[Output, float]:
        return await self._call("push", frame)

    async def end_turn(self) -> tuple[Output, float]:
        return await self._call("end_turn")

    async def reset(self) -> None:
        await self._call("reset")

    @abstractmethod
    async def _call(self, op: str, *args: Any) -> tuple[Any, float]: ...

    @abstractmethod
    def close(self) -> None:
        """Forget the session (its model state is freed); no call may follow."""


class Sessions(ABC):
    """Opens sessions of one model and runs their calls off the event loop."""

    info: ModelInfo

    @abstractmethod
    async def start(self) -> None:
        """Load and warm up the model; ``info`` is set afterwards."""

    @abstractmethod
    async def open(self) -> SessionHandle: ...

    @abstractmethod
    async def close(self) -> None:
        """Stop; calls running now finish first."""

    @abstractmethod
    def stats(self) -> dict[str, Any]: ...


def make_sessions(source: FactorySource, mode: str, workers: int, threads: int) -> Sessions:
    if mode == "process":
        return ProcessSessions(source, workers, threads)
    if mode == "thread":
        return ThreadSessions(source, workers)
    raise ValueError(f"worker mode {mode!r}: expected one of {WORKER_MODES}")


# ---- threads -------------------------------------------------------------------------------------


class ThreadSessions(Sessions):
    """Sessions in a pool of ``workers`` threads of this process (one copy of the weights)."""

    def __init__(self, source: FactorySource, workers: int) -> None:
        self.source, self.workers = source, workers
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="speechlm-session")

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.factory = await loop.run_in_executor(self.executor, build_factory, self.source)
        await loop.run_in_executor(self.executor, self.factory.warmup)
        self.info = info_of(self.factory)

    async def open(self) -> SessionHandle:
        loop = asyncio.get_running_loop()
        return _ThreadHandle(self.executor,
                             await loop.run_in_executor(self.executor, self.factory.new_session))

    async def close(self) -> None:
        await asyncio.to_thread(self.executor.shutdown, wait=True, cancel_futures=True)

    def stats(self) -> dict[str, Any]:
        return {"mode": "thread", "workers": self.workers,
                "rss_bytes": psutil.Process().memory_info().rss}


class _ThreadHandle(SessionHandle):
    """Runs a call until its reply, then what the session does ahead as a second pool job, which
    the session's next call waits for."""

    def __init__(self, executor: ThreadPoolExecutor, session: Any) -> None:
        self.executor, self.session = executor, session
        self.ahead: asyncio.Future | None = None

    async def _call(self, op: str, *args: Any) -> tuple[Any, float]:
        loop = asyncio.get_running_loop()
        if self.ahead is not None:
            ahead, self.ahead = self.ahead, None
            await ahead  # (its error, if any, is this call's)
        steps = call_steps(self.session, op, args)
        result = await loop.run_in_executor(self.executor, _until_reply, steps)
        self.ahead = loop.run_in_executor(self.executor, _finish, steps)
        return result

    def close(self) -> None:
        if self.ahead is not None:  # nobody will wait for it: do not warn about its error
            self.ahead.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.session = None


def call_steps(session: Any, op: str, args: tuple) -> Iterator[tuple[bool, Any]]:
    """One call as slices: ``(False, None)`` after a slice, ``(True, result)`` for the reply
    (a session without slices: one slice, the reply)."""
    sliced = getattr(session, "slices", None)
    if sliced is None or op not in SLICED_OPS:
        yield True, getattr(session, op)(*args)
        return
    for item in sliced(op, *args):
        yield item is not None, item


def _until_reply(steps: Iterator[tuple[bool, Any]]) -> tuple[Any, float]:
    """Run slices until the reply; it and the compute seconds it took."""
    start = time.perf_counter()
    for reply, result in steps:
        if reply:
            return result, time.perf_counter() - start
    raise RuntimeError("a session call ended without a reply")


def _finish(steps: Iterator[tuple[bool, Any]]) -> None:
    for _ in steps:
        pass


# ---- processes -----------------------------------------------------------------------------------


@dataclass(eq=False)
class _Worker:
    slot: int
    process: multiprocessing.process.BaseProcess
    conn: Connection
    ready: asyncio.Future
    pending: dict[int, asyncio.Future] = field(default_factory=dict)
    sessions: set[int] = field(default_factory=set)
    lost: WorkerLost | None = None

    @property
    def usable(self) -> bool:
        return self.lost is None and self.ready.done() and self.ready.exception() is None


class ProcessSessions(Sessions):
    """Sessions in ``workers`` processes (spawned, each loads the model from ``source``)."""

    def __init__(self, source: FactorySource, workers: int, threads: int = 1,
                 start_timeout_s: float = 600.0) -> None:
        self.source, self.threads, self.start_timeout_s = source, threads, start_timeout_s
        self.context = multiprocessing.get_context("spawn")  # no fork of a threaded server
        self.slots: list[_Worker | None] = [None] * workers
        self.ids = itertools.count()
        self.closing = False
        self.replaced = 0      # workers that died and were started again
        self.sessions_lost = 0  # sessions ended by a dead worker
        self.replacing: set[asyncio.Task] = set()  # (the loop keeps only weak references)

    async def start(self) -> None:
        for slot in range(len(self.slots)):
            self.slots[slot] = self._spawn(slot)
        try:
            infos = await asyncio.wait_for(
                asyncio.gather(*(w.ready for w in self.slots if w is not None)),
                self.start_timeout_s)
        except BaseException:
            await self.close()
            raise
        self.info = infos[0]

    def _spawn(self, slot: int) -> _Worker:
        loop = asyncio.get_running_loop()
        ours, theirs = self.context.Pipe()
        process = self.context.Process(target=worker_main, args=(theirs, self.source, self.threads),
                                       name=f"speechlm-worker-{slot}", daemon=True)
        process.start()
        theirs.close()  # only the worker holds its end: its exit is our end-of-file
        worker = _Worker(slot, process, ours, loop.create_future())
        loop.add_reader(ours.fileno(), self._receive, worker)
        return worker

    def _receive(self, worker: _Worker) -> None:
        """The worker's pipe is readable: replies, its ready message, or end-of-file (it died)."""
        try:
            while worker.lost is None and worker.conn.poll():
                message = worker.conn.recv()
                if message[0] == "ready":
                    worker.ready.set_result(message[1])
                elif message[0] == "failed":
                    worker.ready.set_exception(message[1])
                else:
                    rid, error, result, seconds = message
                    future = worker.pending.pop(rid, None)
                    if future is None or future.done():  # its caller went away meanwhile
                        continue
                    if error is None:
                        future.set_result((result, seconds))
                    else:
                        future.set_exception(error)
        except (EOFError, OSError):
            self._lost(worker)

    def _lost(self, worker: _Worker) -> None:
        asyncio.get_running_loop().remove_reader(worker.conn.fileno())
        worker.conn.close()
        n = len(worker.sessions)
        worker.lost = WorkerLost(f"worker process {worker.process.pid} exited"
                                 f"{'' if self.closing else ' unexpectedly'}; the {n} "
                                 f"session{'s' if n != 1 else ''} it ran ended")
        for future in worker.pending.values():
            if not future.done():
                future.set_exception(worker.lost)
        worker.pending.clear()
        if not worker.ready.done():
            worker.ready.set_exception(WorkerLost(
                f"worker process {worker.process.pid} exited while loading the model"))
        if self.closing:
            return
        self.sessions_lost += n
        log.error("%s", worker.lost)
        task = asyncio.get_running_loop().create_task(self._replace(worker))
        self.replacing.add(task)
        task.add_done_callback(self.replacing.discard)

    async def _replace(self, worker: _Worker) -> None:
        """Reap the dead worker (log its exit code) and start another in its slot."""
        await asyncio.to_thread(worker.process.join, 10)
        log.error("worker process %d exit code %s", worker.process.pid, worker.process.exitcode)
        if self.closing or not worker.ready.done() or worker.ready.exception() is not None:
            return  # one that never got ready is not restarted (it would fail again)
        self.replaced += 1
        new = self.slots[worker.slot] = self._spawn(worker.slot)
        try:
            await asyncio.wait_for(asyncio.shield(new.ready), self.start_timeout_s)
            log.info("worker process %d replaced by %d", worker.process.pid, new.process.pid)
        except Exception:  # noqa: BLE001 - reported; the other workers go on
            log.exception("replacing worker process %d failed", worker.process.pid)

    async def open(self) -> SessionHandle:
        usable = [w for w in self.slots if w is not None and w.usable]
        if not usable:
            raise WorkerLost("no worker process is running (see the server log)")
        worker = min(usable, key=lambda w: (len(w.sessions), w.slot))
        sid = next(self.ids)
        worker.sessions.add(sid)
        handle = _ProcessHandle(self, worker, sid)
        try:
            await handle._call("open")
        except BaseException:
            worker.sessions.discard(sid)
            raise
        return handle

    def send(self, worker: _Worker, sid: int, op: str, args: tuple) -> asyncio.Future | None:
        """Send one call; its future (None for ``close``, which has no reply)."""
        if worker.lost is not None:
            raise worker.lost
        rid = next(self.ids)
        future = None
        if op != "close":
            future = worker.pending[rid] = asyncio.get_running_loop().create_future()
        try:
            worker.conn.send((rid, sid, op, args))
        except OSError:
            worker.pending.pop(rid, None)
            self._lost(worker)
            raise worker.lost from None
        return future

    async def close(self) -> None:
        self.closing = True
        workers = [w for w in self.slots if w is not None]
        for worker in workers:
            if worker.lost is None:
                try:
                    worker.conn.send(None)  # finish the current call, then exit
                except OSError:
                    pass
        await asyncio.to_thread(_reap, [w.process for w in workers])
        for worker in workers:
            if worker.lost is None:
                self._lost(worker)

    def stats(self) -> dict[str, Any]:
        workers = [w for w in self.slots if w is not None and w.usable]
        rss = []
        for worker in workers:
            try:
                rss.append(psutil.Process(worker.process.pid).memory_info().rss)
            except psutil.Error:
                rss.append(0)
        return {"mode": "process", "workers": len(self.slots), "alive": len(workers),
                "sessions_per_worker": [len(w.sessions) for w in workers],
                "replaced": self.replaced, "sessions_lost": self.sessions_lost,
                "rss_bytes": psutil.Process().memory_info().rss + sum(rss),
                "worker_rss_bytes": rss}


def _reap(processes: list, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            log.warning("worker process %d did not stop; killing it", process.pid)
            process.kill()
            process.join(5)


class _ProcessHandle(SessionHandle):
    def __init__(self, pool: ProcessSessions, worker: _Worker, sid: int) -> None:
        self.pool, self.worker, self.sid = pool, worker, sid

    async def _call(self, op: str, *args: Any) -> tuple[Any, float]:
        return await self.pool.send(self.worker, self.sid, op, args)

    def close(self) -> None:
        self.worker.sessions.discard(self.sid)
        if self.worker.lost is None:
            try:
                self.pool.send(self.worker, self.sid, "close", ())
            except WorkerLost:
                pass


# ---- inside a worker process ---------------------------------------------------------------------


def worker_main(conn: Connection, source: FactorySource, threads: int) -> None:
    """A worker process: build and warm up the factory, then run calls in arrival order."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the
    # server stops its workers in order (running calls finish) instead
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"speechlm worker {os.getpid()}: %(levelname)s %(message)s")
    try:
        factory = build_factory(source)
        _limit_threads(threads)
        factory.warmup()
        conn.send(("ready", info_of(factory)))
    except BaseException as err:  # noqa: BLE001 - reported to the server, which raises it
        if not isinstance(err, SpeechLMError):  # a user's error is one line, printed by the CLI
            log.exception("cannot start")
        conn.send(("failed", _portable(err)))
        return
    calls: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=_read_calls, args=(conn, calls), daemon=True).start()
    _WorkerLoop(factory, conn).run(calls)


@dataclass(eq=False)
class _Run:
    """One call of one session in a worker process: its slices so far."""

    rid: int
    op: str
    steps: Iterator[tuple[bool, Any]]
    replied: bool = False
    seconds: float = 0.0  # compute so far (until the reply: the figure the reply carries)


class _WorkerLoop:
    """The calls of a worker's sessions, a slice at a time (see the module docstring)."""

    def __init__(self, factory: SessionFactory, conn: Connection) -> None:
        self.factory, self.conn = factory, conn
        self.sessions: dict[int, Any] = {}
        self.queued: dict[int, deque[tuple]] = {}  # per session: calls not started, in order
        self.running: dict[int, _Run] = {}          # per session: the call it is in
        self.turns: deque[int] = deque()            # sessions with work, whose slice comes first
        self.failed: dict[int, BaseException] = {}  # work done ahead that raised: the next call's

    def run(self, calls: queue.SimpleQueue) -> None:
        """Until the server says stop (``None``): every call it sent by then is answered."""
        stopping = False
        while not stopping or self.running or self.queued:
            try:  # wait for a call only when there is nothing to do
                while not stopping:
                    call = calls.get_nowait() if self.running or self.queued else calls.get()
                    if call is None:
                        stopping = True
                    else:
                        self.queued.setdefault(call[1], deque()).append(call)
                        if call[1] not in self.turns:
                            self.turns.append(call[1])
            except queue.Empty:
                pass
            if (self.running or self.queued) and not self.slice():
                return  # the server is gone

    def slice(self) -> bool:
        """Run one slice of the most urgent call; False once the server cannot be reached."""
        sid = self._pick()
        run = self.running.get(sid)
        if run is None:
            run = self._start(sid)
            if run is None:
                return True
        self.turns.remove(sid)  # its next slice comes after the others'
        self.turns.append(sid)
        start = time.perf_counter()
        try:
            reply, result = next(run.steps)
        except StopIteration:
            self._done(sid)
            return True
        except Exception as err:  # noqa: BLE001 - ends this session only (the server says why)
            self._done(sid)
            log.exception("session call %s failed", run.op)
            if run.replied:  # while working ahead: the session's next call reports it
                self.failed[sid] = err
                return True
            return self._send((run.rid, _portable(err), None, 0.0))
        if not run.replied:
            run.seconds += time.perf_counter() - start
        if reply:
            run.replied = True
            return self._send((run.rid, None, result, run.seconds))
        return True

    def _pick(self) -> int:
        """The session whose slice goes next: the first in turn that owes a reply (a call
        running or waiting); else the first in turn (working ahead)."""
        return next((sid for sid in self.turns if sid in self.queued or
                     not self.running[sid].replied), self.turns[0])

    def _done(self, sid: int) -> None:
        """The session's call ended; it leaves the turns unless another call waits."""
        del self.running[sid]
        if sid not in self.queued:
            self.turns.remove(sid)

    def _start(self, sid: int) -> _Run | None:
        """Start the session's next call; None when it needed no slice (``close``) or failed."""
        calls = self.queued[sid]
        rid, _, op, args = calls.popleft()
        if not calls:
            del self.queued[sid]
            self.turns.remove(sid)  # (back in turn if it runs a call)
        if op == "close":
            self.sessions.pop(sid, None)
            self.failed.pop(sid, None)
            return None
        if sid in self.failed:
            self._send((rid, _portable(self.failed.pop(sid)), None, 0.0))
            return None
        run = self.running[sid] = _Run(rid, op, self._steps(sid, op, args))
        if sid not in self.turns:
            self.turns.appendleft(sid)  # its first slice now
        return run

    def _steps(self, sid: int, op: str, args: tuple) -> Iterator[tuple[bool, Any]]:
        """A call's slices (run lazily: an error is raised by the slice, which reports it)."""
        if op == "open":
            self.sessions[sid] = self.factory.new_session()
            yield True, None
        else:
            yield from call_steps(self.sessions[sid], op, args)

    def _send(self, reply: tuple) -> bool:
        try:
            self.conn.send(reply)
        except OSError:
            return False  # the server is gone
        except Exception as err:  # noqa: BLE001 - a result that does not pickle
            self.conn.send((reply[0], _portable(err), None, 0.0))
        return True


def _read_calls(conn: Connection, calls: queue.SimpleQueue) -> None:
    """Drain the pipe as calls arrive, so the server's sends never wait for a busy worker."""
    try:
        while (call := conn.recv()) is not None:
            calls.put(call)
    except (EOFError, OSError):
        pass
    calls.put(None)


def _limit_threads(threads: int) -> None:
    """torch and numpy's BLAS on ``threads`` threads: workers x threads = cores, no oversubscription
    (BLAS's default of a thread per core spins on busy cores)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads, user_api="blas")
    if "torch" in sys.modules:  # the parrot and other numpy-only models never import it
        sys.modules["torch"].set_num_threads(threads)


def _portable(err: BaseException) -> BaseException:
    """``err`` if it survives pickling, else a RuntimeError with the same words."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(err).__name__}: {err}")
