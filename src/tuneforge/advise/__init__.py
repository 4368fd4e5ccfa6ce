"""``tuneforge advise``: how big the data is, which LoRA rank, and what each method costs to train.

- ``data_stats``: examples and tokens, rendered with the model's tokenizer and chat template;
- ``rank``: the LoRA rank rule of thumb;
- ``params``: trainable parameters by applying each method to a meta-device skeleton;
- ``memory``: the training-memory estimate (its docstring gives the formula);
- ``measure``: a real run of a few steps in a child process, to check the estimate;
- ``advice``: puts them together and renders the table.
"""

from tuneforge.advise.advice import Advice, advise, render

__all__ = ["Advice", "advise", "render"]
