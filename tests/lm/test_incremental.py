"""The lean incremental forward gives HF's logits bit for bit (one thread), so seeded decoding is
unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechlm.core.errors import ConfigError
from speechlm.core.threads import torch_threads
from speechlm.generation.sampling import Decoder, sample
from speechlm.lm.incremental import IncrementalLlama, supports
from speechlm.lm.init.cold import cold_init
from speechlm.lm.layout import get_layout
from speechlm.lm.model import build_model, model_config
from speechlm.lm.streams import TokenSpace
from speechlm.lm.vocab import SpeechVocab

from ..conftest import tiny_lm_config

VOCAB = SpeechVocab.for_units(50)
# chunks fed in turn: a prompt (causal mask), single steps (no mask), chunks after a context
# (boolean mask), past the first buffer (8 positions) and its doublings
CHUNKS = [6, 1, 1, 3, 1, 20, 1, 1, 40, 1, 2, 1]


@pytest.fixture(autouse=True)
def one_thread():
    """Bit for bit holds with one intra-op thread (speechlm.lm.incremental); tests that ran
    before may have left torch at 1 or at the core count."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module", params=["narrow", "preset"])
def model(request):
    config = tiny_lm_config(VOCAB) if request.param == "narrow" else model_config("tiny", VOCAB)
    return build_model(config, seed=1).eval()


def test_logits_match_the_hf_forward_bit_for_bit(model):
    assert supports(model)
    lean = IncrementalLlama(model, capacity=8)
    gen = torch.Generator().manual_seed(0)
    cache = None
    with torch.inference_mode():
        for n in CHUNKS:
            ids = torch.randint(3, VOCAB.size, (1, n), generator=gen)
            out = model(input_ids=ids, use_cache=True, cache=cache)
            cache = out.cache
            assert torch.equal(lean.feed(ids), out.logits[:, -1].float()), f"chunk of {n}"
        assert lean.length == sum(CHUNKS) and lean.capacity == 128
        lean.reset()  # a new sequence in the same buffers: the same logits as a fresh model call
        ids = torch.randint(3, VOCAB.size, (1, 5), generator=gen)
        assert torch.equal(lean.feed(ids), model(input_ids=ids).logits[:, -1])
        assert lean.capacity == 128


def test_seeded_decoding_draws_the_same_tokens(model):
    def decode(lean: bool) -> list[int]:
        decoder = Decoder(model, lean=lean)
        assert (decoder.lean is not None) == lean
        gen = torch.Generator().manual_seed(7)
        step, out = decoder.feed([1, 5, 9, 7]), []
        for turn in range(3):  # sampled steps, then heard ids fed as one chunk
            for _ in range(15):
                out.append(sample(step.row(0), 1.0, 20, 0.95, gen))
                step = decoder.feed([out[-1]])
            step = decoder.feed([2, 1] + [10 + turn] * 6)
        return out

    assert decode(lean=True) == decode(lean=False)


@pytest.mark.parametrize("depth_layers", [0, 1])
def test_a_multistream_backbone_runs_lean_with_the_same_logits(depth_layers):
    """Without a depth decoder the Decoder feeds a multi-stream model's backbone through the lean
    forward (summed row embeddings in, the model's heads out): HF's logits, bit for bit, over
    one-step and chunked feeds (a duplex session's columns); with one it keeps HF's forward."""
    vocab = SpeechVocab.for_units(12).add_family("duration", 5, kind="prosody")
    space = TokenSpace(vocab, ("units", "duration"), get_layout("delay", 2))
    model = cold_init(space, "tiny", seed=0, depth_layers=depth_layers, hidden_size=32,
                      num_hidden_layers=2, num_attention_heads=2, intermediate_size=64).eval()
    lean, plain = Decoder(model), Decoder(model, lean=False)
    assert (lean.lean is not None) == (depth_layers == 0) and plain.lean is None
    gen = torch.Generator().manual_seed(3)
    for n in [5, 1, 1, 4, 1, 30, 1]:
        ids = np.stack([torch.randint(0, size, (n,), generator=gen).numpy()
                        for size in model.config.row_vocab_sizes])
        a, b = lean.feed(ids), plain.feed(ids)
        assert torch.equal(a.logits, b.logits), f"chunk of {n}"
        assert torch.equal(a.row(1, [4, 0]), b.row(1, [4, 0]))


def test_sequences_share_stacked_weights_until_the_weights_change():
    model = build_model(tiny_lm_config(VOCAB), seed=2).eval()
    first, second = IncrementalLlama(model), IncrementalLlama(model)
    assert first.shared is second.shared
    ids = torch.tensor([[1, 4, 5]])
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight.mul_(2.0)  # e.g. an optimizer step
    changed = IncrementalLlama(model)
    assert changed.shared is not first.shared
    assert torch.equal(changed.feed(ids), model(input_ids=ids).logits[:, -1])
    with torch.inference_mode():  # weights made here have no version counter: never reused
        untracked = build_model(tiny_lm_config(VOCAB), seed=2).eval()
        assert IncrementalLlama(untracked).shared is not IncrementalLlama(untracked).shared
        assert torch.equal(IncrementalLlama(untracked).feed(ids), untracked(input_ids=ids).logits[:, -1])


def test_the_context_limit_is_an_error():
    model = build_model(model_config("tiny", VOCAB, hidden_size=32, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=16), seed=0).eval()
    lean = IncrementalLlama(model)
    lean.feed(torch.arange(3, 15)[None])  # 12 of 16 positions
    with pytest.raises(ConfigError, match="17 positions exceed the model's context of 16"):
        lean.feed(torch.arange(3, 8)[None])
    assert lean.length == 12 and lean.capacity == 16


def test_other_models_keep_the_hf_forward():
    model = build_model(tiny_lm_config(VOCAB), seed=0)
    assert not supports(model.train())  # training mode: dropout and friends
    model.eval()
    assert not supports(model.to(torch.bfloat16))
    gqa = model_config("tiny", VOCAB, hidden_size=32, num_attention_heads=4, intermediate_size=64)
    gqa.num_key_value_heads = 2
    assert not supports(build_model(gqa, seed=0).eval())
    eager = build_model(tiny_lm_config(VOCAB), seed=0).eval()
    eager.config._attn_implementation = "eager"
    assert not supports(eager) and Decoder(eager).lean is None
