"""Cost of one vocoder training step, without and with the GAN losses, in one process.

Measured as CPU seconds per step on 1 thread (``time.process_time``), which other jobs on a
shared machine inflate far less than wall-clock time, over synthetic batches of a training
config's shape. From it: the CPU seconds the config's schedule needs (``steps`` x ``gan_start``
plain steps + the rest with the discriminators).

    .venv/bin/python benchmarks/vocoder_step_cost.py [--config configs/vocoder/demo.yaml] [--steps 10]

Writes benchmarks/results/vocoder_step_cost.json (value = GAN step, baseline = plain step).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "vocoder" / "demo.yaml"))
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    parser.add_argument("--name", default="vocoder_step_cost")
    args = parser.parse_args()

    import numpy as np
    import torch

    from speechlm.core.config import build_config, config_to_dict, read_yaml_mapping
    from speechlm.vocoder.discriminators import Discriminators
    from speechlm.vocoder.model import VocoderConfig
    from speechlm.vocoder.train import Batcher, Utterance, VocoderTrainConfig, train_step
    from speechlm.vocoder.unit_vocoder import UnitVocoder

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = build_config(VocoderTrainConfig, {**read_yaml_mapping(args.config), "corpus": "-",
                                            "tokenizer": "-", "out": "-"}, args.config)
    vc = VocoderConfig(vocab_size=100, dim=cfg.dim, encoder_layers=cfg.encoder_layers,
                       decoder_layers=cfg.decoder_layers, voc_dim=cfg.voc_dim,
                       voc_layers=cfg.voc_layers, n_fft=cfg.n_fft, dropout=cfg.dropout)
    rng = np.random.default_rng(0)
    # 20 utterances of 3.6 s: 60 units of 3 frames, log-mel and noise of matching length
    items = [Utterance(np.repeat(rng.integers(0, 100, 60), 3),
                       rng.normal(-5, 1, (360, 80)).astype(np.float32),
                       rng.normal(0, 0.1, 180 * 320).astype(np.float32), "a", {}) for _ in range(20)]
    model, disc = UnitVocoder(vc, ["a"]), Discriminators(cfg.disc_width)
    batcher = Batcher(items, cfg, vc, np.full((1, 256), 1 / 16, np.float32), ["a"])
    opts = {"acoustic": torch.optim.AdamW(model.acoustic.parameters()),
            "generator": torch.optim.AdamW(model.generator.parameters()),
            "disc": torch.optim.AdamW(disc.parameters())}
    cost = {}
    for gan in (False, True):
        train_step(model, disc, opts, batcher(), cfg, gan)  # warm up
        start = time.process_time()
        for _ in range(args.steps):
            train_step(model, disc, opts, batcher(), cfg, gan)
        cost[gan] = (time.process_time() - start) / args.steps
    plain_steps = int(cfg.gan_start * cfg.steps)
    schedule = plain_steps * cost[False] + (cfg.steps - plain_steps) * cost[True]
    path = write_result(args.name, {"train_config": config_to_dict(cfg), "threads": 1,
                                    "timed_steps": args.steps},
                        cost[True], cost[False], "CPU s per step (1 thread); baseline = step "
                        "without the GAN losses", schedule_cpu_seconds=round(schedule, 1))
    print(f"plain step {cost[False]:.3f} CPU s, GAN step {cost[True]:.3f} CPU s "
          f"({cost[True] / cost[False]:.2f}x); {cfg.steps} steps with GAN from step {plain_steps}: "
          f"{schedule:.0f} CPU s; wrote {path}")


if __name__ == "__main__":
    main()
