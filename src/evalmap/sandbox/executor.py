"""Run one untrusted Python program under bwrap (or rlimits only) and classify the outcome."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import math
import os
import resource
import selectors
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from evalmap.sandbox.cgroup import ExecutionCgroup
from evalmap.sandbox.isolation import (
    WORKDIR,
    bwrap_argv,
    bwrap_path,
    interpreter,
    isolation_available,
    no_userns_fd,
    program_prefix,
    sandbox_env,
    sandbox_uid,
)
from evalmap.sandbox.output import CappedBuffer, exception_name

logger = logging.getLogger(__name__)

MAIN = "main.py"
_PIPE_BYTES = 1 << 20  # fewer wake-ups when a program floods its output


@dataclass(frozen=True)
class Limits:
    """What one execution may use; defaults suit HumanEval/MBPP-sized programs.

    Memory is capped twice: each process by RLIMIT_AS (`memory_mb`, so Python raises
    MemoryError), and the whole execution by a memory cgroup (`total_memory_mb`, swap off).
    Where no memory cgroup can be had, the process cap shrinks so that processes x
    `memory_mb` stays within `total_memory_mb` (see `process_cap`), and a warning says so.
    """

    wall_s: float = 10.0
    cpu_s: float | None = None  # default: wall_s + 1
    memory_mb: int = 1024  # RLIMIT_AS, per process
    total_memory_mb: int = 4096  # the execution's memory cgroup: all its processes together
    max_output_bytes: int = 65536  # per stream
    max_processes: int = 64  # the pids cgroup; RLIMIT_NPROC where there is none
    max_file_mb: int = 64  # RLIMIT_FSIZE, and the size of the sandbox's tmpfs

    def process_cap(self, memory_cgroup: bool) -> int:
        """Processes allowed: all of `max_processes` under a memory cgroup, else what the total allows."""
        if memory_cgroup:
            return self.max_processes
        return max(1, min(self.max_processes, self.total_memory_mb // self.memory_mb))

    def rlimits(self, cgroup: ExecutionCgroup | None) -> list[tuple[int, tuple[int, int]]]:
        cpu = math.ceil(self.wall_s + 1 if self.cpu_s is None else self.cpu_s)
        memory = self.memory_mb << 20
        fsize = self.max_file_mb << 20
        limits = [
            (resource.RLIMIT_CPU, (cpu, cpu + 1)),  # SIGXCPU first, SIGKILL a second later
            (resource.RLIMIT_AS, (memory, memory)),
            (resource.RLIMIT_FSIZE, (fsize, fsize)),
            (resource.RLIMIT_CORE, (0, 0)),
        ]
        if cgroup is None or not cgroup.caps_processes:
            # RLIMIT_NPROC counts every process of the uid, so it is only the fallback cap.
            nproc = self.process_cap(cgroup is not None and cgroup.caps_memory)
            limits.append((resource.RLIMIT_NPROC, (nproc, nproc)))
        return limits


DEFAULT_LIMITS = Limits()


@dataclass
class ExecResult:
    """How a program ended.

    status: "passed" (exit 0), "failed" (AssertionError or a bare non-zero exit),
    "error" (any other exception, or the sandbox could not start), "memory"
    (MemoryError), "timeout" (wall or CPU limit), "killed" (died by a signal).
    """

    status: str
    exit_code: int | None
    stdout: str
    stderr: str
    wall_s: float
    error_type: str | None
    truncated: bool
    isolation: str


def run_python(
    code: str,
    *,
    stdin: str = "",
    limits: Limits = DEFAULT_LIMITS,
    files: dict[str, str | bytes] | None = None,
    network: bool = False,
    secret: bytes | None = None,
) -> ExecResult:
    """Runs `code` as main.py in a fresh sandbox, with `files` beside it and `stdin` as input.

    `secret`, when given, is readable once from an inherited descriptor whose number is the
    program's sys.argv[1] (the test harness's nonce: never on disk, never in the environment).
    """
    inputs = {MAIN: code, **_checked(files or {})}
    if isolation_available() == "bwrap":
        return _run_bwrap(inputs, stdin, limits, network, secret)
    return _run_rlimit(inputs, stdin, limits, secret)


def _checked(files: dict[str, str | bytes]) -> dict[str, str | bytes]:
    for name in files:
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts or str(path) in (".", MAIN):
            raise ValueError(f"sandbox file name {name!r} must be a relative path inside the work dir")
    return files


def _bytes(data: str | bytes) -> bytes:
    return data.encode() if isinstance(data, str) else data


def _memfd(data: str | bytes) -> int:
    """Input handed to the child as an in-memory file: no disk, no pipe that could block."""
    fd = os.memfd_create("evalmap-sandbox", os.MFD_CLOEXEC)
    os.write(fd, _bytes(data))
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _run_bwrap(
    inputs: dict[str, str | bytes], stdin: str, limits: Limits, network: bool, secret: bytes | None
) -> ExecResult:
    """The child blocks (--block-fd) until its rlimits and cgroup are set from here.

    Setting them from the parent keeps Popen on vfork: a preexec_fn forces a fork of
    this (possibly multi-GB) process for every execution.
    """
    bwrap = bwrap_path()
    assert bwrap is not None  # isolation_available() said "bwrap"
    tmpfs_bytes = (limits.max_file_mb << 20) + sum(len(_bytes(t)) for t in inputs.values())
    with contextlib.ExitStack() as stack:
        fds = stack.enter_context(_Fds())
        seccomp_fd = no_userns_fd()
        argv = bwrap_argv(bwrap, tmpfs_bytes, network, fds.add(seccomp_fd) if seccomp_fd is not None else None)
        child_fds = [fds.add(_memfd(text)) for text in inputs.values()]
        for fd, name in zip(child_fds, inputs, strict=True):
            argv += ["--perms", "0644", "--file", str(fd), f"{WORKDIR}/{name}"]
        block_r, block_w = (fds.add(fd) for fd in os.pipe())
        info_r, info_w = (fds.add(fd) for fd in os.pipe())
        stdin_fd = fds.add(_memfd(stdin))
        program, secret_fds = _program(fds, secret)
        passed_fds = [*child_fds, block_r, info_w, *([seccomp_fd] if seccomp_fd is not None else []), *secret_fds]
        argv += ["--block-fd", str(block_r), "--info-fd", str(info_w), "--", *program_prefix(), *program]
        cgroup = _cgroup(limits)
        if cgroup is not None:
            stack.callback(cgroup.destroy)  # also when Popen itself fails
        start = time.monotonic()
        proc = subprocess.Popen(
            argv, stdin=stdin_fd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=passed_fds, start_new_session=True, env={},
        )  # fmt: skip
        stack.enter_context(proc)  # closes the pipes, after _reap below has killed and reaped
        stack.callback(_reap, proc, cgroup)
        fds.close(*passed_fds, stdin_fd)  # the child has them; EOF on info_r needs this
        child = _child_pid(info_r)
        if child is not None:
            if cgroup is not None:
                cgroup.add(child)
            for which, limit in limits.rlimits(cgroup):
                resource.prlimit(child, which, limit)
            os.write(block_w, b"1")
        return _supervise(proc, cgroup, limits, start, "bwrap", started=child is not None)


def _run_rlimit(inputs: dict[str, str | bytes], stdin: str, limits: Limits, secret: bytes | None) -> ExecResult:
    """The fallback: limits, a throwaway cwd and (as root) an unprivileged uid, but the host's
    filesystem and network."""
    uid = sandbox_uid()
    with (
        tempfile.TemporaryDirectory(prefix="evalmap-sandbox-", ignore_cleanup_errors=True) as workdir,
        contextlib.ExitStack() as stack,
    ):
        for name, text in inputs.items():
            path = Path(workdir, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_bytes(text))
        if uid is not None:
            for path in [Path(workdir), *Path(workdir).rglob("*")]:
                os.chown(path, uid, uid)
        fds = stack.enter_context(_Fds())
        stdin_fd = fds.add(_memfd(stdin))
        program, passed_fds = _program(fds, secret)
        cgroup = _cgroup(limits)
        if cgroup is not None:
            stack.callback(cgroup.destroy)  # also when Popen itself fails
        limit_self = functools.partial(_limit_self, limits.rlimits(cgroup), cgroup.procs_files() if cgroup else [], uid)
        start = time.monotonic()
        proc = subprocess.Popen(
            program, cwd=workdir, env=sandbox_env(workdir, isolated=False), pass_fds=passed_fds,
            stdin=stdin_fd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            preexec_fn=limit_self,
        )  # fmt: skip
        stack.enter_context(proc)
        stack.callback(_reap, proc, cgroup)
        fds.close(*passed_fds)
        return _supervise(proc, cgroup, limits, start, "rlimit", started=True)


def _program(fds: _Fds, secret: bytes | None) -> tuple[list[str], list[int]]:
    """The sandboxed command line, and the descriptor it inherits holding `secret` (argv[1]), if any."""
    if secret is None:
        return [interpreter(), "-S", MAIN], []
    fd = fds.add(_memfd(secret))
    return [interpreter(), "-S", MAIN, str(fd)], [fd]


def _cgroup(limits: Limits) -> ExecutionCgroup | None:
    cgroup = ExecutionCgroup.create(limits.total_memory_mb << 20, limits.process_cap)
    if cgroup is None or not cgroup.caps_memory:
        _warn_no_memory_cgroup(limits.process_cap(False), limits.memory_mb)
    return cgroup


@functools.cache
def _warn_no_memory_cgroup(processes: int, memory_mb: int) -> None:
    logger.warning(
        "evalmap sandbox: no memory cgroup here, so an execution's memory is capped as %d processes x %d MB each",
        processes, memory_mb,
    )  # fmt: skip


def _limit_self(rlimits: list[tuple[int, tuple[int, int]]], cgroup_procs: list[str], uid: int | None) -> None:
    """Runs in the forked child before exec: joins the cgroup, sets limits, then drops root."""
    for procs in cgroup_procs:
        fd = os.open(procs, os.O_WRONLY)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
    for which, limit in rlimits:
        resource.setrlimit(which, limit)
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)


def _child_pid(info_r: int) -> int | None:
    """bwrap's sandbox pid from its --info-fd JSON; None when bwrap died before forking it."""
    info = b""
    while chunk := os.read(info_r, 4096):
        info += chunk
    return json.loads(info)["child-pid"] if info else None


def _supervise(
    proc: subprocess.Popen[bytes], cgroup: ExecutionCgroup | None, limits: Limits, start: float,
    isolation: str, *, started: bool,
) -> ExecResult:  # fmt: skip
    """Reads capped output until the child exits or the wall limit passes, then kills the rest."""
    assert proc.stdout is not None and proc.stderr is not None
    out, err = CappedBuffer(limits.max_output_bytes), CappedBuffer(limits.max_output_bytes)
    sinks = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    for fd in sinks:
        with contextlib.suppress(OSError):  # pipe-max-size may be lower for non-root
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    timed_out = _pump(proc, sinks, start + limits.wall_s)
    wall_s = time.monotonic() - start
    oom_killed = cgroup is not None and cgroup.oom_killed()
    _reap(proc, cgroup)
    _drain(sinks)
    stdout, stderr = out.text(), err.text()
    status, exit_code, error_type = _classify(proc.returncode, timed_out, stderr, started)
    if oom_killed and status not in ("passed", "timeout"):
        status, error_type = "memory", "MemoryError"  # the cgroup's OOM killer, not Python's MemoryError
    return ExecResult(
        status=status, exit_code=exit_code, stdout=stdout, stderr=stderr, wall_s=wall_s,
        error_type=error_type, truncated=out.truncated or err.truncated, isolation=isolation,
    )  # fmt: skip


def _pump(proc: subprocess.Popen[bytes], sinks: dict[int, CappedBuffer], deadline: float) -> bool:
    """Feeds the sinks until the process exits; True when the deadline came first."""
    pidfd = os.pidfd_open(proc.pid)
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(pidfd, selectors.EVENT_READ)
            for fd in sinks:
                selector.register(fd, selectors.EVENT_READ)
            while (remaining := deadline - time.monotonic()) > 0:
                for key, _ in selector.select(remaining):
                    if key.fd == pidfd:
                        return False
                    chunk = os.read(key.fd, _PIPE_BYTES)
                    if chunk:
                        sinks[key.fd].feed(chunk)
                    else:
                        selector.unregister(key.fd)
            return True
    finally:
        os.close(pidfd)


def _drain(sinks: dict[int, CappedBuffer]) -> None:
    """What is left in the pipes once the writers are dead; never waits for a stray holder."""
    for fd, sink in sinks.items():
        os.set_blocking(fd, False)
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(fd, _PIPE_BYTES):
                sink.feed(chunk)


def _reap(proc: subprocess.Popen[bytes], cgroup: ExecutionCgroup | None) -> None:
    """Kills the process group (before reaping, so its id cannot be reused) and the cgroup."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    if cgroup is not None:
        cgroup.destroy()


class _Fds:
    """Descriptors closed exactly once: a second close could hit another thread's reused number."""

    def __init__(self) -> None:
        self._open: set[int] = set()

    def add(self, fd: int) -> int:
        self._open.add(fd)
        return fd

    def close(self, *fds: int) -> None:
        for fd in fds:
            self._open.remove(fd)
            os.close(fd)

    def __enter__(self) -> _Fds:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close(*list(self._open))


def _classify(returncode: int, timed_out: bool, stderr: str, started: bool) -> tuple[str, int | None, str | None]:
    """(status, exit_code, error_type); a signal death reads as 128 + signal, as bwrap reports it."""
    if timed_out:
        return "timeout", None, "TimeoutError"
    if not started:
        return "error", returncode, "SandboxError"
    exit_code = 128 - returncode if returncode < 0 else returncode
    error_type = exception_name(stderr) if exit_code else None
    signum = exit_code - 128 if error_type is None and 128 < exit_code <= 128 + 64 else None
    if signum == signal.SIGXCPU:
        return "timeout", exit_code, "TimeoutError"
    if error_type is not None and error_type.endswith("MemoryError"):
        return "memory", exit_code, error_type
    if exit_code == 0:
        return "passed", 0, None
    if signum is not None:
        return "killed", exit_code, None
    if error_type in (None, "AssertionError"):
        return "failed", exit_code, error_type
    return "error", exit_code, error_type
