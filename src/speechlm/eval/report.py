"""Readable reports: Markdown + self-contained HTML folders with matplotlib PNG plots.

``write_eval_report`` reports one model (``speechlm eval``); ``write_demo_report`` compares
models (cold vs warm) with loss curves, tokenizer metrics, stage timings and audio samples.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

CHANCE = 0.5


def format_entry(entry: dict) -> str:
    """``accuracy [lo, hi]`` of a benchmark entry."""
    lo, hi = entry["ci95"]
    return f"{entry['accuracy']:.3f} [{lo:.3f}, {hi:.3f}]"


def bar_chart(series: dict[str, dict[str, dict]], path: str | Path, title: str) -> Path:
    """Grouped bars: x = benchmarks, one bar per model, 95% CI as error bars, chance line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({b for results in series.values() for b in results})
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(names) + 2), 3.6), dpi=100)
    for k, (model, results) in enumerate(series.items()):
        xs, ys, err = [], [], [[], []]
        for i, name in enumerate(names):
            if name in results:
                e = results[name]
                xs.append(i + (k - (len(series) - 1) / 2) * width)
                ys.append(e["accuracy"])
                err[0].append(max(e["accuracy"] - e["ci95"][0], 0))
                err[1].append(max(e["ci95"][1] - e["accuracy"], 0))
        ax.bar(xs, ys, width, yerr=np.array(err), capsize=3, label=model)
    ax.axhline(CHANCE, color="gray", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (95% CI)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def markdown_table(models: dict[str, dict]) -> str:
    """Rows = benchmarks, columns = models (``{model: {benchmark: entry}}``); cells ``acc [lo, hi]``."""
    names = sorted({b for r in models.values() for b in r})
    lines = ["| benchmark | " + " | ".join(models) + " |",
             "|---|" + "---|" * len(models)]
    for name in names:
        cells = []
        for r in models.values():
            e = r.get(name)
            cells.append(format_entry(e) + f" (n={e['n']})" if e else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _html_table(models: dict[str, dict]) -> str:
    names = sorted({b for r in models.values() for b in r})
    head = "".join(f"<th>{html.escape(m)}</th>" for m in models)
    rows = []
    for name in names:
        cells = []
        for r in models.values():
            e = r.get(name)
            if e is None:
                cells.append("<td>–</td>")
                continue
            best = e["ci95"][0] > CHANCE
            per_token = (f"<br><small>per-token mean: {e['accuracy_mean']:.3f}</small>"
                         if "accuracy_mean" in e else "")
            cells.append(f"<td class='{'good' if best else ''}'>{e['accuracy']:.3f}"
                         f"<br><small>[{e['ci95'][0]:.3f}, {e['ci95'][1]:.3f}] n={e['n']}</small>"
                         f"{per_token}</td>")
        rows.append(f"<tr><th>{html.escape(name)}</th>{''.join(cells)}</tr>")
    return f"<table><tr><th>benchmark</th>{head}</tr>{''.join(rows)}</table>"


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;
text-align:center}td.good{background:#e6f4e6}img{max-width:100%;border:1px solid #eee}
small{color:#666}.clips td{text-align:left}h2{border-bottom:1px solid #ddd;padding-bottom:3px}"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")


def _groups_section(benchmarks: dict) -> str:
    parts = []
    for name, entry in benchmarks.items():
        if "groups" not in entry:
            continue
        rows = "".join(f"<tr><td style='text-align:left'>{html.escape(g)}</td>"
                       f"<td>{format_entry(e)}</td><td>{e['n']}</td></tr>"
                       for g, e in entry["groups"].items())
        parts.append(f"<h3>{html.escape(name)} by group</h3><table><tr><th>group</th>"
                     f"<th>accuracy [95% CI]</th><th>n</th></tr>{rows}</table>")
    return "".join(parts)


REFERENCE = "untrained (same architecture)"


def with_reference(name: str, benchmarks: dict) -> dict[str, dict]:
    """``{name: benchmarks}`` plus the untrained reference column when the entries carry one."""
    models = {name: benchmarks}
    reference = {b: dict(e["untrained"], n=e["n"]) for b, e in benchmarks.items()
                 if e.get("untrained")}
    if reference:
        models[REFERENCE] = reference
    return models


def write_eval_report(results: dict, out_dir: str | Path) -> Path:
    """``report.md`` + ``index.html`` + ``accuracy.png`` for one model's results, next to its
    untrained reference when it was scored."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(results["model"]).name
    models = with_reference(name, results["benchmarks"])
    bar_chart(models, out / "accuracy.png", f"{name}: pairwise accuracy")
    note = ("Accuracy compares summed log-likelihoods of the scored tokens (a StoryCloze item's "
            "ending, not its context; ties count 0.5); brackets give a 95% bootstrap interval. "
            "Chance is 0.5.")
    if REFERENCE in models:
        note += (f" The `{REFERENCE}` column is the check: the benchmarks are built so that it "
                 "sits at chance; read the model against it.")
    md = [f"# Evaluation of `{name}`", "",
          f"kind: {results['kind']}, tokenizer: {results.get('tokenizer')}, "
          f"dedup: {results.get('dedup')}", "", markdown_table(models), "", note, "",
          "![accuracy](accuracy.png)", ""]
    for bench, entry in results["benchmarks"].items():
        for g, e in entry.get("groups", {}).items():
            md.append(f"- {bench} / {g}: {format_entry(e)} (n={e['n']})")
    (out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    body = (f"<p>model <code>{html.escape(results['model'])}</code> ({results['kind']}), "
            f"tokenizer <code>{html.escape(str(results.get('tokenizer')))}</code></p>"
            + _html_table(models) + f"<p>{html.escape(note)}</p>"
            + "<img src='accuracy.png' alt='accuracy'>" + _groups_section(results["benchmarks"]))
    (out / "index.html").write_text(_page(f"speechlm eval: {name}", body), encoding="utf-8")
    return out / "index.html"


def loss_curves(runs: dict[str, str | Path], path: str | Path) -> Path | None:
    """Train (and validation, when logged) loss against step for each run's ``metrics.jsonl``."""
    import matplotlib

    from speechlm.lm.plots import read_metrics

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    plotted = False
    for k, (name, run_dir) in enumerate(runs.items()):
        rows = read_metrics(run_dir)
        train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
        valid = [(r["step"], r["valid_loss"]) for r in rows if "valid_loss" in r]
        color = f"C{k}"
        if train:
            ax.plot(*zip(*train), color=color, alpha=0.8, label=f"{name} train")
            plotted = True
        if valid:
            ax.plot(*zip(*valid), color=color, linestyle="--", marker="o", markersize=3,
                    label=f"{name} valid")
            plotted = True
    if not plotted:
        plt.close(fig)
        return None
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title("training loss")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def versus_reference(models: dict[str, dict], reference: str) -> dict[str, dict]:
    """Each model minus the ``reference`` model per benchmark (``{model: {benchmark: {diff,
    separated}}}``): ``separated`` when the two 95% intervals do not overlap, the reading the
    demo states (a model learned something the untrained one cannot show)."""
    ref = models.get(reference) or {}
    out = {}
    for name, results in models.items():
        if name == reference or not results:
            continue
        out[name] = {}
        for bench, e in results.items():
            r = ref.get(bench)
            if r is None:
                continue
            out[name][bench] = {"diff": round(e["accuracy"] - r["accuracy"], 4),
                                "separated": e["ci95"][0] > r["ci95"][1]
                                or e["ci95"][1] < r["ci95"][0]}
    return out


def _versus_section(versus: dict, reference: str) -> str:
    if not versus:
        return ""
    benches = sorted({b for v in versus.values() for b in v})
    head = "".join(f"<th>{html.escape(b)}</th>" for b in benches)
    rows = []
    for name, v in versus.items():
        cells = "".join(
            f"<td class='{'good' if v[b]['separated'] and v[b]['diff'] > 0 else ''}'>"
            f"{v[b]['diff']:+.3f}{'' if v[b]['separated'] else '<br><small>intervals overlap</small>'}"
            "</td>" if b in v else "<td>–</td>" for b in benches)
        rows.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    return (f"<h3>Against the {html.escape(reference)} reference</h3><p>Accuracy minus the "
            f"{html.escape(reference)} model's (same architecture, random weights); green when the "
            "model is above it and the two 95% intervals do not overlap.</p>"
            f"<table><tr><th>model</th>{head}</tr>{''.join(rows)}</table>")


def write_demo_report(report: dict, out_dir: str | Path, runs: dict[str, str | Path] | None = None
                      ) -> Path:
    """``index.html`` + ``report.json`` + ``report.md`` for the demo.

    ``report``: ``models: {name: {path, results, run}}`` (``results``: ``{benchmark: entry}``,
    ``run``: model/tokenizer metadata, as :func:`speechlm.eval.harness.split_results` gives),
    optional ``tokenizer_metrics``, ``generation: {model: {metrics, samples: [{prompt_text,
    wav, transcript}]}}`` (wav paths relative to ``out_dir``), ``timings: {stage: seconds}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    models = {name: m["results"] for name, m in report.get("models", {}).items()
              if m.get("results")}
    body = []
    if models:
        bar_chart(models, out / "accuracy.png",
                  "pairwise accuracy, 95% CI (chance 0.5)")
        body.append("<h2>Benchmarks</h2><p>Each cell: accuracy with its 95% bootstrap interval; "
                    "green when the interval is above chance. Speech LMs hear the spoken "
                    "benchmarks (held-out voices); the text LM reads the same pairs as text.</p>"
                    + _html_table(models) + "<img src='accuracy.png' alt='accuracy chart'>"
                    + _versus_section(report.get("versus_untrained") or {}, "untrained"))
    if runs:
        if loss_curves(runs, out / "loss.png"):
            body.append("<h2>Training loss</h2><img src='loss.png' alt='loss curves'>")
    tok = report.get("tokenizer_metrics")
    if tok:
        rows = "".join(f"<tr><td style='text-align:left'>{html.escape(str(k))}</td>"
                       f"<td>{html.escape(_num(v))}</td></tr>" for k, v in _flat(tok).items())
        body.append(f"<h2>Tokenizer</h2><table><tr><th>metric</th><th>value</th></tr>{rows}"
                    "</table>")
    gen = report.get("generation") or {}
    if gen:
        body.append("<h2>Continuations</h2><p>Each model continues spoken prompts of held-out "
                    "voices; audio is vocoded, transcribed with the evaluation ASR (Whisper tiny.en by "
                    "default) and scored.</p>")
        metric_names = sorted({k for g in gen.values() for k in g.get("metrics", {})})
        head = "".join(f"<th>{html.escape(k)}</th>" for k in metric_names)
        rows = "".join(f"<tr><th>{html.escape(m)}</th>" + "".join(
            f"<td>{html.escape(_num(g.get('metrics', {}).get(k)))}</td>" for k in metric_names)
            + "</tr>" for m, g in gen.items())
        body.append(f"<table><tr><th>model</th>{head}</tr>{rows}</table>")
        for model, g in gen.items():
            clips = []
            for s in g.get("samples", []):
                prompt = (f"<audio controls preload='metadata' src='{html.escape(s['prompt_wav'])}'>"
                          "</audio>" if s.get("prompt_wav") else "")
                clips.append(f"<tr><td>{html.escape(s.get('prompt_text', ''))}<br>{prompt}</td>"
                             f"<td><audio controls preload='metadata' src='{html.escape(s['wav'])}'>"
                             f"</audio><br><small>ASR: {html.escape(s.get('transcript', ''))}"
                             "</small></td></tr>")
            body.append(f"<h3>{html.escape(model)}</h3><table class='clips'><tr><th>prompt</th>"
                        f"<th>continuation</th></tr>{''.join(clips)}</table>")
    artifacts = report.get("artifacts") or {}
    if artifacts:
        rows = "".join(f"<tr><td style='text-align:left'>{html.escape(k)}</td>"
                       f"<td style='text-align:left'><code>{html.escape(v)}</code></td></tr>"
                       for k, v in artifacts.items())
        body.append(f"<h2>Artifacts</h2><table><tr><th>stage</th><th>directory</th></tr>{rows}"
                    "</table>")
    timings = report.get("timings") or {}
    if timings:
        rows = "".join(f"<tr><td style='text-align:left'>{html.escape(k)}</td><td>{v:.1f}</td></tr>"
                       for k, v in timings.items())
        body.append(f"<h2>Stage timings</h2><table><tr><th>stage</th><th>seconds</th></tr>{rows}"
                    f"<tr><th>total</th><th>{sum(timings.values()):.1f}</th></tr></table>")
    for name, r in models.items():
        groups = _groups_section(r)
        if groups:
            body.append(f"<h2>{html.escape(name)}: details</h2>{groups}")
    (out / "index.html").write_text(_page("speechlm demo report", "".join(body)), encoding="utf-8")
    (out / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    md = ["# speechlm demo report", "", markdown_table(models) if models else "", ""]
    for name, v in (report.get("versus_untrained") or {}).items():
        md.append(f"- {name} vs untrained: " + ", ".join(
            f"{b} {e['diff']:+.3f} ({'intervals separate' if e['separated'] else 'overlap'})"
            for b, e in v.items()))
    md += ["", *[f"- {k}: `{v}`" for k, v in artifacts.items()], ""]
    if timings:
        md += ["| stage | seconds |", "|---|---|"] + [f"| {k} | {v:.1f} |" for k, v in
                                                      timings.items()]
    (out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    return out / "index.html"


def _num(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "–" if v is None else str(v)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        elif not isinstance(v, list):
            out[key] = v
    return out
