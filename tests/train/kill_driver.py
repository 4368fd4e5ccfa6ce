"""Run a recipe and SIGKILL this very process at a chosen point: ``python -m tests.train.kill_driver RECIPE EVENT N``.

EVENT is a TrainerCallback hook (``on_step_end``, ``on_prediction_step`` = inside an evaluation,
``on_save`` = right after a checkpoint's files and its commit marker); the process kills itself the
N-th time the hook fires, as ``kill -9`` would: no cleanup, no flush.
"""

from __future__ import annotations

import os
import signal
import sys

from transformers import TrainerCallback

from tuneforge.config import load_recipe
from tuneforge.recipes import train


class KillAt(TrainerCallback):
    def __init__(self, event: str, n: int) -> None:
        self.event, self.n, self.seen = event, n, 0
        setattr(self, event, self._maybe_kill)

    def _maybe_kill(self, args, state, control, **kwargs):
        self.seen += 1
        if self.seen == self.n:
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    recipe_path, event, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    resume = "--resume" in sys.argv
    train(load_recipe(recipe_path), resume=resume, callbacks=[KillAt(event, n)])
