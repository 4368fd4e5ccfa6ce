"""tuneforge: fine-tune causal language models, from a 2-core laptop to a GPU cluster."""

__version__ = "0.1.0"
