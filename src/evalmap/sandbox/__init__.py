"""Isolated execution of untrusted model-written code (bubblewrap plus resource limits), and the
test protocol: `run_tests(program, tests, limits) -> TestOutcome`."""

from evalmap.sandbox.executor import DEFAULT_LIMITS, ExecResult, Limits, run_python
from evalmap.sandbox.isolation import SandboxUnavailableError, isolation_available
from evalmap.sandbox.protocol import TestOutcome, Tests, run_tests

__all__ = [
    "DEFAULT_LIMITS",
    "ExecResult",
    "Limits",
    "SandboxUnavailableError",
    "TestOutcome",
    "Tests",
    "isolation_available",
    "run_python",
    "run_tests",
]
