"""Shared test helpers: tiny models and tokenizers built locally, so unit tests never touch a hub."""
