"""Which isolation this machine gives, and the bwrap command line that provides it."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import site
import subprocess
import sys

from evalmap.errors import EvalmapError
from evalmap.sandbox import seccomp

logger = logging.getLogger(__name__)

ENV_VAR = "EVALMAP_SANDBOX"  # "bwrap" (required), "rlimit" (forced fallback) or unset (auto)
UID_ENV_VAR = "EVALMAP_SANDBOX_UID"  # the host uid model code runs as when evalmap runs as root
WORKDIR = "/tmp"  # the sandbox's private tmpfs, also its cwd and HOME
NOBODY = 65534

# What of /etc a Python program needs; the rest (shadow, ssh host keys, ssl/private) stays out.
_ETC = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "passwd", "group",
    "nsswitch.conf", "hosts", "host.conf", "protocols", "services", "mime.types", "ssl/certs",
    "alternatives", "os-release", "fonts",
)  # fmt: skip
_TOP_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


class SandboxUnavailableError(EvalmapError):
    """The isolation EVALMAP_SANDBOX asks for cannot be had here."""


SITE_MOUNT = "/opt/evalmap-site"  # where package dirs outside the interpreter's prefix appear inside


def interpreter() -> str:
    """The real Python binary: a venv's `bin/python` is a link to it (and the venv may sit in /tmp,
    which the sandbox's work dir hides), so sandboxes run it directly with the venv's packages on
    PYTHONPATH instead."""
    return os.path.realpath(sys.executable)


def python_roots() -> list[str]:
    """The Python installation(s) to bind: the interpreter's prefix only, never the home it may live in."""
    binary_prefix = os.path.dirname(os.path.dirname(interpreter()))
    roots: list[str] = []
    for prefix in sorted({sys.base_prefix, binary_prefix}):
        if not any(prefix == r or prefix.startswith(r + "/") for r in ["/usr", *roots]):
            roots.append(prefix)
    return roots


def site_dirs() -> list[tuple[str, str]]:
    """(host dir, the dir as the sandbox sees it) for each installed-package dir.

    `-S` skips the site module and its .pth files, which cost ~65 ms of the ~85 ms startup
    of every sandboxed program; PYTHONPATH keeps installed packages (numpy, pandas) importable.
    A dir outside the bound prefixes (a venv's) is bound under SITE_MOUNT.
    """
    found = [*site.getsitepackages(), site.getusersitepackages()]
    inside_roots = ["/usr", *python_roots()]
    pairs = []
    for i, host in enumerate(d for d in dict.fromkeys(found) if os.path.isdir(d)):
        covered = any(host == r or host.startswith(r + "/") for r in inside_roots)
        pairs.append((host, host if covered else f"{SITE_MOUNT}/{i}"))
    return pairs


def sandbox_env(home: str, isolated: bool) -> dict[str, str]:
    """The whole environment of a sandboxed program: nothing of the caller's leaks in.
    `isolated`: the paths as bwrap's sandbox sees them (else as the host does)."""
    pythonpath = [inside if isolated else host for host, inside in site_dirs()]
    return {
        "PATH": f"{os.path.dirname(interpreter())}:/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": os.pathsep.join(pythonpath),
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


def sandbox_uid() -> int | None:
    """The unprivileged host uid model code runs as, or None when evalmap itself is not root.

    As root, bwrap's user namespace would map the sandbox's uid to host uid 0, and a program
    could then write /proc/sys (kernel.core_pattern runs a command as host root). So as root
    the sandbox is set up without a user namespace and the program runs as this uid instead.
    """
    if os.geteuid() != 0:
        return None
    value = os.environ.get(UID_ENV_VAR, str(NOBODY))
    if not value.isdigit() or int(value) == 0:
        raise SandboxUnavailableError(f"{UID_ENV_VAR}={value!r} must be a non-zero numeric uid; fix or unset it.")
    return int(value)


@functools.cache
def drop_to(uid: int) -> tuple[str, ...]:
    """The command prefix that turns root into `uid` (no groups, no capabilities, no new privileges)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise SandboxUnavailableError(
            "evalmap runs as root and needs setpriv (Debian: util-linux) to run model code as an unprivileged uid; "
            "install util-linux or run evalmap as a non-root user."
        )
    return (setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all", "--no-new-privs", "--")


def _parents(path: str) -> list[str]:
    """/a/b/c -> [/a, /a/b]."""
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def bwrap_argv(bwrap: str, tmpfs_bytes: int, network: bool, seccomp_fd: int | None = None) -> list[str]:
    """bwrap's options (the command follows `--`, after `program_prefix()`): a read-only system,
    a private tmpfs, /proc/sys read-only, and a host uid that is never 0. As root, pass the
    descriptor of `seccomp.filter_fd()`: it stands in for --disable-userns."""
    uid = sandbox_uid()
    if uid is None:  # not root: a user namespace maps the sandbox's uid to the caller's own
        argv = [bwrap, "--unshare-all", "--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY),
                "--disable-userns", "--cap-drop", "ALL"]  # fmt: skip
        if network:
            argv.append("--share-net")
    else:  # root: no user namespace (it would map to uid 0); setpriv drops to `uid` before the program
        argv = [bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try",
                "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]  # fmt: skip
        if not network:
            argv.append("--unshare-net")
        if seccomp_fd is not None:
            argv += ["--seccomp", str(seccomp_fd)]
    argv += ["--die-with-parent", "--clearenv", "--ro-bind", "/usr", "/usr"]
    for name in _TOP_DIRS:
        path = f"/{name}"
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    made: set[str] = set()

    def ro_bind(path: str, inside: str | None = None) -> None:
        # bwrap makes missing parents with modes the sandbox's uid may not pass (seen: /etc 0700).
        for parent in _parents(inside or path):
            if parent not in made and not parent.startswith("/usr"):
                argv.extend(["--perms", "0755", "--dir", parent])
                made.add(parent)
        argv.extend(["--ro-bind", path, inside or path])

    for name in (*_ETC, "resolv.conf") if network else _ETC:
        if os.path.exists(f"/etc/{name}"):
            ro_bind(f"/etc/{name}")
    for root in python_roots():
        ro_bind(root)
    for host, inside in site_dirs():
        if inside != host:
            ro_bind(host, inside)
    argv += ["--proc", "/proc"]
    # bwrap covers these only when it can check them as the caller; cover them always.
    for name in ("sys", "sysrq-trigger", "pressure"):
        if os.path.exists(f"/proc/{name}"):
            argv += ["--ro-bind", f"/proc/{name}", f"/proc/{name}"]
    argv += [
        "--dev", "/dev",
        "--perms", "0777", "--size", str(tmpfs_bytes), "--tmpfs", WORKDIR,
        "--perms", "1777", "--size", str(tmpfs_bytes), "--tmpfs", "/dev/shm",
        "--chdir", WORKDIR,
        # Else the root and /dev tmpfs would take unbounded writes.
        "--remount-ro", "/", "--remount-ro", "/dev",
    ]  # fmt: skip
    for key, value in sandbox_env(WORKDIR, isolated=True).items():
        argv += ["--setenv", key, value]
    return argv


def no_userns_fd() -> int | None:
    """As root (no user namespace of the sandbox's own), a descriptor holding the seccomp filter that
    stands in for --disable-userns; the caller passes it to bwrap and closes it. Else None."""
    return seccomp.filter_fd() if sandbox_uid() is not None else None


def program_prefix() -> tuple[str, ...]:
    """What goes between bwrap's `--` and the program: the drop from root, when evalmap is root."""
    uid = sandbox_uid()
    return () if uid is None else drop_to(uid)


@functools.cache
def bwrap_path() -> str | None:
    return shutil.which("bwrap")


@functools.cache
def _bwrap_problem() -> str | None:
    """Why bwrap cannot sandbox here (None when it can): probed once with the real options."""
    bwrap = bwrap_path()
    if bwrap is None:
        return "bwrap is not installed (Debian: apt-get install bubblewrap)"
    seccomp_fd = no_userns_fd()
    try:
        options = bwrap_argv(bwrap, 1 << 20, network=False, seccomp_fd=seccomp_fd)
        argv = [*options, "--", *program_prefix(), interpreter(), "-S", "-c", "import json"]
        inherited = [seccomp_fd] if seccomp_fd is not None else []
        probe = subprocess.run(argv, capture_output=True, timeout=60, env={}, pass_fds=inherited)
    except SandboxUnavailableError as exc:
        return str(exc)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap failed to start: {exc}"
    finally:
        if seccomp_fd is not None:
            os.close(seccomp_fd)
    if probe.returncode != 0:
        return f"bwrap failed to start: {probe.stderr.decode(errors='replace').strip()}"
    return None


_unsafe_allowed = False  # --unsafe-no-sandbox, for the duration of a run (see unsandboxed_allowed)


@contextlib.contextmanager
def unsandboxed_allowed(allowed: bool):
    """While open (and `allowed`), model code may run with resource limits only where bwrap cannot run:
    the user's explicit --unsafe-no-sandbox. Process-wide, since the scorers are threads of the run."""
    global _unsafe_allowed
    before = _unsafe_allowed
    _unsafe_allowed = before or allowed
    try:
        yield
    finally:
        _unsafe_allowed = before


@functools.cache
def _warn_fallback(reason: str) -> None:
    """Said once per process (a run checks before its scorer threads start, so they find it said)."""
    logger.warning(
        "evalmap sandbox: %s; untrusted code runs with resource limits ONLY (no filesystem, network or process "
        "isolation).", reason,
    )


@functools.cache
def _rlimit_problem() -> str | None:
    """Why the fallback cannot run model code as a non-root uid here (None when it can)."""
    try:
        uid = sandbox_uid()
    except SandboxUnavailableError as exc:
        return str(exc)
    if uid is None:
        return None
    argv = [interpreter(), "-S", "-c", "import json, encodings.idna"]  # the stdlib must be readable
    try:
        probe = subprocess.run(
            argv, capture_output=True, timeout=60, env={}, cwd="/", user=uid, group=uid, extra_groups=[]
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"uid {uid} cannot run {interpreter()} ({exc})"
    if probe.returncode != 0:
        return f"uid {uid} cannot run {interpreter()} ({probe.stderr.decode(errors='replace').strip()[-200:]})"
    return None


def isolation_available() -> str:
    """ "bwrap" when bubblewrap works here, else "rlimit" (said loudly, once) when the user asked for it
    (EVALMAP_SANDBOX=rlimit, or --unsafe-no-sandbox: `unsandboxed_allowed`); else one sentence.

    The fallback never runs model code as root: as root it runs it as `sandbox_uid()`, and
    where that uid cannot run this Python, there is no fallback and evalmap says so.
    """
    mode = os.environ.get(ENV_VAR, "auto")
    if mode not in ("auto", "bwrap", "rlimit"):
        raise SandboxUnavailableError(f"{ENV_VAR}={mode!r} is not one of auto, bwrap, rlimit; fix or unset it.")
    if mode == "rlimit":
        reason = f"{ENV_VAR}=rlimit"
    else:
        problem = _bwrap_problem()
        if problem is None:
            return "bwrap"
        if mode == "bwrap":
            raise SandboxUnavailableError(f"{ENV_VAR}=bwrap is set but {problem}; install bubblewrap or unset it.")
        if not _unsafe_allowed:
            raise SandboxUnavailableError(
                f"Model-written code runs only in a sandbox, and here {problem}; install bubblewrap (as root: "
                "apt-get install bubblewrap, which `bash scripts/install.sh` does) or pass --unsafe-no-sandbox "
                "(evaluate(..., unsafe_no_sandbox=True)) to run it with resource limits only."
            )
        reason = problem
    blocker = _rlimit_problem()
    if blocker is not None:
        raise SandboxUnavailableError(
            f"Model-written code cannot run safely here: {reason}, and evalmap runs as root but {blocker}; "
            "install bubblewrap (Debian: apt-get install bubblewrap) or run evalmap as a non-root user."
        )
    _warn_fallback(reason)
    return "rlimit"
