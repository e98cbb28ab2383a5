"""How synthetic conversations unfold (kept free of heavy imports: the CLI reads its defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field

from speechlm.core.errors import ConfigError

NOISE_LEVELS = ("noise_low", "noise_mid", "noise_high")


@dataclass(frozen=True)
class DialogueConfig:
    """How conversations unfold; every probability is per exchange or per turn."""

    exchanges: tuple[int, int] = (2, 3)          # query/response exchanges per dialogue (min, max)
    overlap_prob: float = 0.25                   # the reply starts on one of the query's last words
    gap_median_s: float = 0.35                   # otherwise a log-normal gap (clipped 0.08..1.5 s)
    pause_prob: float = 0.3                      # a turn gets a hesitation pause mid-sentence
    pause_s: tuple[float, float] = (0.5, 1.5)    # its length (pauses between sentences: 0.2..0.6)
    backchannel_prob: float = 0.5                # the listener backchannels during a turn >= 2 s
    user_backchannel_overlap: float = 0.0        # share of the user's backchannels that start on a
                                                 # system word (the rest: in its pauses); the system's
                                                 # are half and half. A duplex model hears the user
                                                 # 80 ms late and cannot tell a backchannel from a
                                                 # barge-in in time to stop within 200 ms, so by
                                                 # default every user sound over system speech is
                                                 # one it must stop for
    interruption_prob: float = 0.7               # the user barges in on the response
    early_interruption_prob: float = 0.3         # ... 0.15-1 s into it (else later): a
                                                 # system that starts to speak must stop for a
                                                 # user who starts just after it, too
    interrupt_stop_ms: float = 120.0             # ... and the system is silent 0.5-1x this after
                                                 # it: 60-120 ms, when a real-time duplex model
                                                 # (hearing 2 frames late: look-ahead 1) has heard
                                                 # 1-4 frames of the barge-in (a cut before it can
                                                 # hear teaches no reaction to the user)
    non_query_prob: float = 0.4                  # non-query audio before the exchange's query
    noise_db: dict[str, float] = field(default_factory=lambda: dict(
        zip(NOISE_LEVELS, (-40.0, -30.0, -20.0))))  # pink-noise RMS per level, dBFS
    other_gain: tuple[float, float] = (0.3, 0.7)  # level of the third voice (farther away)
    noise_std: float = 3e-3                      # dither in both channels
    valid_fraction: float = 0.1                  # of train-voice dialogues
    test_fraction: float = 0.1

    def __post_init__(self) -> None:
        probs = {k: getattr(self, k) for k in ("overlap_prob", "pause_prob", "backchannel_prob",
                                                "user_backchannel_overlap", "interruption_prob",
                                                "early_interruption_prob",
                                                "non_query_prob",
                                                "valid_fraction", "test_fraction")}
        bad = {k: v for k, v in probs.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ConfigError(f"dialogue options must lie in [0, 1]: {bad}")
        if self.valid_fraction + self.test_fraction >= 1.0:
            raise ConfigError(f"valid_fraction + test_fraction must be < 1 (got "
                              f"{self.valid_fraction} + {self.test_fraction})")
        if not 40.0 <= self.interrupt_stop_ms <= 2000.0:
            raise ConfigError(f"interrupt_stop_ms={self.interrupt_stop_ms}: use 40..2000 ms")
        if not 1 <= self.exchanges[0] <= self.exchanges[1]:
            raise ConfigError(f"exchanges={self.exchanges}: need 1 <= min <= max")
        if set(self.noise_db) != set(NOISE_LEVELS):
            raise ConfigError(f"noise_db needs exactly the levels {NOISE_LEVELS}")
        low, high = self.pause_s
        if self.noise_std < 0 or self.gap_median_s <= 0 or not 0 < low <= high:
            raise ConfigError(f"noise_std={self.noise_std}, gap_median_s={self.gap_median_s}, "
                              f"pause_s={self.pause_s}: need >= 0, > 0 and 0 < min <= max")
