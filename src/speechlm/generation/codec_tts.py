"""Zero-shot TTS, speech continuation and phoneme recognition with codec LMs.

:class:`CodecGenerator` loads what ``speechlm train`` wrote for a codec recipe: a VALL-E run dir
(``tts.json``: ``ar/`` + ``nar/``), an AudioLM run dir (``semantic/`` + ``coarse/`` + ``fine/``) or one
codec LM model dir (any layout). The codec comes from the path the models record. TTS::

    phonemes (espeak) per sentence  ->  AR: codebook 1 until <eos> (VALL-E) or the length model's
    frame count (single-model layouts)  ->  NAR: codebooks 2..K in K-1 parallel passes  ->  codec

A long text is synthesized sentence by sentence with the same voice prompt (memory does not grow
with the text), and the chunks are concatenated. A model trained with the ``asr`` task (VioLA)
also reads speech and writes its phonemes (:meth:`CodecGenerator.recognize`, greedy).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from speechlm.core.errors import CheckpointError, ConfigError, DataError
from speechlm.data.phonemes import Phonemizer, split_sentences
from speechlm.lm.codec.sequences import (PHONEMES, TASK_FAMILY, LengthModel, marker,
                                         nar_attention_mask, nar_example, prefix_ids, task_prefix)
from speechlm.lm.model import SpeechLM, load_speech_lm
from speechlm.lm.recipes.valle import read_stages
from speechlm.generation.sampling import Decoder, generate_codes, sample

log = logging.getLogger(__name__)


@dataclass
class Recognized:
    """Phonemes read from speech, with the LM's wall time."""

    phonemes: list[str]
    lm_seconds: float


@dataclass
class Generated:
    """Audio (16 kHz) and the codes it was decoded from, with generation timing."""

    audio: np.ndarray
    codes: np.ndarray            # (K, T) generated frames (without the prompt)
    lm_seconds: float            # wall time of the LMs (codec encode/decode excluded)

    @property
    def frames_per_second(self) -> float:
        return self.codes.shape[1] / max(self.lm_seconds, 1e-9)


class CodecGenerator:
    """TTS (:meth:`tts`) and continuation (:meth:`continue_audio`) with a trained codec LM."""

    def __init__(self, model_dir: str | Path) -> None:
        from speechlm.tokenizers.codec import load_codec

        self.path = Path(model_dir)
        stages = read_stages(self.path)
        self.kind = stages["kind"] if stages else "single"
        names = {k: v for k, v in (stages or {}).items() if k not in ("kind", "recipe")}
        self.models: dict[str, SpeechLM] = (
            {role: load_speech_lm(self.path / name) for role, name in names.items()} if stages
            else {"ar": load_speech_lm(self.path)})
        first = next(iter(self.models.values()))
        codec_dir = first.spec.extra.get("codec_dir")
        if not codec_dir:
            raise CheckpointError(f"{self.path}: not a codec LM (its speechlm.json records no codec_dir)")
        self.codec = load_codec(codec_dir)
        self._phonemizer: Phonemizer | None = None

    # ---- helpers ----
    @property
    def is_tts(self) -> bool:
        ar = self.models.get("ar")
        return ar is not None and PHONEMES in ar.spec.prefix

    @property
    def tasks(self) -> list[str]:
        """The tasks the (first) model was trained on, as its directory records them."""
        return list(next(iter(self.models.values())).spec.extra.get("tasks") or [])

    @property
    def abilities(self) -> set[str]:
        """What this run can do: ``tts``, ``continuation``, ``asr`` (speech -> phonemes)."""
        return ({"tts"} if self.is_tts else set()) | \
            ({"continuation"} if self.kind == "audiolm" or "continue" in self.tasks else set()) | \
            ({"asr"} if self.kind == "single" and "asr" in self.tasks else set())

    def phonemes(self, text: str, source: str = "text") -> list[int]:
        """Family-local phoneme ids of ``text`` (phonemes the model never saw are an error)."""
        lm = self.models["ar"]
        if self._phonemizer is None:
            self._phonemizer = Phonemizer(lm.spec.extra.get("language") or "en-us")
        inventory = {p: i for i, p in enumerate(lm.vocab.family(PHONEMES).labels)}
        phones = self._phonemizer.phonemize(text, source)
        unknown = sorted({p for p in phones if p not in inventory})
        if unknown:
            raise DataError(f"{source}: phonemes {unknown} were never seen in training")
        return [inventory[p] for p in phones]

    def prompt_codes(self, prompt: np.ndarray, seconds: float | None, source: str) -> np.ndarray:
        """(K, Tp) codes of the first ``seconds`` of the prompt audio."""
        codes = self.codec.encode(prompt, source=source)
        if seconds is not None:
            if seconds <= 0:
                raise ConfigError(f"--prompt-seconds={seconds} must be > 0")
            codes = codes[:, :max(1, int(round(seconds * self.codec.frame_rate)))]
        return codes

    # ---- TTS ----
    def tts(self, text: str, prompt: np.ndarray, prompt_seconds: float | None = 3.0,
            temperature: float = 1.0, top_k: int | None = None, seed: int = 0,
            source: str = "prompt") -> Generated:
        if not self.is_tts:
            raise ConfigError(f"{self.path}: not a TTS model (it reads no phonemes; trained for "
                              f"{self.kind} tasks {self.tasks})")
        chunks = split_sentences(text) if text and text.strip() else [text]
        phonemes = [ph for chunk in chunks for ph in self._fitting(chunk)]
        prompt_codes = self.prompt_codes(prompt, prompt_seconds, source)
        start, parts = time.perf_counter(), []
        for i, ph in enumerate(phonemes):
            parts.append(self._tts_chunk(ph, prompt_codes, temperature, top_k, seed + i))
        lm_seconds = time.perf_counter() - start
        codes = np.concatenate(parts, axis=1)
        return Generated(self.codec.decode(codes), codes, lm_seconds)

    def _fitting(self, chunk: str) -> list[list[int]]:
        """Phonemes of ``chunk``, split at word boundaries until each piece's estimated frames
        fit the model's context with at least one second of prompt."""
        ph = self.phonemes(chunk, f"text {chunk[:40]!r}")
        ar = self.models["ar"]
        space, limit = ar.space, ar.model.config.max_position_embeddings
        per_frame = space.layout.n_steps(100) / 100
        budget = int((limit - 1 - len(ph) - 4) / per_frame) - space.layout.n_steps(1) - \
            int(self.codec.frame_rate)
        words = chunk.split()
        fpp = float(ar.spec.extra["frames_per_phoneme"])
        if (3 if self.kind == "valle" else 1) * LengthModel(fpp).frames(len(ph)) <= budget \
                or len(words) < 2:
            return [ph]
        half = len(words) // 2
        return self._fitting(" ".join(words[:half])) + self._fitting(" ".join(words[half:]))

    def _tts_chunk(self, phonemes: list[int], prompt: np.ndarray, temperature: float,
                   top_k: int | None, seed: int) -> np.ndarray:
        ar = self.models["ar"]
        length = LengthModel(float(ar.spec.extra["frames_per_phoneme"])).frames(len(phonemes))
        parts = task_prefix("tts", phonemes=phonemes)
        if self.kind == "valle":
            first = self._ar_until_eos(ar, parts, prompt[:1], 3 * length + 25, temperature, top_k, seed)
            return self._nar(self.models["nar"], parts, prompt, first)
        K = ar.space.n_streams
        return self._generate(ar, parts, prompt[:K], length, temperature, top_k, seed)

    def _generate(self, lm: SpeechLM, parts, prompt: np.ndarray, n_frames: int,
                  temperature: float, top_k: int | None, seed: int) -> np.ndarray:
        """``n_frames`` frames after the prompt, through the model's layout; the prompt is cut
        from the front when prefix + prompt + frames exceed the model's context."""
        space = lm.space
        pre = prefix_ids(space, parts)[:, 1:]
        limit = lm.model.config.max_position_embeddings
        per_frame = space.layout.n_steps(100) / 100
        room = int((limit - 1 - pre.shape[1]) / per_frame) - n_frames - space.layout.n_steps(1)
        if room < 1:
            raise ConfigError(f"{lm.path}: {n_frames} frames do not fit the model's context of "
                              f"{limit} positions; use shorter sentences")
        if room < prompt.shape[1]:
            log.warning("%s: prompt cut to its last %d frames to fit the context", lm.path, room)
            prompt = prompt[:, -room:]
        return generate_codes(lm.model, space, prompt, n_frames, temperature, top_k, seed=seed,
                              prefix=pre)

    @torch.no_grad()
    def _ar_until_eos(self, lm: SpeechLM, parts, prompt: np.ndarray, max_frames: int,
                      temperature: float, top_k: int | None, seed: int) -> np.ndarray:
        """VALL-E's AR stage: codebook-1 codes after the prompt until ``<eos>`` (or max_frames)."""
        space = lm.space
        ids, _ = space.encode(prompt)
        feed = np.concatenate([prefix_ids(space, parts), ids], axis=1)[0]
        limit = lm.model.config.max_position_embeddings
        max_frames = min(max_frames, limit - feed.size - 1)
        if max_frames < 1:
            raise ConfigError(f"{lm.path}: prompt and text fill the model's context of {limit}")
        lo, hi = space.code_ranges()[0]
        allowed = torch.zeros(lm.model.config.vocab_size, dtype=torch.bool)
        allowed[lo:hi] = True
        allowed[lm.vocab.eos_id] = True
        decoder, gen = Decoder(lm.model), torch.Generator().manual_seed(seed)
        step, out = decoder.feed(feed), []
        for _ in range(max_frames):
            logits = step.row(0).masked_fill(~allowed, float("-inf"))
            token = sample(logits, temperature, top_k, None, gen)
            if token == lm.vocab.eos_id:
                break
            out.append(token - lo)
            step = decoder.feed([token])
        if not out:  # <eos> at once: one frame, so the chunk is not empty
            out.append(int(logits[0, lo:hi].argmax()))
        return np.asarray(out, dtype=np.int64)[None]

    @torch.no_grad()
    def _nar(self, lm: SpeechLM, parts, prompt: np.ndarray, known: np.ndarray) -> np.ndarray:
        """Codebooks ``known.shape[0]..K-1`` of the target frames, one greedy parallel pass each."""
        space = lm.space
        K, T = space.n_streams, known.shape[1]
        codes = np.zeros((K, T), dtype=np.int64)
        codes[:known.shape[0]] = known
        ranges = space.code_ranges()
        prompt = prompt[:K] if prompt is not None else None
        for stage in range(known.shape[0], K):
            ids = torch.from_numpy(nar_example(space, parts, codes, prompt, stage, "nar").input_ids)[None]
            mask = nar_attention_mask(ids, lm.vocab.pad_id)
            logits = lm.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
            lo, hi = ranges[stage]
            codes[stage] = logits[0, stage, -T:, lo:hi].argmax(-1).numpy()
        return codes

    # ---- speech -> phonemes (VioLA's ASR task) ----
    @torch.no_grad()
    def recognize(self, audio: np.ndarray, source: str = "audio") -> Recognized:
        """The phonemes of ``audio`` (greedy), from a codec LM trained with the ``asr`` task."""
        if "asr" not in self.abilities:
            raise ConfigError(f"{self.path}: not a speech recognition model (a {self.kind} model "
                              f"trained for tasks {self.tasks}; train one with tasks including asr)")
        lm = self.models["ar"]
        space = lm.space
        frames = self.codec.encode(audio, source=source)[:space.n_streams]
        codes, _ = space.encode(frames, source)
        feed = np.concatenate([prefix_ids(space, task_prefix("asr")), codes,
                               space.prefix_ids(TASK_FAMILY, [marker("<sep>")])], axis=1)
        limit = lm.model.config.max_position_embeddings
        if feed.shape[1] >= limit:
            raise DataError(f"{source}: {frames.shape[1]} codec frames do not fit the model's context "
                            f"of {limit} positions; split the audio into shorter pieces")
        labels = lm.vocab.family(PHONEMES).labels
        phoneme_ids = space.prefix_ids(PHONEMES, list(range(len(labels))))[0]
        to_label = dict(zip(phoneme_ids.tolist(), labels))
        column = np.full((space.n_rows, 1), lm.vocab.pad_id, dtype=np.int64)
        start, out = time.perf_counter(), []
        decoder = Decoder(lm.model)
        step = decoder.feed(feed)
        allowed = torch.zeros(step.row(0).shape[-1], dtype=torch.bool)   # row 0's vocabulary
        allowed[torch.from_numpy(phoneme_ids)] = True
        allowed[lm.vocab.eos_id] = True
        # at most twice the phonemes the train split's speaking rate predicts for this audio
        most = 2 * int(frames.shape[1] / float(lm.spec.extra["frames_per_phoneme"])) + 10
        for _ in range(min(most, limit - feed.shape[1])):
            logits = step.row(0).masked_fill(~allowed, float("-inf"))
            token = int(logits.argmax())
            if token == lm.vocab.eos_id:
                break
            out.append(to_label[token])
            column[0, 0] = token
            step = decoder.feed(column)
        return Recognized(out, time.perf_counter() - start)

    # ---- continuation ----
    def continue_audio(self, prompt: np.ndarray, seconds: float, prompt_seconds: float | None = 3.0,
                       temperature: float = 1.0, top_k: int | None = None, seed: int = 0,
                       source: str = "prompt") -> Generated:
        """``seconds`` of speech after the prompt (single-model ``continue`` task, or AudioLM)."""
        n = max(1, int(round(seconds * self.codec.frame_rate)))
        prompt_codes = self.prompt_codes(prompt, prompt_seconds, source)
        start = time.perf_counter()
        if self.kind == "audiolm":
            codes = self._audiolm(prompt, prompt_codes, n, temperature, top_k, seed)
        else:
            if "continuation" not in self.abilities:
                raise ConfigError(f"{self.path}: not a continuation model (tasks {self.tasks})")
            lm = self.models["ar"]
            K = lm.space.n_streams
            codes = self._generate(lm, task_prefix("continue"), prompt_codes[:K], n, temperature,
                                   top_k, seed)
        lm_seconds = time.perf_counter() - start
        return Generated(self.codec.decode(codes), codes, lm_seconds)

    def _audiolm(self, prompt: np.ndarray, prompt_codes: np.ndarray, n: int, temperature: float,
                 top_k: int | None, seed: int) -> np.ndarray:
        from speechlm.tokenizers import load_tokenizer

        semantic, coarse, fine = self.models["semantic"], self.models["coarse"], self.models["fine"]
        units, _ = load_tokenizer(semantic.spec.streams[0].tokenizer_dir).encode(prompt, dedup=False)
        units = np.asarray(units, dtype=np.int64)[:prompt_codes.shape[1]][None]
        new_units = self._generate(semantic, task_prefix("continue"), units, n, temperature, top_k, seed)
        all_units = np.concatenate([units, new_units], axis=1)[0]
        C = coarse.space.n_streams
        parts = task_prefix("semantic", units=all_units.tolist())
        coarse_codes = self._generate(coarse, parts, prompt_codes[:C, :units.shape[1]], n,
                                      temperature, top_k, seed)
        return self._nar(fine, task_prefix("continue"), None, coarse_codes)  # trained without a prompt
