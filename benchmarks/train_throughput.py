"""Training throughput: speechlm's loop vs a plain HF ``Trainer``, same model and packed data, one run.

Every variant trains the same Llama config (default: the ``tiny`` preset the demo trains, 4 x 128,
with the recipe's 16 x 128-token blocks; ``--preset small`` for 8 x 384) from the same init seed
on the same packed unit blocks (fake Markov-chain units, 100-unit vocabulary), AdamW +
warmup/cosine + grad clipping, the same number of torch threads (``--threads``, default 1), once
per precision: fp32, and bf16 autocast where the hardware multiplies in bf16 natively (CUDA, or a
CPU with AVX512-BF16/AMX). Within a precision both sides use the same one.

* ``ours``: ``speechlm.lm.loop.train_loop`` with ``compile=True``: model + loss compiled as one
  graph (no graph breaks, no attention mask), cross entropy on the shifted logits, fused AdamW,
  ``zero_grad(set_to_none=True)``, pre-packed blocks sliced from one array, no dataloader workers,
  loss/grad norm/tok/s logged every step, and the loop's attention rule (``attention: auto``: the
  math kernel for short blocks under CPU bf16, where torch's CPU flash kernel is slow; SDPA else).
* ``ours_no_compile``: the same loop as the recipes run it by default (``compile: false``).
* ``hf_trainer``: a plain default ``transformers.Trainer`` (its default optimizer, adamw_torch_fused,
  no ``torch_compile``, default SDPA attention, ``model(labels=...)`` loss, ``bf16=True`` for the
  bf16 rows) over a list of the same blocks, with the same lr, betas, weight decay,
  warmup/cosine schedule and clipping set through ``TrainingArguments``.
* ``hf_trainer_same_attention``: that Trainer given the attention kernel our loop picked (only
  where it differs from HF's default), so the ratio is not only the kernel choice.
* ``ours_k4``: the same loop (compiled) on a K = 4 multi-stream model (``MultiStreamForCausalLM``:
  4 embedding tables summed, the same Llama backbone, 4 heads; parallel layout), 4 codebooks of
  100 codes, the same number of sequence steps per block. tokens/s counts all 4 tokens of a step;
  its MFU counts the 4 heads.

Throughput is steady state: tokens/s between the end of step ``--warmup`` and the last step
(startup, compilation and final saves excluded for all). MFU divides achieved model FLOP/s
(6N + 12 L d T per token, PaLM appendix B) by a matmul peak of the same dtype measured in this
process. Peak RSS is per run (``/proc/self/clear_refs``), plus peak GPU memory on a GPU.
``attention_kernels`` times one causal attention layer, forward + backward, SDPA vs math, per
block length: the data behind the rule.

    .venv/bin/python benchmarks/train_throughput.py --repeats 5
    .venv/bin/python benchmarks/train_throughput.py --threads 2 --name train_throughput_2threads
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

VARIANTS = ("ours", "ours_no_compile", "hf_trainer", "hf_trainer_same_attention", "ours_k4")
K4 = 4  # streams of the multi-stream row (codec-like: 4 codebooks of 100 codes, parallel layout)


def reset_peak_rss() -> None:
    """Restart the peak-memory counters: process RSS, and GPU memory when there is a GPU."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, seconds: float = 3.0) -> float:
    """Best FLOP/s of an n x n matmul over ``seconds``."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        sync(device)
        t = time.perf_counter()
        for _ in range(4):
            a @ b
        sync(device)
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - t))
    return best


def attention_kernels(device: torch.device, dtype: torch.dtype, heads: int, head_dim: int,
                      tokens: int = 2048, lengths: tuple[int, ...] = (128, 256, 512, 1024)) -> dict:
    """ms per forward + backward of one attention layer over ``tokens`` tokens, per block length,
    through HF's own kernels as training calls them: "sdpa" with no mask (``is_causal``) and "eager"
    (math) with the additive fp32 causal mask HF builds for it."""
    from types import SimpleNamespace

    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.models.llama.modeling_llama import eager_attention_forward

    layer = SimpleNamespace(num_key_value_groups=1, training=True, is_causal=True)
    out = {}
    for length in lengths:
        shape = (max(1, tokens // length), heads, length, head_dim)
        q, k, v = (torch.randn(shape, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
        mask = torch.full((length, length), torch.finfo(torch.float32).min, device=device).triu(1)
        mask = mask.expand(shape[0], 1, -1, -1)
        scale = head_dim ** -0.5
        kernels = {"sdpa_ms": lambda: sdpa_attention_forward(layer, q, k, v, None, scaling=scale),
                   "math_ms": lambda: eager_attention_forward(layer, q, k, v, mask, scaling=scale)}
        row = {}
        for name, kernel in kernels.items():
            def run():
                kernel()[0].sum().backward()
            for _ in range(3):
                run()
            best = float("inf")
            for _ in range(5):
                sync(device)
                t = time.perf_counter()
                for _ in range(3):
                    run()
                sync(device)
                best = min(best, (time.perf_counter() - t) / 3)
            row[name] = round(best * 1e3, 2)
        row["math_vs_sdpa"] = round(row["sdpa_ms"] / row["math_ms"], 2)
        out[str(length)] = row
    return out


def fake_units(n_utts: int, vocab: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    nxt = rng.integers(0, vocab, size=(vocab, 3))
    out = []
    for _ in range(n_utts):
        u = [int(rng.integers(vocab))]
        for _ in range(int(rng.integers(40, 200))):
            u.append(int(nxt[u[-1], rng.integers(3)]))
        out.append(np.asarray(u, dtype=np.int64))
    return out


def flops_per_token(cfg, seq_len: int, heads: tuple[int, ...] | None = None) -> float:
    """Training FLOPs per sequence position; ``heads``: the vocabulary of each output head."""
    d, L, ff = cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size
    kv = cfg.num_key_value_heads * (d // cfg.num_attention_heads)
    n = L * (2 * d * d + 2 * d * kv + 3 * d * ff) + d * sum(heads or (cfg.vocab_size,))
    return 6 * n + 12 * L * d * seq_len


def multistream_records(records: list[np.ndarray], k: int, vocab: int) -> list[np.ndarray]:
    """(k, T) codes: k learnable transforms of each Markov chain (codebook-like streams)."""
    return [np.stack([(r[0] * (2 * i + 1) + 13 * i) % vocab for i in range(k)]) for r in records]


def train_config(args, common: dict, precision: str, out_dir: Path, compile_: bool):
    from speechlm.lm.config import TrainConfig

    return TrainConfig(name="ours", output_dir=str(out_dir), max_steps=args.steps, seed=0,
                       eval_every=10**6, save_every=10**6, keep_last=1, log_every=1,
                       tensorboard=False, progress=False, plot=False, compile=compile_,
                       precision=precision, threads=args.threads, **common)


def run_ours(args, common, precision, model, space, records, out_dir: Path, compile_: bool) -> dict:
    from speechlm.lm.checkpoints import ModelSpec
    from speechlm.lm.loop import train_loop
    from speechlm.lm.modeldir import ModelMeta
    from speechlm.lm.plots import read_metrics
    from speechlm.lm.recipes.pretrain import loop_data

    cfg = train_config(args, common, precision, out_dir, compile_)
    data = loop_data(cfg, space, {"train": records}, "fake units")
    train_loop(cfg, model, ModelSpec(space.vocab, ModelMeta.single("speech")), data)
    rows = read_metrics(out_dir)
    steady = [r["tok_s"] for r in rows if r["step"] > args.warmup]
    # harmonic mean of per-step rates = total tokens / total time over the steady window
    return {"tok_s": len(steady) / sum(1 / x for x in steady),
            "median_step_tok_s": statistics.median(steady),
            "mean_loss": statistics.fmean(r["loss"] for r in rows)}


def run_hf_trainer(args, common, precision, model, space, records, out_dir: Path) -> dict:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from speechlm.lm.packing import PackedExamples
    from speechlm.lm.sequences import get_builder

    examples = get_builder("pretrain", space).examples(records, "fake units")
    data = PackedExamples(examples, common["seq_len"], seed=0)
    blocks = data.blocks(0, args.steps * common["batch_size"]).input_ids
    dataset = [{"input_ids": b, "labels": b} for b in blocks]
    times: dict[int, float] = {}

    class Clock(TrainerCallback):
        def on_step_end(self, _args, state, control, **kwargs):
            times[state.global_step] = time.perf_counter()

    cuda = torch.cuda.is_available()
    targs = TrainingArguments(
        output_dir=str(out_dir), max_steps=args.steps, per_device_train_batch_size=common["batch_size"],
        learning_rate=common["lr"], weight_decay=common["weight_decay"],
        adam_beta1=common["beta1"], adam_beta2=common["beta2"], warmup_steps=common["warmup_steps"],
        lr_scheduler_type="cosine", max_grad_norm=common["clip_grad"], report_to="none",
        save_strategy="no", logging_steps=10**6, seed=0, data_seed=0, dataloader_num_workers=0,
        bf16=precision == "bf16", use_cpu=not cuda, disable_tqdm=True)
    result = Trainer(model=model, args=targs, train_dataset=dataset, callbacks=[Clock()]).train()
    tokens = common["batch_size"] * common["seq_len"]
    per_step = [tokens / (times[i] - times[i - 1]) for i in range(args.warmup + 1, args.steps + 1)]
    return {"tok_s": (args.steps - args.warmup) * tokens / (times[args.steps] - times[args.warmup]),
            "median_step_tok_s": statistics.median(per_step), "mean_loss": result.training_loss,
            "optim": str(targs.optim.value), "torch_compile": targs.torch_compile,
            "attention": model.config._attn_implementation}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10, help="steps excluded from timing")
    parser.add_argument("--preset", default="tiny", choices=["tiny", "small"])
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precisions", default="auto",
                        help="comma list of fp32,bf16; auto: fp32, plus bf16 where it is native")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, every variant")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats, best is kept")
    parser.add_argument("--name", default="train_throughput",
                        help="result name: writes benchmarks/results/NAME.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from speechlm.lm.init.cold import cold_init
    from speechlm.lm.layout import get_layout
    from speechlm.lm.model import build_model, count_params, model_config
    from speechlm.lm.precision import native_bf16, resolve_attention
    from speechlm.lm.streams import TokenSpace
    from speechlm.lm.vocab import SpeechVocab

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precisions = (["fp32", "bf16"] if native_bf16() else ["fp32"]) if args.precisions == "auto" \
        else args.precisions.split(",")
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    vocab = SpeechVocab.for_units(100)
    mcfg = model_config(args.preset, vocab)
    space = TokenSpace.single(vocab)
    records = [s[None] for s in fake_units(2000, 100)]  # (1, T) unit codes
    vocab4 = SpeechVocab.default()
    for i in range(K4):
        vocab4 = vocab4.add_family(f"codec_{i}", 100, kind="codec")
    space4 = TokenSpace(vocab4, tuple(f"codec_{i}" for i in range(K4)), get_layout("parallel", K4))
    records4 = multistream_records(records, K4, 100)
    common = dict(seq_len=args.seq_len, batch_size=args.batch_size, lr=1e-3, weight_decay=0.1,
                  beta1=0.9, beta2=0.95, warmup_steps=5, clip_grad=1.0)
    fpt = flops_per_token(mcfg, args.seq_len)
    fpt4 = flops_per_token(mcfg, args.seq_len, space4.row_sizes)
    peaks = {p: matmul_peak(device, dtypes[p]) for p in precisions}
    ours_attention = {p: resolve_attention(train_config(args, common, p, Path("."), True), p)
                      for p in precisions}
    variants = {p: [v for v in VARIANTS if v != "hf_trainer_same_attention" or ours_attention[p] != "sdpa"]
                for p in precisions}
    runs: dict[str, dict[str, list[dict]]] = {p: {v: [] for v in variants[p]} for p in precisions}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):  # interleaved, so load from other processes hits every variant
            for p in precisions:
                for v in variants[p]:
                    model = build_model(mcfg, seed=0)
                    out = Path(tmp) / f"{p}-{v}-{rep}"
                    reset_peak_rss()
                    if v == "ours_k4":
                        model = cold_init(space4, args.preset, seed=0)
                        r = run_ours(args, common, p, model, space4, records4, out, compile_=True)
                    elif v.startswith("ours"):
                        r = run_ours(args, common, p, model, space, records, out, compile_=v == "ours")
                    else:
                        if v == "hf_trainer_same_attention":
                            model.set_attn_implementation(ours_attention[p])
                        r = run_hf_trainer(args, common, p, model, space, records, out)
                    r["peak_rss_mb"] = peak_rss_mb()
                    if device.type == "cuda":
                        r["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
                    runs[p][v].append(r)
                    print(f"repeat {rep} {p} {v}: {r['median_step_tok_s']:.0f} tok/s (median step)",
                          flush=True)
    for p in precisions:
        peaks[p] = max(peaks[p], matmul_peak(device, dtypes[p]))  # best of before and after
    # Each variant's median step rate (robust to load bursts from other processes on a shared
    # machine), best over the interleaved repeats; total-time rates are kept too.
    by_precision = {}
    for p in precisions:
        best = {v: max(rs, key=lambda r: r["median_step_tok_s"]) for v, rs in runs[p].items()}
        for v, rs in runs[p].items():
            for r in rs:
                r["mfu"] = r["median_step_tok_s"] * (fpt4 if v == "ours_k4" else fpt) / peaks[p]
                if v == "ours_k4":  # positions/s -> tokens/s: K tokens per position
                    r["median_step_positions_s"] = r["median_step_tok_s"]
                    r["median_step_tokens_s"] = K4 * r["median_step_tok_s"]
        rate = {v: b["median_step_tok_s"] for v, b in best.items()}
        entry = {"attention_ours": ours_attention[p], "matmul_peak_tflops": peaks[p] / 1e12,
                 "ratio_vs_hf_trainer": rate["ours"] / rate["hf_trainer"],
                 "ratio_no_compile_vs_hf_trainer": rate["ours_no_compile"] / rate["hf_trainer"],
                 "pair_ratios": [o["median_step_tok_s"] / h["median_step_tok_s"]
                                 for o, h in zip(runs[p]["ours"], runs[p]["hf_trainer"])],
                 "k4_multistream": {"streams": K4, "layout": "parallel",
                                    "positions_s": rate["ours_k4"],
                                    "tokens_s": K4 * rate["ours_k4"], "mfu": best["ours_k4"]["mfu"],
                                    "positions_vs_k1_ours": rate["ours_k4"] / rate["ours"]},
                 "best": best, "runs": runs[p]}
        if "hf_trainer_same_attention" in rate:
            entry["ratio_vs_hf_trainer_same_attention"] = rate["ours"] / rate["hf_trainer_same_attention"]
        by_precision[p] = entry
    if {"fp32", "bf16"} <= set(by_precision):  # what bf16 buys each side, same variant
        for v in ("ours", "ours_no_compile", "hf_trainer"):
            by_precision["bf16"][f"bf16_vs_fp32_{v}"] = (by_precision["bf16"]["best"][v]["median_step_tok_s"]
                                                        / by_precision["fp32"]["best"][v]["median_step_tok_s"])
    kernels = {p: attention_kernels(device, dtypes[p], mcfg.num_attention_heads,
                                    mcfg.hidden_size // mcfg.num_attention_heads) for p in precisions}
    head = "bf16" if "bf16" in by_precision else precisions[0]
    config = {"params": count_params(build_model(mcfg, 0)), "preset": args.preset,
              "hidden": mcfg.hidden_size, "layers": mcfg.num_hidden_layers,
              "heads": mcfg.num_attention_heads, "vocab": vocab.size, "seq_len": args.seq_len,
              "batch_size": args.batch_size, "steps": args.steps, "timed_steps": args.steps - args.warmup,
              "threads": torch.get_num_threads(), "precisions": precisions, "flops_per_token": fpt,
              "k4_params": count_params(cold_init(space4, args.preset, 0)),
              "k4_flops_per_position": fpt4,
              "device": str(device)}
    path = write_result(
        args.name, config, by_precision[head]["best"]["ours"]["median_step_tok_s"],
        by_precision[head]["best"]["hf_trainer"]["median_step_tok_s"], "tokens/s (median step)",
        headline=f"{head}: our loop (compile) vs a plain default HF Trainer, both {head}",
        by_precision={p: {k: v for k, v in e.items() if k != "runs"} for p, e in by_precision.items()},
        all_runs={p: e["runs"] for p, e in by_precision.items()}, attention_kernels=kernels,
        note=("best of interleaved repeats per variant (median step rate); same lr, betas, weight "
              "decay, warmup steps and clipping; ours decays cosine to 0.1 x lr (recipe default), "
              "HF's to 0, and HF's sampler shuffles the same blocks, so mean losses differ slightly. "
              "mean_loss = mean train loss over all steps (HF: TrainOutput.training_loss)"))
    print(json.dumps({p: {k: e[k] for k in e if k.startswith(("ratio", "attention", "bf16", "k4"))}
                      for p, e in by_precision.items()}, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
