"""Several task adapters on one base model: bundle them, pick one per call, or mix them by weight.

``bundle`` writes and reads the bundle directory (one base, one tokenizer, named adapters);
``combine`` builds a weighted combination with peft's ``add_weighted_adapter``.
"""

from tuneforge.adapters.bundle import (
    BUNDLE_FILE,
    BundleInfo,
    is_bundle_dir,
    load_bundle,
    read_bundle,
    write_bundle,
)
from tuneforge.adapters.combine import (
    WEIGHTED_ADAPTER,
    add_weighted,
    parse_weights,
    select_adapter,
)

__all__ = [
    "BUNDLE_FILE",
    "WEIGHTED_ADAPTER",
    "BundleInfo",
    "add_weighted",
    "is_bundle_dir",
    "load_bundle",
    "parse_weights",
    "read_bundle",
    "select_adapter",
    "write_bundle",
]
