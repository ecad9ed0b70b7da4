"""Isolated execution of untrusted model-written code: bubblewrap plus resource limits."""

from evalmap.sandbox.executor import DEFAULT_LIMITS, ExecResult, Limits, SandboxPool, run_python
from evalmap.sandbox.isolation import SandboxUnavailableError, isolation_available

__all__ = [
    "DEFAULT_LIMITS",
    "ExecResult",
    "Limits",
    "SandboxPool",
    "SandboxUnavailableError",
    "isolation_available",
    "run_python",
]
