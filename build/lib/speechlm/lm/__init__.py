"""Speech/text causal LMs: token space and layouts, sequence builders, models, the training loop.

Modules: ``vocab`` (token families), ``layout`` + ``streams`` (K streams -> model rows),
``sequences`` + ``packing`` (builders, blocks), ``model`` + ``modeldir`` (HF directories and the
``speechlm.json`` contract), ``config`` + ``loop`` + ``precision`` + ``checkpoints`` (training),
``recipes/`` (``run(cfg)`` per recipe), ``init/`` (cold, warm), ``textlm`` (the TWIST text LM).
"""

import speechlm.lm.multistream  # noqa: E402,F401  (registers the multi-stream model with HF Auto classes)
