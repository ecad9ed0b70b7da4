"""Open the report in headless Chromium over the DevTools protocol.

Checks that the heatmap, a leaderboard and a samples page render, that filters and
pagination work, that a model's output containing HTML stays text, that the console
shows no error, and that every request stays inside the report folder (no network).
A screenshot is kept under the test's tmp dir (report.png).

The DevTools websocket is spoken with the standard library (a minimal RFC 6455
client), so the test needs nothing beyond Debian's `chromium`.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

from evalmap.catalog.loader import load_catalog
from evalmap.report.html import build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class _WebSocket:
    """Just enough of RFC 6455 for CDP: masked text frames out, (fragmented) text frames in."""

    def __init__(self, url: str, timeout: float):
        u = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            data += chunk
        head, self.buf = data.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"websocket handshake refused: {head[:200]!r}")

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("DevTools connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _frame(self, opcode: int, payload: bytes) -> None:
        head = bytearray([0x80 | opcode])
        n = len(payload)
        if n < 126:
            head.append(0x80 | n)
        elif n < 1 << 16:
            head.append(0x80 | 126)
            head += struct.pack(">H", n)
        else:
            head.append(0x80 | 127)
            head += struct.pack(">Q", n)
        mask = os.urandom(4)
        self.sock.sendall(bytes(head) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def send(self, text: str) -> None:
        self._frame(0x1, text.encode())

    def recv(self) -> str:
        parts = []
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the websocket")
            if opcode == 0x9:
                self._frame(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            parts.append(payload)
            if b0 & 0x80:
                return b"".join(parts).decode()

    def close(self) -> None:
        self.sock.close()


class _CDP:
    def __init__(self, ws: _WebSocket):
        self.ws = ws
        self.next_id = 0
        self.events: list[dict] = []
        self.session: str | None = None

    def call(self, method: str, params: dict | None = None, browser: bool = False) -> dict:
        self.next_id += 1
        msg: dict = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session and not browser:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ev in self.events:
                if ev.get("method") == method:
                    return ev
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(method)

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for: {expression}")


@pytest.fixture
def chromium(tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; .ci/run installs it with --dev)")
    profile = tmp_path / "chromium-profile"
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
         "--disable-extensions", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
         "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1", "--window-size=1400,2000",
         "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.is_file() and len(port_file.read_text().splitlines()) >= 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("chromium did not start its DevTools endpoint")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        ws = _WebSocket(f"ws://127.0.0.1:{port}{path}", timeout=30)
        cdp = _CDP(ws)
        target = cdp.call("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
        cdp.session = cdp.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                               browser=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            cdp.call(f"{domain}.enable")
        yield cdp
        ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_report_renders_in_chromium(report_store, tmp_path, chromium):
    store, a, b = report_store
    out = tmp_path / "report"
    result = build_report(store, [a, b], out, load_catalog(), compare_iters=200)
    arc = result.data.cells[("qwen25_7b", "arc_challenge")]
    humaneval = result.data.cells[("llama31_8b", "humaneval")]
    cdp = chromium

    cdp.call("Page.navigate", {"url": result.index.resolve().as_uri() + f"#samples/{arc.key}"})
    cdp.wait_event("Page.loadEventFired", timeout=30)

    # the heatmap: every run cell, the recommended-but-not-run gaps
    assert cdp.js("document.querySelectorAll('#heatmap td.cell').length") == len(result.data.cells)
    assert cdp.js("document.querySelectorAll('#heatmap td.gap').length") == len(result.data.gaps) > 0
    cell = cdp.js(f"document.querySelector('#heatmap td.cell[data-job=\"{arc.key}\"]').textContent")
    assert f"n={arc.primary.n}" in cell and "±" in cell
    # a leaderboard with ranks and n
    board = cdp.js("document.querySelector('#lb-task_type-mathematics').innerText")
    assert "qwen25_7b" in board and "(n=20)" in board and "1" in board
    assert cdp.js("document.querySelectorAll('#leaderboards table.leaderboard tbody tr').length") > 3
    assert cdp.js("!!document.querySelector('#speed-figure') && document.querySelector('#speed-figure').complete")

    # the samples page opened from the URL: 30 samples, 25 per page
    cdp.wait_for("document.querySelectorAll('#sample-list .sample').length > 0")
    assert cdp.js("document.querySelectorAll('#sample-list .sample').length") == 25
    assert "page 1 of 2" in cdp.js("document.getElementById('page-info').textContent")
    cdp.js("document.getElementById('next').click()")
    assert cdp.js("document.querySelectorAll('#sample-list .sample').length") == 5
    # the verdict filter matches the stored per-sample metric
    incorrect = sum(1 for s in store.samples(arc.id) if s["metrics"]["acc"] == 0)
    cdp.js("var f = document.getElementById('verdict-filter'); f.value = 'incorrect';"
           "f.dispatchEvent(new Event('change'))")
    shown = cdp.js("Array.from(document.querySelectorAll('#sample-list .sample')).map(e => e.dataset.verdict)")
    assert shown == ["incorrect"] * min(incorrect, 25)
    cdp.js("var f = document.getElementById('verdict-filter'); f.value = 'all'; f.dispatchEvent(new Event('change'))")
    # a model's HTML output is shown as text and never runs
    assert cdp.js("document.getElementById('sample-list').textContent.includes('onerror=\"window.__pwned=1\"')")
    assert cdp.js("typeof window.__pwned") == "undefined"

    # clicking a code cell opens its samples, with test status and stderr
    cdp.js(f"document.querySelector('#heatmap td.cell[data-job=\"{humaneval.key}\"]').click()")
    cdp.wait_for("document.getElementById('job-summary').textContent.includes('llama31_8b · humaneval')")
    cdp.wait_for("document.querySelectorAll('#sample-list .sample').length === 20")
    text = cdp.js("document.getElementById('sample-list').innerText")
    assert "test status" in text and "AssertionError" in text

    shot = cdp.call("Page.captureScreenshot", {"format": "png"})["data"]
    (tmp_path / "report.png").write_bytes(base64.b64decode(shot))
    assert (tmp_path / "report.png").stat().st_size > 10_000

    time.sleep(0.2)
    cdp.js("0")  # drain pending events
    errors = [ev for ev in cdp.events if ev.get("method") == "Runtime.exceptionThrown"]
    errors += [ev for ev in cdp.events if ev.get("method") == "Runtime.consoleAPICalled"
               and ev["params"]["type"] in ("error", "assert")]
    errors += [ev for ev in cdp.events if ev.get("method") == "Log.entryAdded"
               and ev["params"]["entry"]["level"] == "error"]
    errors += [ev for ev in cdp.events if ev.get("method") == "Network.loadingFailed"]
    assert errors == [], errors
    folder = out.resolve().as_uri()
    urls = [ev["params"]["request"]["url"] for ev in cdp.events if ev.get("method") == "Network.requestWillBeSent"]
    assert any(u.endswith(f"samples/{arc.key}.js") for u in urls)
    leaving = [u for u in urls if not (u.startswith(folder + "/") or u.startswith("data:"))]
    assert leaving == [], leaving
    assert Path(tmp_path / "report.png").is_file()


def _shoot(cdp: _CDP, selector: str, path: Path) -> Path:
    """A PNG of one element of the page (scrolled into view first)."""
    rect = cdp.js(
        "document.querySelector('header').style.position = 'static';"  # a sticky header would cover it
        f"(function () {{ var e = document.querySelector({json.dumps(selector)}); e.scrollIntoView();"
        "var r = e.getBoundingClientRect(); return {x: r.left + window.scrollX, y: r.top + window.scrollY,"
        "width: Math.min(r.width, 1380), height: Math.min(r.height, 1400)}; })()"
    )
    shot = cdp.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                               "clip": {**rect, "scale": 1}})["data"]
    path.write_bytes(base64.b64decode(shot))
    return path


def test_report_sections_in_chromium(report_store, tmp_path, chromium):
    """The sections issue 19 changed, as a reader sees them: multiple-choice samples as choices with their
    log-likelihoods (gold and picked marked), rows split by settings, the settings a comparison differs in, and
    what to run to fill the gaps. Screenshots go to $EVALMAP_SCREENSHOTS when set (docs/screenshots/)."""
    from report_fixtures import CHOICES, add_fewshot_run

    store, a, b = report_store
    c = add_fewshot_run(store)
    result = build_report(store, [b, c], tmp_path / "report", load_catalog(), compare_iters=200)
    arc = result.data.cells[("qwen25_7b [num_fewshot=25]", "arc_challenge")]
    cdp = chromium
    cdp.call("Page.navigate", {"url": result.index.resolve().as_uri() + f"#samples/{arc.key}"})
    cdp.wait_event("Page.loadEventFired", timeout=30)
    cdp.wait_for("document.querySelectorAll('#sample-list .sample table.choices').length === 25")

    first = "#sample-list .sample:first-child"
    rows = cdp.js(f"Array.from(document.querySelectorAll('{first} table.choices tr')).slice(1)"
                  ".map(r => Array.from(r.cells).map(c => c.textContent))")
    assert [r[2] for r in rows] == list(CHOICES)  # the choices as text, in order
    assert [r[3] for r in rows] == ["-1.500", "-2.500", "-4.000", "-3.250"]  # each one's log-likelihood
    assert rows[0][0] == "✓ gold ← picked" and rows[1][0] == "← picked (per char)"  # item 0 is right (acc_norm)
    sample_text = cdp.js("document.getElementById('sample-list').innerText")
    assert "is_greedy" not in sample_text and "logprob" not in sample_text  # no raw JSON list
    wrong = cdp.js("document.querySelectorAll('#sample-list table.choices tr.picked.wrong').length")
    assert wrong == sum(1 for s in store.samples(arc.id)[:25] if s["details"]["gold"] != 0)

    assert "num_fewshot" in cdp.js("document.getElementById('settings-split').innerText")
    assert cdp.js("document.querySelectorAll('#heatmap th.model').length") == len(result.data.models)
    assert "num_fewshot: A default, B 25 (arc_challenge)" in cdp.js(
        "document.querySelector('.settings-differ').innerText")
    assert "evalmap run --models" in cdp.js("document.getElementById('fill-gaps').innerText")

    shots = [_shoot(cdp, first, tmp_path / "report_mc_sample.png"),
             _shoot(cdp, "#matrix", tmp_path / "report_matrix_settings_split.png"),
             _shoot(cdp, "#compare", tmp_path / "report_compare_settings.png")]
    one = build_report(store, [c], tmp_path / "one", load_catalog(), compare_iters=200)
    cdp.events.clear()  # wait for this page's load event, not the first page's
    cdp.call("Page.navigate", {"url": one.index.resolve().as_uri()})
    cdp.wait_event("Page.loadEventFired", timeout=30)
    assert "Most of this matrix is not run yet" in cdp.js("document.getElementById('fill-gaps').innerText")
    shots.append(_shoot(cdp, "#matrix", tmp_path / "report_matrix_fill_gaps.png"))
    assert all(p.stat().st_size > 5_000 for p in shots)
    target = os.environ.get("EVALMAP_SCREENSHOTS")
    if target:
        folder = Path(target)
        folder.mkdir(parents=True, exist_ok=True)
        for p in shots:
            shutil.copy(p, folder / p.name)
        if (one.out_dir / "figures" / "heatmap.png").is_file():
            shutil.copy(one.out_dir / "figures" / "heatmap.png", folder / "heatmap_one_row.png")
