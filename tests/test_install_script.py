"""scripts/install.sh (the README's first command) installs bubblewrap for the runtime, not only for --dev.

The script runs for real under bash with a PATH of recording stand-ins for python, id and apt-get
(no package is downloaded): what it would install, as root and as anyone else, with and without bwrap.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "install.sh"
BASH = shutil.which("bash")


def _install(tmp_path: Path, uid: int, has_bwrap: bool, args: tuple[str, ...] = ()) -> tuple[list[str], list[str], str]:
    """(python calls, apt-get calls, stderr) of one run of the script."""
    root = Path(tempfile.mkdtemp(dir=tmp_path))
    bin_dir, log = root / "bin", root / "log"
    bin_dir.mkdir()
    log.write_text("")
    record = f'#!{BASH}\necho "$(basename "$0") $*" >> {log}\n'
    programs = {"python": record, "apt-get": record, "id": f"#!{BASH}\necho {uid}\n"}
    if has_bwrap:
        programs["bwrap"] = record
    for name, text in programs.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    for tool in ("dirname", "basename"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    proc = subprocess.run([BASH, str(SCRIPT), *args], capture_output=True, text=True, env={"PATH": str(bin_dir)})
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().splitlines()
    return [c for c in calls if c.startswith("python ")], [c for c in calls if c.startswith("apt-get ")], proc.stderr


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_runtime_install_installs_bubblewrap_as_root(tmp_path):
    python, apt, _ = _install(tmp_path, 0, has_bwrap=False)
    assert any("-e .[hf,embedded,report,ifeval]" in c for c in python)
    assert apt[-1] == "apt-get install -y -qq bubblewrap"
    _, apt, _ = _install(tmp_path, 0, has_bwrap=True)
    assert apt == []  # already there


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_not_root_is_told_what_to_run(tmp_path):
    _, apt, stderr = _install(tmp_path, 1000, has_bwrap=False)
    assert apt == [] and "sudo apt-get install bubblewrap" in stderr


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_dev_adds_chromium(tmp_path):
    python, apt, _ = _install(tmp_path, 0, has_bwrap=True, args=("--dev",))
    assert apt[-1] == "apt-get install -y -qq chromium"
    assert any("dev,llamacpp" in c for c in python)
