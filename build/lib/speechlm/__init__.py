"""speechlm: train spoken language models (tokenizer -> LM -> vocoder) end to end.

Importing ``speechlm.lm`` (any model API) registers the multi-stream model with transformers'
``AutoConfig`` / ``AutoModelForCausalLM``; ``import speechlm`` does it too when transformers is
already imported (it does not import torch/transformers itself, so ``speechlm --help`` stays fast).
"""

import sys

__version__ = "0.1.0"

if "transformers" in sys.modules:
    import speechlm.lm.multistream  # noqa: F401  (registers the Auto classes)
