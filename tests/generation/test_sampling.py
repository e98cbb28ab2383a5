from __future__ import annotations

import pytest
import torch

from speechlm.core.errors import ConfigError
from speechlm.generation.sampling import filter_logits, generate
from speechlm.lm.model import build_model
from speechlm.lm.vocab import SpeechVocab

from ..conftest import tiny_lm_config


@pytest.fixture(scope="module")
def model():
    vocab = SpeechVocab.for_units(20)
    return build_model(tiny_lm_config(vocab), seed=0).eval()


def test_kv_cache_matches_full_recompute(model):
    prompt = [1, 5, 9, 7]
    fast = generate(model, prompt, 12, temperature=0)
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(12):
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    assert fast == ids[len(prompt):]
    assert generate(model, prompt, 12, temperature=1.0, top_k=1) == fast


def test_seeded_sampling_and_eos(model):
    a = generate(model, [1, 5], 20, temperature=1.5, top_p=0.9, seed=3)
    assert a == generate(model, [1, 5], 20, temperature=1.5, top_p=0.9, seed=3)
    assert a != generate(model, [1, 5], 20, temperature=1.5, top_p=0.9, seed=4)
    first = a[0]
    assert generate(model, [1, 5], 20, temperature=1.5, top_p=0.9, seed=3, eos_id=first) == [first]
    with pytest.raises(ConfigError, match="prompt is empty"):
        generate(model, [], 3)
    with pytest.raises(ConfigError, match="exceeds the model's context"):
        generate(model, [1], 5000)


def test_filter_logits():
    logits = torch.tensor([[4.0, 3.0, 1.0, 0.0]])
    assert torch.isinf(filter_logits(logits, 2, None)[0, 2:]).all()
    kept = filter_logits(logits, None, 0.5)  # first token alone has p > 0.5
    assert torch.isfinite(kept).sum() == 1
