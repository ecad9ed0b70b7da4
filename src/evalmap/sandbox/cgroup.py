"""A pids cgroup per execution: the only process cap that binds root.

RLIMIT_NPROC is ignored for uid 0, and inside bwrap's user namespace the sandboxed
uid still maps to the caller's uid, so a fork bomb run by root is only contained by
the cgroup's `pids.max`. The cgroup also lets us kill every process of a run, even
one that escaped its process group with setsid.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import signal
import time
from pathlib import Path

logger = logging.getLogger(__name__)

_COUNTER = itertools.count()
_DESTROY_TIMEOUT_S = 5.0


@functools.cache
def pids_root() -> Path | None:
    """The cgroup directory we may create pids-limited children in, or None."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, rel = line.split(":", 2)
        if "pids" in controllers.split(","):
            base = Path("/sys/fs/cgroup/pids") / rel.lstrip("/")
        elif controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            base = Path("/sys/fs/cgroup") / rel.lstrip("/")
        else:
            continue
        probe = base / f"evalmap-probe-{os.getpid()}"
        try:
            probe.mkdir()
            usable = (probe / "pids.max").exists()
            probe.rmdir()
        except OSError:
            continue
        if usable:
            return base
    return None


class PidsCgroup:
    """One execution's cgroup: caps its process count and kills all of it at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.procs = str(path / "cgroup.procs")

    @classmethod
    def create(cls, max_pids: int) -> PidsCgroup | None:
        root = pids_root()
        if root is None:
            return None
        path = root / f"evalmap-{os.getpid()}-{next(_COUNTER)}"
        path.mkdir()
        (path / "pids.max").write_text(str(max_pids))
        return cls(path)

    def add(self, pid: int) -> None:
        Path(self.procs).write_text(str(pid))

    def destroy(self) -> None:
        """Kills every member until the cgroup is empty, then removes it."""
        deadline = time.monotonic() + _DESTROY_TIMEOUT_S
        while True:
            try:
                pids = Path(self.procs).read_text().split()
            except FileNotFoundError:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            try:
                self.path.rmdir()
                return
            except OSError:
                if time.monotonic() > deadline:
                    logger.warning("could not remove cgroup %s: processes keep running in it", self.path)
                    return
                time.sleep(0.001)
