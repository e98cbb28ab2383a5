"""Joint speech–text LMs (SUTLM, SpiRit-LM): one vocabulary of units, text BPE and modality markers.

* :mod:`.tokens`: the joint vocabulary, word-aligned utterances, and segments <-> model ids (a
  marker only where the modality changes);
* :mod:`.builders`: the ``speech``, ``text``, ``concat``, ``interleave`` and ``mix`` sequence
  builders, registered with :func:`speechlm.lm.sequences.register_builder`;
* :mod:`.packing`: training blocks whose random choices (spans, orders, mixture) are redrawn
  every epoch.
"""
