"""`speechlm corpus synth-dialogue`: two-channel espeak-ng conversations with events.

Deterministic for a seed: scripts come from one seeded generator, each dialogue's timing from
its own seed, and every chunk of dialogues is synthesized in a fresh process (see
:func:`speechlm.data.tts.in_fresh_processes`), so the bytes do not depend on ``workers``.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
from pathlib import Path

from speechlm.core.errors import DataError
from speechlm.core.progress import progress_bar
from speechlm.data.dialogue.corpus import DialogueCorpus, DialogueWriter
from speechlm.data.dialogue.layout import compose
from speechlm.data.dialogue.record import Dialogue
from speechlm.data.dialogue.config import DialogueConfig
from speechlm.data.dialogue.script import DialogueScript, plan_dialogues
from speechlm.data.dialogue.text import text_pools
from speechlm.data.synth import pick_voices
from speechlm.data.tts import Espeak, in_fresh_processes

log = logging.getLogger(__name__)


def _compose_chunk(jobs: list[tuple[DialogueScript, DialogueConfig]]) -> list[Dialogue]:
    espeak = Espeak()
    return [compose(espeak, script, config) for script, config in jobs]


def synthesize_dialogues(out_dir: str | Path, hours: float = 0.25, voices: int = 12,
                         heldout_voices: int = 4, seed: int = 0, text: str | Path | None = None,
                         workers: int = 2, config: DialogueConfig | None = None,
                         chunk_size: int = 2, show_progress: bool = True) -> DialogueCorpus:
    """Synthesize about ``hours`` of two-channel dialogue into ``out_dir``.

    Each dialogue draws its user, system and third voice from one pool: ``voices`` training
    voices (train/valid/test splits) or ``heldout_voices`` unseen ones (heldout split), so each
    pool needs at least 3 voices.
    """
    config = config or DialogueConfig()
    if hours <= 0 or voices < 3 or heldout_voices < 0 or 0 < heldout_voices < 3:
        raise DataError(f"need hours > 0, voices >= 3 and heldout_voices 0 or >= 3 (a dialogue "
                        f"has a user, a system and a third voice); got hours={hours}, "
                        f"voices={voices}, heldout_voices={heldout_voices}")
    pools = text_pools(text)
    train, heldout = pick_voices(voices, heldout_voices, seed)
    meta = {"name": Path(out_dir).name, "generator": "espeak-ng synth-dialogue",
            "channels": ["user", "system"],
            "params": {"hours": hours, "voices": voices, "heldout_voices": heldout_voices,
                       "seed": seed, "text": None if text is None else str(text),
                       **dataclasses.asdict(config)},
            "train_voices": [v.name for v in train], "heldout_voices": [v.name for v in heldout]}
    writer = DialogueWriter(out_dir, meta)
    jobs = ((script, config) for script in plan_dialogues(pools, train, heldout, config, seed))
    target, total, made = hours * 3600.0, 0.0, 0
    with progress_bar("synthesizing dialogues", total=target, unit="s audio",
                      enabled=show_progress) as advance:
        while total < target:
            # as many chunks as the remaining audio needs (by the mean so far), at most 4/worker
            mean_s = total / made if made else 30.0
            n_chunks = min(4 * workers, math.ceil((target - total) / (mean_s * chunk_size)))
            chunks = [list(itertools.islice(jobs, chunk_size)) for _ in range(n_chunks)]
            for dialogue in itertools.chain.from_iterable(
                    in_fresh_processes(_compose_chunk, chunks, workers)):
                writer.add(dialogue)
                total, made = total + dialogue.duration, made + 1
                advance(dialogue.duration)
                if total >= target:
                    break
    log.info("synthesized %d dialogues, %.1f s of audio, into %s", made, total, out_dir)
    return writer.close()
