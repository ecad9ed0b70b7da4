"""The sandbox against hostile programs: each test records what the program got to do."""

from __future__ import annotations

import ast
import os
import resource
import socket
import subprocess
import textwrap
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest

from evalmap.sandbox import (
    ExecResult,
    Limits,
    SandboxUnavailableError,
    isolation,
    isolation_available,
    run_python,
)
from evalmap.sandbox.cgroup import controller_root
from evalmap.sandbox.output import CappedBuffer, exception_name

HAS_BWRAP = isolation_available() == "bwrap"
bwrap_only = pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap cannot run here: hostile tests need it")
CAN_CAP_PROCESSES = controller_root("pids") is not None or os.geteuid() != 0


@pytest.fixture(autouse=True)
def _auto_isolation(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stray EVALMAP_SANDBOX=rlimit must not send the hostile programs to the host."""
    monkeypatch.delenv(isolation.ENV_VAR, raising=False)


def run(code: str, **kwargs: Any) -> ExecResult:
    return run_python(textwrap.dedent(code), **kwargs)


def sandbox_processes() -> list[psutil.Process]:
    """Live descendants that belong to a sandbox (other tests' helpers, e.g. servers, are ignored)."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if "bwrap" in cmdline or "main.py" in cmdline:
            found.append(proc)
    return found


def pgrep(marker: str) -> str:
    return subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.strip()


# --- ordinary programs -------------------------------------------------------------------------


def test_passing_program() -> None:
    result = run("print('hello')")
    assert (result.status, result.exit_code, result.stdout, result.error_type) == ("passed", 0, "hello\n", None)
    assert result.isolation == isolation_available()


def test_failing_assertion() -> None:
    result = run("def add(a, b):\n    return a - b\nassert add(1, 2) == 3\n")
    assert (result.status, result.exit_code, result.error_type) == ("failed", 1, "AssertionError")


def test_other_exceptions_are_errors() -> None:
    assert run("raise ValueError('bad input')").error_type == "ValueError"
    syntax = run("def f(:\n    pass\n")
    assert (syntax.status, syntax.error_type) == ("error", "SyntaxError")
    assert run("import sys; sys.exit(3)").status == "failed"


def test_stdin_echo() -> None:
    text = "line one\nline two\n" + "x" * 200_000  # larger than a pipe: must not deadlock
    result = run("import sys; sys.stdout.write(sys.stdin.read())", stdin=text, limits=Limits(max_output_bytes=1 << 20))
    assert (result.status, result.stdout, result.truncated) == ("passed", text, False)


def test_files_beside_main() -> None:
    files = {"helper.py": "def twice(x):\n    return 2 * x\n", "data/in.txt": "21"}
    result = run("import helper; print(helper.twice(int(open('data/in.txt').read())))", files=files)
    assert result.stdout == "42\n"


@pytest.mark.parametrize("name", ["../escape.py", "/etc/passwd", "main.py", "."])
def test_file_names_must_stay_inside(name: str) -> None:
    with pytest.raises(ValueError, match="relative path"):
        run_python("pass", files={name: "x"})


def test_system_files_a_program_needs_are_readable() -> None:
    """As an unprivileged uid, the bound /etc files must still be reachable (bwrap once made /etc 0700)."""
    result = run("""
        import os, socket, ssl
        print(socket.getaddrinfo("localhost", 0)[0][4][0])
        print("hosts" in os.listdir("/etc"), ssl.create_default_context().cert_store_stats()["x509_ca"] > 0)
    """)
    assert (result.status, result.stdout) == ("passed", "127.0.0.1\nTrue True\n"), result


def test_packages_of_a_venv_in_tmp_are_importable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A venv's site-packages under /tmp would sit under the sandbox's own /tmp: it is bound elsewhere."""
    venv_site = tmp_path / "venv" / "lib" / "site-packages"
    venv_site.mkdir(parents=True)
    (venv_site / "evalmap_venv_probe.py").write_text("ANSWER = 42\n")
    real = isolation.site.getsitepackages
    monkeypatch.setattr(isolation.site, "getsitepackages", lambda: [str(venv_site), *real()])
    result = run("import evalmap_venv_probe, numpy; print(evalmap_venv_probe.ANSWER)")
    assert (result.status, result.stdout) == ("passed", "42\n"), result


def test_site_packages_importable() -> None:
    result = run("import numpy as np; print(int(np.arange(10).sum()))")
    assert (result.status, result.stdout) == ("passed", "45\n"), result.stderr


# --- hostile programs --------------------------------------------------------------------------


@bwrap_only
def test_network_is_unreachable() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        code = f"""
            import socket
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=2)
                print("CONNECTED")
            except OSError as exc:
                print("REFUSED", type(exc).__name__)
        """
        blocked = run(code)
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()
        allowed = run(code, network=True)
    assert blocked.stdout.startswith("REFUSED"), blocked
    assert allowed.stdout == "CONNECTED\n"  # network=True really shares the host's network


@bwrap_only
def test_cannot_write_outside_its_dir(tmp_path: Path) -> None:
    name = f"evalmap_escape_{uuid.uuid4().hex}"
    targets = [tmp_path / name, Path.cwd() / name, Path("/root") / name, Path("/usr") / name, Path("/") / name]
    code = f"""
        for path in {[str(t) for t in targets]!r}:
            try:
                open(path, "w").write("pwned")
                print("WROTE", path)
            except OSError as exc:
                print("BLOCKED", type(exc).__name__)
        open("inside.txt", "w").write("fine")
        print(open("inside.txt").read())
    """
    try:
        result = run(code)
        assert [t for t in targets if t.exists()] == []
    finally:
        for target in targets:
            target.unlink(missing_ok=True)
    assert "WROTE" not in result.stdout and result.stdout.endswith("fine\n"), result.stdout


@bwrap_only
def test_home_and_caller_files_are_invisible(tmp_path: Path) -> None:
    secret = f"s3cret-{uuid.uuid4().hex}"
    in_home = Path("/root") / f".evalmap_test_secret_{uuid.uuid4().hex}"
    in_tmp = tmp_path / "secret.txt"
    in_store = Path.cwd() / "pyproject.toml"  # the caller's cwd: where a run keeps its store
    code = f"""
        import os
        for path in {[str(in_home), str(in_tmp), str(in_store), "/root/.ssh/id_rsa"]!r}:
            try:
                print("READ", open(path).read())
            except OSError as exc:
                print("DENIED", type(exc).__name__)
        print("HOME", os.path.expanduser("~"), os.listdir("/root"))
    """
    in_tmp.write_text(secret)
    in_home.write_text(secret)
    try:
        result = run(code)
    finally:
        in_home.unlink()
    assert result.status == "passed", result.stderr
    assert "READ" not in result.stdout and secret not in result.stdout
    assert in_home.name not in result.stdout
    assert "HOME /tmp" in result.stdout


@bwrap_only
def test_environment_secrets_do_not_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"hunter2-{uuid.uuid4().hex}"
    monkeypatch.setenv("EVALMAP_TEST_SECRET", secret)
    result = run("""
        import glob, os
        print(dict(os.environ))
        for path in glob.glob("/proc/*/environ"):
            try:
                print(open(path, "rb").read())
            except OSError:
                pass
    """)
    assert result.status == "passed" and "HOME" in result.stdout
    assert secret not in result.stdout and "EVALMAP_TEST_SECRET" not in result.stdout


@bwrap_only
@pytest.mark.skipif(not CAN_CAP_PROCESSES, reason="root without a writable pids cgroup: no process cap")
def test_fork_count_is_capped() -> None:
    result = run(
        """
        import os, time
        forked = 0
        try:
            for _ in range(500):
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                forked += 1
        except OSError as exc:
            print(type(exc).__name__)
        print(forked)
        """,
        limits=Limits(wall_s=10, max_processes=16),
    )
    blocked, forked = result.stdout.split()
    assert blocked == "BlockingIOError" and int(forked) < 16, result
    assert result.status == "passed" and result.wall_s < 5  # the sleepers died with the sandbox


@bwrap_only
@pytest.mark.skipif(not CAN_CAP_PROCESSES, reason="root without a writable pids cgroup: no process cap")
def test_fork_bomb_is_contained() -> None:
    marker = f"evalmap_bomb_{uuid.uuid4().hex}"
    result = run(
        f"""
        import os, sys
        if sys.argv[1:] != ["{marker}"]:
            os.execv(sys.executable, [sys.executable, "main.py", "{marker}"])
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """,
        limits=Limits(wall_s=5, max_processes=32),
    )
    assert result.status == "timeout" and 5 <= result.wall_s < 8
    assert pgrep(marker) == "" and sandbox_processes() == []
    assert run("print(1)").stdout == "1\n"  # and the machine still runs programs


def test_memory_bomb() -> None:
    result = run("block = bytearray(4 * 1024**3)")
    assert (result.status, result.error_type) == ("memory", "MemoryError")
    assert result.wall_s < 5


def test_infinite_loop_times_out() -> None:
    result = run("while True:\n    pass\n", limits=Limits(wall_s=1))
    assert (result.status, result.exit_code, result.error_type) == ("timeout", None, "TimeoutError")
    assert 1 <= result.wall_s < 2.5


def test_cpu_limit_stops_a_busy_program_before_the_wall_limit() -> None:
    result = run("while True:\n    pass\n", limits=Limits(wall_s=20, cpu_s=1))
    assert (result.status, result.error_type) == ("timeout", "TimeoutError")
    assert result.wall_s < 6


def test_huge_output_is_capped() -> None:
    result = run("""
        import sys
        chunk = "x" * (1 << 20)
        for _ in range(100):
            sys.stdout.write(chunk)
        sys.stdout.write("END")
    """)
    assert result.status == "passed" and result.truncated
    assert result.stdout.startswith("x") and result.stdout.endswith("xEND")
    assert len(result.stdout) < 65536 + 100 and "bytes truncated" in result.stdout
    assert result.wall_s < 8


def test_file_size_is_limited() -> None:
    result = run("open('big.bin', 'wb').write(b'x' * (3 << 20))", limits=Limits(max_file_mb=1))
    assert result.status == "error" and result.error_type == "OSError", result


@bwrap_only
def test_killing_its_parent_harms_nobody() -> None:
    result = run("""
        import os, time
        try:
            os.kill(os.getppid(), 9)
        except PermissionError:
            pass  # as root, the parent is bwrap's init, run by another uid than the program's
        time.sleep(0.2)
        print("parent", os.getppid())
    """)
    # The parent is the sandbox's pid-1 init, which the kernel shields from its own namespace.
    assert (result.status, result.stdout) == ("passed", "parent 1\n"), result
    assert psutil.Process().is_running()


@bwrap_only
def test_daemon_does_not_outlive_the_run() -> None:
    marker = f"evalmap_daemon_{uuid.uuid4().hex}"
    result = run(f"""
        import os, sys, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                late = "import time; time.sleep(60); open('/tmp/late', 'w').write('x')"
                os.execv(sys.executable, [sys.executable, "-c", late, "{marker}"])
            os._exit(0)
        time.sleep(0.5)
        print("daemon started")
    """)
    assert result.status == "passed" and result.wall_s < 5
    assert pgrep(marker) == "" and sandbox_processes() == []


# --- escapes to host root ----------------------------------------------------------------------


@bwrap_only
def test_proc_sys_and_sys_are_read_only_from_inside() -> None:
    """kernel.core_pattern set to a pipe runs a command as host root: no sysctl may be writable."""
    before = Path("/proc/sys/kernel/core_pattern").read_text()
    result = run("""
        import os
        writable = []
        for top in ("/proc/sys", "/sys", "/proc/sysrq-trigger", "/proc/pressure"):
            for folder, _, names in os.walk(top):
                writable += [os.path.join(folder, n) for n in names if os.access(os.path.join(folder, n), os.W_OK)]
        print("WRITABLE", len(writable), writable[:5])
        for path, value in [("/proc/sys/kernel/core_pattern", "|/bin/sh -c 'touch /pwned'"),
                            ("/proc/sys/kernel/ns_last_pid", "5"), ("/proc/sys/vm/drop_caches", "3")]:
            try:
                with open(path, "w") as fh:
                    fh.write(value)
                print("WROTE", path)
            except OSError as exc:
                print("BLOCKED", type(exc).__name__)
    """)
    assert result.status == "passed", result.stderr
    assert "WRITABLE 0 []" in result.stdout and "WROTE" not in result.stdout, result.stdout
    assert Path("/proc/sys/kernel/core_pattern").read_text() == before


@bwrap_only
def test_no_privilege_inside() -> None:
    result = run("""
        import os
        status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
        print("CAPS", status["CapPrm"].strip(), status["CapEff"].strip(), status["CapAmb"].strip())
        for attempt in (lambda: os.setuid(0), lambda: os.setgid(0), lambda: os.chroot("/"),
                        lambda: os.chmod("/usr/bin", 0o777), lambda: os.chown("/tmp", 0, 0)):
            try:
                attempt()
                print("ALLOWED")
            except OSError as exc:
                print("DENIED", type(exc).__name__)
    """)
    assert result.status == "passed", result.stderr
    assert "CAPS 0000000000000000 0000000000000000 0000000000000000" in result.stdout, result.stdout
    assert "ALLOWED" not in result.stdout, result.stdout


@bwrap_only
def test_no_user_namespaces_inside() -> None:
    """A user namespace would hand the program every capability over its own namespaces."""
    result = run("""
        import ctypes, os, subprocess, sys, threading
        libc = ctypes.CDLL(None, use_errno=True)
        print("UNSHARE", libc.unshare(0x10000000), os.strerror(ctypes.get_errno()))
        try:
            os.unshare(os.CLONE_NEWUSER)
            print("CREATED")
        except (OSError, AttributeError) as exc:
            print("REFUSED", type(exc).__name__)
        threading.Thread(target=print, args=("THREAD",)).start()
        print(subprocess.run([sys.executable, "-S", "-c", "print('CHILD')"], capture_output=True, text=True).stdout)
    """)
    assert result.status == "passed", result.stderr
    assert "UNSHARE -1" in result.stdout and "CREATED" not in result.stdout, result.stdout
    assert "THREAD" in result.stdout and "CHILD" in result.stdout  # ordinary threads and processes still work


@bwrap_only
def test_model_code_never_runs_as_host_root() -> None:
    """Seen from the host, every process of the sandboxed program has a non-zero uid and no capabilities."""
    marker = f"evalmap_uid_{uuid.uuid4().hex}"
    seen: list[tuple[list[int], str]] = []

    def watch() -> None:
        for _ in range(200):
            for line in filter(None, pgrep(marker).splitlines()):
                try:
                    proc = psutil.Process(int(line))
                    status = Path(f"/proc/{line}/status").read_text()
                    seen.append(([*proc.uids(), *proc.gids()], status.split("CapEff:")[1].split()[0]))
                except (psutil.Error, OSError, IndexError):
                    continue
            if seen:
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    result = run(f"""
        import os, sys, time
        if sys.argv[1:] != ["{marker}"]:
            os.execv(sys.executable, [sys.executable, "-S", "main.py", "{marker}"])
        time.sleep(3)
    """)
    watcher.join()
    assert result.status == "passed", result.stderr
    assert seen, "the sandboxed program was never seen from the host"
    for ids, cap_eff in seen:
        assert 0 not in ids and int(cap_eff, 16) == 0, (ids, cap_eff)


# --- memory across processes -------------------------------------------------------------------

_CHILDREN_ALLOCATE = """
    import os, sys, time
    pids = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            block = bytearray(b"x" * (400 << 20))  # touched, so it is resident
            print("ALLOCATED", flush=True)
            time.sleep(2)
            os._exit(0)
        pids.append(pid)
    codes = [os.waitpid(pid, 0)[1] for pid in pids]
    print("CHILD_STATUSES", codes)
"""


@bwrap_only
@pytest.mark.skipif(controller_root("memory") is None, reason="no memory cgroup here")
def test_memory_is_capped_for_the_whole_execution() -> None:
    """Three children of 400 MB each, each within its own 1 GB: the execution's 1 GB cgroup stops the third."""
    result = run(_CHILDREN_ALLOCATE, limits=Limits(memory_mb=1024, total_memory_mb=1024, wall_s=20))
    assert result.stdout.count("ALLOCATED") < 3, result.stdout
    _, _, tail = result.stdout.partition("CHILD_STATUSES")
    statuses = ast.literal_eval(tail.strip()) if tail else None
    assert statuses is None or any(code & 0x7F == 9 for code in statuses), result.stdout  # SIGKILLed by the OOM killer
    alone = run("block = bytearray(b'x' * (1500 << 20))", limits=Limits(memory_mb=4096, total_memory_mb=1024))
    assert (alone.status, alone.error_type) == ("memory", "MemoryError"), alone


def test_without_a_memory_cgroup_processes_times_memory_fit_the_total() -> None:
    limits = Limits(memory_mb=1024, total_memory_mb=4096, max_processes=64)
    assert limits.process_cap(memory_cgroup=True) == 64
    assert limits.process_cap(memory_cgroup=False) == 4
    assert dict(limits.rlimits(None))[resource.RLIMIT_NPROC] == (4, 4)


# --- pool, cleanup, fallback -------------------------------------------------------------------


def test_concurrent_runs_keep_their_order() -> None:
    codes = [f"import time; time.sleep({(8 - i) * 0.03}); print({i})" for i in range(8)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run_python, codes))
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(8)]


def _footprint() -> tuple[int, int, list[str], int]:
    roots = {found[0] for found in map(controller_root, ("pids", "memory")) if found}
    cgroups = sorted(str(p) for root in roots for p in root.glob(f"evalmap-{os.getpid()}-*"))
    tmp = len(list(Path("/tmp").glob("evalmap-sandbox-*")))
    return len(sandbox_processes()), tmp, cgroups, len(os.listdir("/proc/self/fd"))


def _assert_no_leaks(runs: int) -> None:
    before = _footprint()
    codes = ["print(1)", "assert False", "import os; os.fork(); print(2)", "raise SystemExit(4)"]
    with ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool:
        results = list(pool.map(lambda i: run_python(codes[i % len(codes)], limits=Limits(wall_s=10)), range(runs)))
    assert [r.status for r in results[:4]] == ["passed", "failed", "passed", "failed"]
    assert all(r.status in ("passed", "failed") for r in results)
    assert _footprint() == before


def test_no_leaks_after_many_runs() -> None:
    _assert_no_leaks(200)


@pytest.mark.slow
def test_no_leaks_after_a_thousand_runs(request: pytest.FixtureRequest) -> None:
    if os.environ.get("EVALMAP_SLOW") != "1" and "slow" not in str(request.config.getoption("markexpr")):
        pytest.skip("slow: set EVALMAP_SLOW=1 or run with -m slow")
    _assert_no_leaks(1000)


def test_rlimit_fallback(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(isolation.ENV_VAR, "rlimit")
    monkeypatch.setenv("EVALMAP_TEST_SECRET", "hunter2")
    isolation._warn_fallback.cache_clear()
    if isolation._rlimit_problem() is not None:  # root, and the unprivileged uid cannot reach this Python
        with pytest.raises(SandboxUnavailableError, match="cannot run safely here.*non-root user"):
            isolation_available()
        return
    tmp_before = len(list(Path("/tmp").glob("evalmap-sandbox-*")))
    assert isolation_available() == "rlimit" and isolation_available() == "rlimit"
    said = [r.getMessage() for r in caplog.records if "resource limits ONLY" in r.getMessage()]
    assert len(said) == 1  # once, however often it is asked
    code = "import os, sys; print(sys.stdin.read(), 'EVALMAP_TEST_SECRET' in os.environ, os.getuid() > 0)"
    echo = run(code, stdin="hi")
    assert (echo.status, echo.stdout, echo.isolation) == ("passed", "hi False True\n", "rlimit")
    assert run("assert 1 == 2").error_type == "AssertionError"
    assert run("x = bytearray(4 * 1024**3)").status == "memory"
    loop = run("while True:\n    pass\n", limits=Limits(wall_s=1))
    assert loop.status == "timeout" and loop.wall_s < 2.5
    assert len(list(Path("/tmp").glob("evalmap-sandbox-*"))) == tmp_before


def test_rlimit_fallback_never_runs_as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """As root, the fallback either runs model code as another uid or refuses to run it."""
    monkeypatch.setenv(isolation.ENV_VAR, "rlimit")
    monkeypatch.setenv(isolation.UID_ENV_VAR, "0")
    isolation._rlimit_problem.cache_clear()
    try:
        if os.geteuid() == 0:
            with pytest.raises(SandboxUnavailableError, match="non-zero numeric uid"):
                isolation_available()
    finally:
        isolation._rlimit_problem.cache_clear()


def test_broken_bwrap_refuses_unless_unsafe_is_asked(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(isolation, "_bwrap_problem", lambda: "bwrap failed to start: test")
    monkeypatch.setattr(isolation, "_rlimit_problem", lambda: None)
    with pytest.raises(SandboxUnavailableError, match="bwrap failed to start: test.*--unsafe-no-sandbox"):
        isolation_available()
    with isolation.unsandboxed_allowed(True):
        monkeypatch.setattr(isolation, "_rlimit_problem", lambda: "uid 65534 cannot run python")
        with pytest.raises(SandboxUnavailableError, match="bwrap failed to start: test.*cannot run python"):
            isolation_available()
        monkeypatch.setattr(isolation, "_rlimit_problem", lambda: None)
        isolation._warn_fallback.cache_clear()
        assert isolation_available() == "rlimit"
        assert any("bwrap failed to start: test" in r.getMessage() for r in caplog.records)
    with pytest.raises(SandboxUnavailableError, match="--unsafe-no-sandbox"):  # only while the run lasts
        isolation_available()
    monkeypatch.setenv(isolation.ENV_VAR, "bwrap")
    with pytest.raises(SandboxUnavailableError, match="install bubblewrap"):
        isolation_available()
    monkeypatch.setenv(isolation.ENV_VAR, "none")
    with pytest.raises(SandboxUnavailableError, match="not one of"):
        isolation_available()


# --- output parsing ----------------------------------------------------------------------------


def test_capped_buffer_keeps_head_and_tail() -> None:
    buffer = CappedBuffer(8)
    for chunk in (b"abc", b"defgh", b"ijkl"):
        buffer.feed(chunk)
    assert buffer.truncated and buffer.total == 12
    assert buffer.text() == "abcd\n... [4 bytes truncated] ...\nijkl"


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        ("Traceback (most recent call last):\n  File ...\nAssertionError\n", "AssertionError"),
        ("Traceback (most recent call last):\nnumpy.core._exceptions._ArrayMemoryError: big\n", "_ArrayMemoryError"),
        ('  File "main.py", line 1\n    def f(:\nSyntaxError: invalid syntax\n', "SyntaxError"),
        ("Traceback (most recent call last):\nKeyboardInterrupt\n", "KeyboardInterrupt"),
        ("Warning: something odd\n", None),
        ("", None),
    ],
)
def test_exception_name(stderr: str, expected: str | None) -> None:
    assert exception_name(stderr) == expected
