"""The test harness run as main.py inside the sandbox for mbpp, bigcodebench, codecontests and apps.

It reads job.json (then deletes it), loads the program as a module that is not __main__, runs
each test with its own time limit and writes one line per test, prefixed with a per-run
marker, to a copy of the original stdout; the program's own stdout goes to a file, so it can
neither flood nor forge the results. The whole run is bounded by the sandbox's limits.
Kinds: asserts (mbpp), unittest (bigcodebench), stdio and call (codecontests, apps).
"""

import json as _json
import os as _os
import signal as _signal
import sys as _sys
import time as _time

_write, _exit, _dumps, _clock = _os.write, _os._exit, _json.dumps, _time.monotonic
with open("job.json") as _fh:
    _JOB = _json.load(_fh)
_os.remove("job.json")
_MARK = _JOB["mark"]
_OUT = _os.dup(1)
_fd = _os.open("program_stdout.txt", _os.O_WRONLY | _os.O_CREAT | _os.O_TRUNC)
_os.dup2(_fd, 1)
_os.close(_fd)


class _TestTimeout(BaseException):
    pass


def _alarm(signum, frame):
    raise _TestTimeout()


_signal.signal(_signal.SIGALRM, _alarm)


def _emit(record):
    _write(_OUT, (_MARK + _dumps(record, default=repr) + "\n").encode())


def _outcome(exc):
    if exc is None:
        return "passed", None, ""
    if isinstance(exc, _TestTimeout):
        return "timeout", "TimeoutError", ""
    name = type(exc).__name__
    message = str(exc)[:300]
    return ("failed" if isinstance(exc, AssertionError) else "error"), name, message


def _timed(fn, seconds):
    _signal.setitimer(_signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        _signal.setitimer(_signal.ITIMER_REAL, 0)


def _load(code, name):
    import builtins
    import types

    module = types.ModuleType(name)
    module.__dict__.update(
        {
            "__builtins__": builtins,
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
        _timed(lambda: exec(compile(code, name + ".py", "exec"), module.__dict__), _JOB["load_s"])
    except BaseException as exc:  # noqa: BLE001 - the program's failure is the outcome
        status, error_type, message = _outcome(exc)
        if isinstance(exc, SystemExit):
            status, error_type = "error", "SystemExit"
        _emit({"load": status, "error_type": error_type, "message": message})
        _exit(3)
    return module


def _asserts():
    module = _load(_JOB["code"], "__solution__")
    timed_out = False
    for i, test in enumerate(_JOB["tests"]):
        if timed_out:  # the module's state is suspect after an interrupted test
            _emit({"test": i, "status": "not_run", "error_type": None, "message": "after a timeout", "s": 0.0})
            continue
        exc = None
        start = _clock()
        try:
            _timed(lambda t=test, n=i: exec(compile(t, f"<test {n}>", "exec"), module.__dict__), _JOB["test_s"])
        except BaseException as e:  # noqa: BLE001
            exc = e
        status, error_type, message = _outcome(exc)
        if isinstance(exc, SystemExit):
            status, error_type = "error", "SystemExit"
        timed_out = status == "timeout"
        _emit({"test": i, "status": status, "error_type": error_type, "message": message, "s": _clock() - start})


def _unittest():
    import unittest

    module = _load(_JOB["code"], "__test__")
    classes = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, unittest.TestCase)]
    chosen = [module.TestCases] if isinstance(getattr(module, "TestCases", None), type) else classes
    suite = unittest.TestSuite(unittest.defaultTestLoader.loadTestsFromTestCase(c) for c in chosen)

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
            _emit(
                {
                    "test": test.id().split(".")[-1],
                    "status": status,
                    "error_type": error_type,
                    "message": message,
                    "s": _clock() - self._start_,
                }
            )

    if not chosen:
        _emit({"load": "error", "error_type": "NoTests", "message": "no unittest.TestCase in the program"})
        _exit(3)
    suite.run(Result())


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


def _stdio():
    import subprocess

    with open("solution.py", "w") as fh:
        fh.write(_JOB["code"])
    env = {k: v for k, v in _os.environ.items()}
    timed_out = False
    for i, (stdin, want) in enumerate(_JOB["tests"]):
        if timed_out:
            _emit({"test": i, "status": "not_run", "error_type": None, "message": "after a timeout", "s": 0.0})
            continue
        start = _clock()
        try:
            proc = subprocess.run(
                [_sys.executable, "-S", "solution.py"],
                input=stdin.encode(),
                capture_output=True,
                timeout=_JOB["test_s"],
                env=env,
            )
        except subprocess.TimeoutExpired:
            timed_out = True
            _emit({"test": i, "status": "timeout", "error_type": "TimeoutError", "message": "", "s": _clock() - start})
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
        _emit({"test": i, **rec, "s": _clock() - start})


def _call():
    module = _load(_JOB["code"], "__solution__")
    name = _JOB["fn_name"]
    solution = getattr(module, "Solution", None)
    try:
        fn = getattr(solution(), name) if isinstance(solution, type) else getattr(module, name)
    except Exception as exc:  # noqa: BLE001
        _emit({"load": "error", "error_type": type(exc).__name__, "message": str(exc)[:300]})
        _exit(3)
    for i, (args, want) in enumerate(_JOB["tests"]):
        exc, ok = None, False
        start = _clock()
        try:
            got = _timed(lambda a=args: fn(*a), _JOB["test_s"])
            if isinstance(got, tuple):
                got = list(got)
            ok = got == want or (isinstance(want, list) and len(want) == 1 and got == want[0])
        except BaseException as e:  # noqa: BLE001
            exc = e
        status, error_type, message = _outcome(exc)
        if exc is None and not ok:
            status, error_type, message = "failed", "WrongAnswer", f"expected {want!r:.100}, got {got!r:.100}"
        _emit({"test": i, "status": status, "error_type": error_type, "message": message, "s": _clock() - start})


{"asserts": _asserts, "unittest": _unittest, "stdio": _stdio, "call": _call}[_JOB["kind"]]()
_exit(0)
