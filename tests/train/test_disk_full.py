"""A save that runs out of room gives a clear error, keeps the last complete checkpoint, and --resume then ends
exactly where an uninterrupted run ends.

Disk-full is made real with the process's file-size limit (RLIMIT_FSIZE): the kernel refuses any write
past it with EFBIG, as it refuses writes on a full disk with ENOSPC, through the same save path (torch.save
reports either as a C++ iostream RuntimeError with no errno). Python ignores SIGXFSZ, so the write fails
instead of killing the process.
"""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from tests.train.test_kill_resume import ENV, ROOT, _assert_same, _recipe_file, _train, tiny_model_dir  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow


def _limit_files(max_bytes: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, resource.RLIM_INFINITY))

    return apply


def test_disk_full_during_a_checkpoint_keeps_the_last_good_one(tmp_path, tiny_model_dir):  # noqa: F811
    reference_work = tmp_path / "ref"
    ref_recipe = _recipe_file(reference_work, tiny_model_dir, "alpaca", "sft")
    assert _train(ref_recipe) == 0
    biggest = max(p.stat().st_size for p in (reference_work / "run" / "checkpoints").rglob("*") if p.is_file())

    recipe = _recipe_file(tmp_path / "full", tiny_model_dir, "alpaca", "sft")
    assert _train(recipe, kill=("on_step_end", 5)) == -9  # checkpoints 2 and 4 are complete
    run = tmp_path / "full" / "run"
    # resume with the largest checkpoint file no longer fitting: the step-6 checkpoint write fails
    cmd = [sys.executable, "-m", "tuneforge.cli.main", "train", str(recipe), "--resume"]
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, preexec_fn=_limit_files(biggest - 1), timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]  # a user error, not a traceback
    assert "Traceback" not in proc.stderr
    message = " ".join(proc.stderr.split())
    assert "writing a checkpoint at step 6 failed:" in message and "MB free on the run's disk" in message
    assert "checkpoint-4 is kept" in message and "--resume" in message
    assert not (run / "adapter").exists()
    # room again: resume from checkpoint-4 and end exactly as the uninterrupted run did
    assert _train(recipe, "--resume") == 0
    _assert_same(reference_work / "run", run)
