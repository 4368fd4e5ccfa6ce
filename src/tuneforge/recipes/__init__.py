"""One readable recipe per objective family; ``train(recipe, callbacks=...)`` is the public entry point."""

from tuneforge.train.runner import train

__all__ = ["train"]
