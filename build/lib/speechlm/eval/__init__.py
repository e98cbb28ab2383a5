"""Evaluation: spoken/text benchmarks (lexical, syntactic, storycloze), scoring, generation metrics, reports."""
