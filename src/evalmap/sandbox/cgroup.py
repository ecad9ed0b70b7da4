"""One cgroup per execution: a process cap and a memory cap for the whole execution.

Rlimits bind one process each: RLIMIT_AS lets 64 processes hold 64 x 1 GB, and RLIMIT_NPROC
counts every process of the uid on the host (and is ignored for root). A cgroup binds the
execution as a whole: `pids.max` caps its processes, the memory limit (swap included) caps the
sum of their memory, and its member list lets us kill every process of a run, even one that
escaped its process group with setsid. Both cgroup v1 (one hierarchy per controller) and v2
(one unified hierarchy) are supported; where a controller cannot be had, its field is None
and the executor falls back to rlimits and says so.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

_COUNTER = itertools.count()
_DESTROY_TIMEOUT_S = 5.0
_ROOT = Path("/sys/fs/cgroup")
# The file whose presence in a fresh child says the controller works there, per (controller, version).
_PROBE_FILE = {("pids", 1): "pids.max", ("pids", 2): "pids.max", ("memory", 1): "memory.limit_in_bytes",
               ("memory", 2): "memory.max"}  # fmt: skip


@functools.cache
def controller_root(controller: str) -> tuple[Path, int] | None:
    """(the cgroup directory we may create `controller`-limited children in, cgroup version), or None."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, rel = line.split(":", 2)
        if controller in controllers.split(","):
            base, version = _ROOT / controller / rel.lstrip("/"), 1
        elif controllers == "" and (_ROOT / "cgroup.controllers").exists():
            base, version = _ROOT / rel.lstrip("/"), 2
        else:
            continue
        probe = base / f"evalmap-probe-{os.getpid()}-{next(_COUNTER)}"
        try:
            probe.mkdir()
            usable = (probe / _PROBE_FILE[controller, version]).exists()
            probe.rmdir()
        except OSError:
            continue
        if usable:
            return base, version
    return None


class ExecutionCgroup:
    """One execution's cgroup(s): caps processes and memory, and kills all members at the end."""

    def __init__(self, dirs: dict[str, tuple[Path, int]]) -> None:
        self._dirs = dirs  # controller -> (directory, version); v2 controllers share one directory

    @property
    def caps_processes(self) -> bool:
        return "pids" in self._dirs

    @property
    def caps_memory(self) -> bool:
        return "memory" in self._dirs

    @classmethod
    def create(cls, memory_bytes: int, process_cap: Callable[[bool], int]) -> ExecutionCgroup | None:
        """A fresh cgroup; `process_cap(has_memory_cgroup)` is its pids.max."""
        name = f"evalmap-{os.getpid()}-{next(_COUNTER)}"
        made: dict[str, tuple[Path, int]] = {}
        try:
            for controller in ("pids", "memory"):
                found = controller_root(controller)
                if found is None:
                    continue
                path = found[0] / name
                if path not in {p for p, _ in made.values()}:
                    path.mkdir()
                made[controller] = (path, found[1])
            if "memory" in made:
                _limit_memory(*made["memory"], memory_bytes)
            if "pids" in made:
                (made["pids"][0] / "pids.max").write_text(str(process_cap("memory" in made)))
        except OSError as exc:
            logger.warning("could not set up the execution cgroup %s: %s", name, exc)
            cls(made).destroy()
            return None
        return cls(made) if made else None

    def _paths(self) -> list[Path]:
        return list(dict.fromkeys(path for path, _ in self._dirs.values()))

    def procs_files(self) -> list[str]:
        """Where a pid is written to join: one file per hierarchy."""
        return [str(path / "cgroup.procs") for path in self._paths()]

    def add(self, pid: int) -> None:
        for procs in self.procs_files():
            Path(procs).write_text(str(pid))

    def oom_killed(self) -> bool:
        """Whether the kernel killed a member for going over the execution's memory limit."""
        if "memory" not in self._dirs:
            return False
        path, version = self._dirs["memory"]
        name = "memory.oom_control" if version == 1 else "memory.events"
        try:
            fields = dict(line.split() for line in (path / name).read_text().splitlines() if line.count(" ") == 1)
        except (OSError, ValueError):
            return False
        return int(fields.get("oom_kill", 0)) > 0

    def destroy(self) -> None:
        """Kills every member until each cgroup is empty, then removes them."""
        deadline = time.monotonic() + _DESTROY_TIMEOUT_S
        for path in self._paths():
            while True:
                try:
                    pids = (path / "cgroup.procs").read_text().split()
                except FileNotFoundError:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
                try:
                    path.rmdir()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        logger.warning("could not remove cgroup %s: processes keep running in it", path)
                        break
                    time.sleep(0.001)


def _limit_memory(path: Path, version: int, memory_bytes: int) -> None:
    """Memory and memory+swap both at the limit: swapping is no way around it."""
    if version == 1:
        (path / "memory.limit_in_bytes").write_text(str(memory_bytes))
        memsw = path / "memory.memsw.limit_in_bytes"  # absent when swap accounting is off
        if memsw.exists():
            memsw.write_text(str(memory_bytes))
    else:
        (path / "memory.max").write_text(str(memory_bytes))
        swap = path / "memory.swap.max"
        if swap.exists():
            swap.write_text("0")
