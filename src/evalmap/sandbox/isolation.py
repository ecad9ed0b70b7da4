"""Which isolation this machine gives, and the bwrap command line that provides it."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import site
import subprocess
import sys
import warnings

from evalmap.errors import EvalmapError

logger = logging.getLogger(__name__)

ENV_VAR = "EVALMAP_SANDBOX"  # "bwrap" (required), "rlimit" (forced fallback) or unset (auto)
WORKDIR = "/tmp"  # the sandbox's private tmpfs, also its cwd and HOME
NOBODY = "65534"

# What of /etc a Python program needs; the rest (shadow, ssh host keys, ssl/private)
# stays out: the sandboxed uid maps to the caller's, so root-owned files would be readable.
_ETC = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "passwd", "group",
    "nsswitch.conf", "hosts", "host.conf", "protocols", "services", "mime.types", "ssl/certs",
    "alternatives", "os-release", "fonts",
)  # fmt: skip
_TOP_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


class SandboxUnavailableError(EvalmapError):
    """The isolation EVALMAP_SANDBOX asks for cannot be had here."""


def site_packages() -> str:
    """The interpreter's package dirs, given to `python -S` directly.

    `-S` skips the site module and its .pth files, which cost ~65 ms of the ~85 ms startup
    of every sandboxed program; PYTHONPATH keeps installed packages (numpy, pandas) importable.
    """
    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    return os.pathsep.join(d for d in dirs if os.path.isdir(d))


def sandbox_env(home: str) -> dict[str, str]:
    """The whole environment of a sandboxed program: nothing of the caller's leaks in."""
    return {
        "PATH": f"{os.path.dirname(sys.executable)}:/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": site_packages(),
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        # One BLAS/OpenMP thread: parallelism comes from the pool, and threads count against pids.max.
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
    }


def python_roots() -> list[str]:
    """The Python installation(s) to bind: the prefix only, never the home it may live in."""
    roots: list[str] = []
    for prefix in sorted({sys.base_prefix, sys.prefix}):
        if not any(prefix == r or prefix.startswith(r + "/") for r in ["/usr", *roots]):
            roots.append(prefix)
    return roots


def bwrap_argv(bwrap: str, tmpfs_bytes: int, network: bool) -> list[str]:
    """bwrap options up to (not including) the command: a read-only system, a private tmpfs."""
    argv = [
        bwrap, "--unshare-all", "--unshare-user", "--uid", NOBODY, "--gid", NOBODY,
        "--disable-userns", "--cap-drop", "ALL", "--die-with-parent", "--clearenv",
    ]  # fmt: skip
    if network:
        argv.append("--share-net")
    argv += ["--ro-bind", "/usr", "/usr"]
    for name in _TOP_DIRS:
        path = f"/{name}"
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    for name in (*_ETC, "resolv.conf") if network else _ETC:
        path = f"/etc/{name}"
        if os.path.exists(path):
            argv += ["--ro-bind", path, path]
    for root in python_roots():
        argv += ["--ro-bind", root, root]
    argv += [
        "--proc", "/proc", "--dev", "/dev",
        "--size", str(tmpfs_bytes), "--tmpfs", WORKDIR,
        "--size", str(tmpfs_bytes), "--tmpfs", "/dev/shm",
        "--chdir", WORKDIR,
        # Else the root and /dev tmpfs would take unbounded writes.
        "--remount-ro", "/", "--remount-ro", "/dev",
    ]  # fmt: skip
    for key, value in sandbox_env(WORKDIR).items():
        argv += ["--setenv", key, value]
    return argv


@functools.cache
def bwrap_path() -> str | None:
    return shutil.which("bwrap")


@functools.cache
def _bwrap_problem() -> str | None:
    """Why bwrap cannot sandbox here (None when it can): probed once with the real options."""
    bwrap = bwrap_path()
    if bwrap is None:
        return "bwrap is not installed (Debian: apt-get install bubblewrap)"
    argv = [*bwrap_argv(bwrap, 1 << 20, network=False), "--", sys.executable, "-S", "-c", ""]
    try:
        probe = subprocess.run(argv, capture_output=True, timeout=60, env={})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap failed to start: {exc}"
    if probe.returncode != 0:
        return f"bwrap failed to start: {probe.stderr.decode(errors='replace').strip()}"
    return None


@functools.cache
def _warn_fallback(reason: str) -> None:
    message = (
        f"evalmap sandbox: {reason}; untrusted code runs with resource limits ONLY "
        "(no filesystem, network or process isolation)."
    )
    logger.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def isolation_available() -> str:
    """ "bwrap" when bubblewrap works here, else "rlimit" (said loudly, once)."""
    mode = os.environ.get(ENV_VAR, "auto")
    if mode not in ("auto", "bwrap", "rlimit"):
        raise SandboxUnavailableError(f"{ENV_VAR}={mode!r} is not one of auto, bwrap, rlimit; fix or unset it.")
    if mode == "rlimit":
        _warn_fallback(f"{ENV_VAR}=rlimit")
        return "rlimit"
    problem = _bwrap_problem()
    if problem is None:
        return "bwrap"
    if mode == "bwrap":
        raise SandboxUnavailableError(f"{ENV_VAR}=bwrap is set but {problem}; install bubblewrap or unset it.")
    _warn_fallback(problem)
    return "rlimit"
