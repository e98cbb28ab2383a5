"""AudioLM (Borsos et al. 2023), hierarchical: stage 1 a semantic-unit LM (continuation), stage 2
semantic units -> coarse codebooks ``0..codebooks-1`` (prefix: all semantic units of the
utterance, target: the coarse codes; delay layout), stage 3 coarse -> fine codebooks with the NAR
model. The mixed single-stage comparison is ``codec_lm`` over the semantically distilled codec.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from speechlm.core.errors import ConfigError
from speechlm.core.files import atomic_write_json
from speechlm.lm.codec.sequences import UNITS, codec_family
from speechlm.lm.codec.train import load_dataset, n_codebooks, train_ar, train_nar
from speechlm.lm.config import TrainConfig
from speechlm.lm.recipes.valle import TTS_FILE


def run(cfg: TrainConfig, resume: bool = False, source: str = "config") -> Path:
    dataset, _ = load_dataset(cfg, source)
    if not dataset.has_units:
        raise ConfigError(f"{source}: audiolm needs semantic units in {cfg.tokens_dir} (build it "
                          "with tokenizer_dir)")
    K = dataset.meta["n_codebooks"]
    coarse = n_codebooks(cfg, dataset) if cfg.codebooks else max(1, K // 2)
    if coarse >= K:
        raise ConfigError(f"{source}: codebooks={coarse} coarse codebooks leave no fine ones of {K}")
    out = Path(cfg.output_dir)
    semantic = train_ar(replace(cfg, output_dir=str(out / "semantic"), layout="flatten", delays=None,
                                depth_layers=0), (UNITS,), ["continue"], "semantic", resume, source)
    delays = list(range(coarse))
    acoustic = train_ar(replace(cfg, output_dir=str(out / "coarse"), layout="delay" if coarse > 1
                                else "flatten", delays=delays if coarse > 1 else None),
                        tuple(codec_family(k) for k in range(coarse)), ["semantic"], "coarse",
                        resume, source, codebook_index=list(range(coarse)))
    fine = train_nar(replace(cfg, output_dir=str(out / "fine"), codebooks=None), "continue", coarse,
                     resume, source)
    atomic_write_json(out / TTS_FILE, {"kind": "audiolm", "semantic": semantic.name,
                                       "coarse": acoustic.name, "fine": fine.name, "recipe": cfg.name})
    return out
