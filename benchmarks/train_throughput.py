"""Training throughput: speechlm's loop vs a plain HF ``Trainer``, same model and packed data, one run.

Both train the same Llama config (default: the ``tiny`` preset the demo trains, 4 x 128, with the
recipe's 16 x 128-token blocks; ``--preset small`` for 8 x 384) with the same init seed on the same
packed unit blocks (fake Markov-chain units, 100-unit vocabulary), AdamW + warmup/cosine + grad
clipping, fp32 on CPU / bf16 on GPU, the same number of torch threads (``--threads``, default 1).

* ours: ``speechlm.lm.train.train_loop`` with ``compile=True``: model + loss compiled as one graph
  (no graph breaks, no attention mask: SDPA ``is_causal``), cross entropy on the shifted logits,
  fused AdamW, ``zero_grad(set_to_none=True)``, pre-packed blocks sliced from one array, no
  dataloader workers; logs loss/grad norm/tok/s every step.
* HF: a plain default ``transformers.Trainer`` (its default optimizer, adamw_torch_fused; no
  ``torch_compile``; ``model(labels=...)`` loss) over a list of the same blocks, with the same lr,
  betas, weight decay, warmup/cosine schedule and grad clipping set through ``TrainingArguments``.

Throughput is steady state: tokens/s between the end of step ``--warmup`` and the last step
(startup, compilation and final saves excluded for both). MFU divides achieved model FLOP/s
(6N + 12 L d T per token, PaLM appendix B) by a matmul peak measured in this process. Peak RSS is
per phase (``/proc/self/clear_refs``), plus the process maximum.

    .venv/bin/python benchmarks/train_throughput.py --out benchmarks/results/train_throughput.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, seconds: float = 3.0) -> float:
    """Best FLOP/s of an n x n matmul over ``seconds``."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(4):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - t))
    return best


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


def flops_per_token(cfg, seq_len: int) -> float:
    d, L, V, ff = cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size, cfg.intermediate_size
    kv = cfg.num_key_value_heads * (d // cfg.num_attention_heads)
    n = L * (2 * d * d + 2 * d * kv + 3 * d * ff) + d * V  # matmul params incl. LM head
    return 6 * n + 12 * L * d * seq_len


def run_ours(args, cfg_kwargs, model, vocab, seqs, out_dir: Path) -> dict:
    from speechlm.lm.train import ModelSpec, TrainConfig, train_loop
    from speechlm.lm.plots import read_metrics

    cfg = TrainConfig(name="ours", output_dir=str(out_dir), max_steps=args.steps, seed=0,
                      eval_every=10**6, save_every=10**6, keep_last=1, log_every=1,
                      tensorboard=False, progress=False, plot=False, compile=args.compile,
                      **cfg_kwargs)
    spec = ModelSpec(vocab=vocab, kind="speech", tokenizer_dir=None, extra={})
    train_loop(cfg, model, spec, seqs, [])
    rows = read_metrics(out_dir)
    steady = [r["tok_s"] for r in rows if r["step"] > args.warmup]
    # harmonic mean of per-step rates = total tokens / total time over the steady window
    tok_s = len(steady) / sum(1 / x for x in steady)
    return {"tok_s": tok_s, "median_step_tok_s": statistics.median(steady),
            "mean_loss": statistics.fmean(r["loss"] for r in rows)}


def run_hf_trainer(args, cfg_kwargs, model, seqs, vocab, out_dir: Path) -> dict:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from speechlm.lm.data import PackedBlocks

    data = PackedBlocks(seqs, cfg_kwargs["seq_len"], vocab.eos_id, seed=0)
    n = args.steps * cfg_kwargs["batch_size"]
    blocks = data.blocks(0, n)
    dataset = [{"input_ids": b, "labels": b} for b in blocks]
    times: dict[int, float] = {}

    class Clock(TrainerCallback):
        def on_step_end(self, _args, state, control, **kwargs):
            times[state.global_step] = time.perf_counter()

    targs = TrainingArguments(
        output_dir=str(out_dir), max_steps=args.steps, per_device_train_batch_size=cfg_kwargs["batch_size"],
        learning_rate=cfg_kwargs["lr"], weight_decay=cfg_kwargs["weight_decay"],
        adam_beta1=cfg_kwargs["beta1"], adam_beta2=cfg_kwargs["beta2"], warmup_steps=cfg_kwargs["warmup_steps"],
        lr_scheduler_type="cosine", max_grad_norm=cfg_kwargs["clip_grad"], report_to="none",
        save_strategy="no", logging_steps=10**6, seed=0, data_seed=0, dataloader_num_workers=0,
        bf16=torch.cuda.is_available(), use_cpu=not torch.cuda.is_available(), disable_tqdm=True)
    trainer = Trainer(model=model, args=targs, train_dataset=dataset, callbacks=[Clock()])
    result = trainer.train()
    steps = args.steps - args.warmup
    tokens = cfg_kwargs["batch_size"] * cfg_kwargs["seq_len"]
    tok_s = steps * tokens / (times[args.steps] - times[args.warmup])
    per_step = [tokens / (times[i] - times[i - 1]) for i in range(args.warmup + 1, args.steps + 1)]
    return {"tok_s": tok_s, "median_step_tok_s": statistics.median(per_step),
            "mean_loss": result.training_loss, "optim": str(targs.optim.value),
            "torch_compile": targs.torch_compile}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/train_throughput.json")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10, help="steps excluded from timing")
    parser.add_argument("--preset", default="tiny", choices=["tiny", "small"])
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="torch.compile in our loop (default on)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats, best is kept")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from speechlm.lm.model import build_model, count_params, model_config
    from speechlm.lm.vocab import SpeechVocab

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    vocab = SpeechVocab.for_units(100)
    mcfg = model_config(args.preset, vocab)
    seqs = [s + 4 for s in fake_units(2000, 100)]
    cfg_kwargs = dict(seq_len=args.seq_len, batch_size=args.batch_size, lr=1e-3, weight_decay=0.1,
                      beta1=0.9, beta2=0.95, warmup_steps=5, clip_grad=1.0)
    peak = matmul_peak(device, dtype)
    fpt = flops_per_token(mcfg, args.seq_len)
    hf_runs, our_runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):  # interleaved, so load from other processes hits both
            reset_peak_rss()
            hf = run_hf_trainer(args, cfg_kwargs, build_model(mcfg, seed=0), seqs, vocab, Path(tmp) / f"hf{rep}")
            hf["peak_rss_mb"] = peak_rss_mb()
            hf_runs.append(hf)
            reset_peak_rss()
            ours = run_ours(args, cfg_kwargs, build_model(mcfg, seed=0), vocab, seqs, Path(tmp) / f"ours{rep}")
            ours["peak_rss_mb"] = peak_rss_mb()
            our_runs.append(ours)
            print(f"repeat {rep}: ours {ours['median_step_tok_s']:.0f} tok/s, HF Trainer "
                  f"{hf['median_step_tok_s']:.0f} tok/s (median step)", flush=True)
    peak = max(peak, matmul_peak(device, dtype))  # peak again after the runs: best of both
    for r in our_runs + hf_runs:
        r["mfu"] = r["median_step_tok_s"] * fpt / peak
    # The headline uses each side's median step rate (robust to load bursts from other processes
    # on a shared machine), best over the interleaved repeats; total-time rates are kept as well.
    ours = max(our_runs, key=lambda r: r["median_step_tok_s"])
    hf = max(hf_runs, key=lambda r: r["median_step_tok_s"])
    pair_ratios = [o["median_step_tok_s"] / h["median_step_tok_s"] for o, h in zip(our_runs, hf_runs)]
    result = {
        "name": "train_throughput",
        "config": {"params": count_params(build_model(mcfg, 0)), "preset": args.preset,
                   "hidden": mcfg.hidden_size, "layers": mcfg.num_hidden_layers,
                   "heads": mcfg.num_attention_heads, "vocab": vocab.size, "seq_len": args.seq_len,
                   "batch_size": args.batch_size, "steps": args.steps, "timed_steps": args.steps - args.warmup,
                   "dtype": str(dtype), "compile": args.compile, "threads": torch.get_num_threads(),
                   "flops_per_token": fpt},
        "value": ours["median_step_tok_s"], "baseline": hf["median_step_tok_s"],
        "ratio": ours["median_step_tok_s"] / hf["median_step_tok_s"],
        "ratio_total_time": ours["tok_s"] / hf["tok_s"], "pair_ratios": pair_ratios,
        "unit": "tokens/s (median step)", "ours": ours, "hf_trainer": hf,
        "all_runs": {"ours": our_runs, "hf_trainer": hf_runs},
        "note": ("best of interleaved repeats for each side (median step rate); same lr, betas, "
                 "weight decay, warmup steps and clipping; ours decays cosine to 0.1 x lr (recipe "
                 "default), HF's cosine to 0, and HF's sampler shuffles the same blocks, so the "
                 "mean losses differ slightly. "
                 "ours = speechlm train_loop, compile=True (model+loss one graph, no mask, "
                 "SDPA is_causal, own shifted cross entropy, fused AdamW, per-step logging); "
                 "hf_trainer = plain default transformers.Trainer (default optimizer "
                 "adamw_torch_fused, no torch_compile, model(labels=...) loss, no workers). "
                 "mean_loss = mean train loss over all steps (HF: TrainOutput.training_loss)"),
        "matmul_peak_tflops": peak / 1e12, "mfu": ours["mfu"], "peak_rss_mb_process": peak_rss_mb(),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                    "torch": torch.__version__, "python": sys.version.split()[0]},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("value", "baseline", "ratio", "mfu", "matmul_peak_tflops")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
