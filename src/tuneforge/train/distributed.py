"""Running one recipe on several processes: who writes what, and when the others wait.

``tuneforge train`` is launched unchanged under ``accelerate launch`` or ``torchrun``; every process
runs the same function and the Trainer (through accelerate) does the data sharding, gradient
all-reduce (DDP) or sharding (FSDP, DeepSpeed). What tuneforge adds is discipline about files: the
run directory, recipe, data report, metrics, plots, evaluation and summary are written by the main
process only, so two ranks never race on one file. The launchers set ``RANK``/``WORLD_SIZE`` (and
accelerate reads them); without them this is a single process and every helper is a no-op.
"""

from __future__ import annotations

import os
from pathlib import Path

from accelerate import PartialState


def world_size() -> int:
    """Processes in this run (1 when not launched by torchrun/accelerate)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """True on the one process that writes run files (global rank 0)."""
    return rank() == 0


def barrier() -> None:
    """Wait until every process gets here (no-op in a single process)."""
    if world_size() > 1:
        PartialState().wait_for_everyone()


def save_final_model(trainer, final_dir: Path, save) -> None:
    """Write the trained weights once; ``save()`` is the method's own single-process save.

    Sharded engines (FSDP, DeepSpeed ZeRO-3) hold a slice of every weight on each rank, so every rank
    must take part in gathering them: ``Trainer.save_model`` does that and writes on the main
    process. Plain and DDP runs hold full weights everywhere, so the main process calls ``save``
    (safetensors, the method's own layout) and the others wait.
    """
    if getattr(trainer, "is_fsdp_enabled", False) or getattr(
        trainer, "is_deepspeed_enabled", False
    ):
        trainer.save_model(str(final_dir))
    elif is_main_process():
        save()
    barrier()
