"""What the server needs from a model: a factory of per-connection streaming sessions.

The server is model-agnostic. Anything that implements :class:`SessionFactory` can be served:
a speechlm model directory (:func:`speechlm.serve.models.load_model_factory`), the built-in
parrot used as a sound check and as the benchmarks' no-model baseline, or a user's own factory
(``speechlm serve --session module:attr``). Sessions are called in worker processes (or threads),
never from the event loop, and one call at a time (:mod:`speechlm.serve.workers`).

A session may also offer its calls in slices (:class:`SlicedSession`): a worker process then runs
other sessions' calls between the slices of a long one (the frame that ends a turn) and sends each
reply as soon as it is complete, before the work that only prepares the session's next call.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

STATES = ("listening", "speaking", "silent", "interrupted")


@dataclass
class Output:
    """What one pushed frame (or one control) produced."""

    state: str                                  # one of STATES
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # at sample_rate
    text: str = ""                              # new transcript / text tokens, if any
    tokens: list[int] = field(default_factory=list)  # new model tokens (units), if any
    events: list[str] = field(default_factory=list)  # e.g. "end_of_turn", "interrupted"


@runtime_checkable
class StreamingSession(Protocol):
    """One conversation: state across calls, reset between conversations."""

    def push(self, frame: np.ndarray) -> Output:
        """Consume one frame of ``frame_samples`` float32 samples; return what it produced."""
        ...

    def end_turn(self) -> Output:
        """The user says they finished speaking (a turn-based model answers now)."""
        ...

    def reset(self) -> None:
        """Forget the conversation (caches, buffers, state) and listen again."""
        ...


@runtime_checkable
class SlicedSession(Protocol):
    """A session whose ``push`` and ``end_turn`` can run in slices (optional)."""

    def slices(self, op: str, *args: Any) -> Iterator[Output | None]:
        """The work of ``op`` (``"push"`` or ``"end_turn"``) one slice per ``next()``: ``None``
        after each slice, the call's :class:`Output` once it is complete (the worker sends it at
        once), then ``None`` after each slice of work done ahead for later calls (finished
        before the session's next call runs). Calling ``op`` itself does all of it in one go."""
        ...


def run_slices(slices: Iterator[Output | None]) -> Output:
    """All of a sliced call at once; its output."""
    output = None
    for item in slices:
        if item is not None:
            output = item
    if output is None:
        raise RuntimeError("a sliced session call ended without an output")
    return output


@runtime_checkable
class SessionFactory(Protocol):
    """A loaded model that opens sessions; shared by all connections (read-only weights)."""

    name: str
    sample_rate: int
    frame_samples: int

    def new_session(self) -> StreamingSession:
        ...

    def warmup(self) -> None:
        """Run the model once so the first connection does not pay for lazy initialisation."""
        ...
