"""Model folders, shared by training and evaluation.

- :mod:`.processors`: loading a model folder with an image-keeping processor (Qwen2.5-VL,
  InternVL3), tiny or real;
- :mod:`.qwen_tokenizer`: the offline tiny Qwen2.5-VL's tokenizer and processor (no weights);
- :mod:`.emit`: EMIT's comparison module (soft prompt, heat-map contrastive embeddings): the
  model code and its checkpoint file, which a training stage attaches and trains and the
  evaluation loads.

The tiny random models themselves are built by ``training`` (``training.tiny_model``,
``training.tiny_internvl``).
"""
