"""Recipe schema and loading."""

from tuneforge.config.load import (
    apply_overrides,
    dump_recipe,
    load_recipe,
    validate_recipe,
)
from tuneforge.config.schema import Recipe

__all__ = ["Recipe", "apply_overrides", "dump_recipe", "load_recipe", "validate_recipe"]
