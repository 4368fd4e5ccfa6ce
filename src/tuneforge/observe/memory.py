"""Peak memory of this process, as the run summary, ``advise --measure`` and the benchmarks report it."""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mb() -> float:
    """Peak resident memory of this process image (VmHWM from /proc, else ru_maxrss; both KiB).

    ``ru_maxrss`` is not read first because Linux folds a parent's peak into its child's at exec, so a
    run launched from a large process (a benchmark driver) would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
