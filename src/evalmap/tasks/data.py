"""Dataset records for tasks: a local folder first, then a package copy, then the hub.

`load_records(dataset, data_dir)` returns the records of a dataset's evaluation split
in the shape its family spec works with. Each spec names its split as a `DataSource`:
which local files to read (under `<data-dir>/<dataset.local.folder>/`), which hub
split and config, an optional copy inside an installed package, and a `normalize`
function that turns local, package and hub records into one record shape (so a
prompt never depends on where the data came from).

Order: `data_dir` (argument, else `$EVALMAP_DATA_DIR`) when its files are there,
then the package copy, then `datasets.load_dataset` (which honours HF_HUB_OFFLINE
and its cache). When nothing works the user gets a `DataMissingError` in one
sentence saying where we looked and what to do.

The module also holds the few helpers every family's Task shares (a thread-safe
lazy record cache, the prompt hash, per-metric means).
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import importlib.util
import io
import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalmap.catalog.schema import Dataset
from evalmap.errors import DataMissingError, EvalmapError
from evalmap.metrics.stats import Score, mean_score

DATA_DIR_ENV = "EVALMAP_DATA_DIR"

Record = dict[str, Any]
Normalizer = Callable[[list[Record], str], list[Record]]  # (records, origin) -> records
LocalReader = Callable[[list[Path]], list[Record]]


@dataclass(frozen=True)
class DataSource:
    """One split of a dataset, as a family spec reads it.

    `local_files` are relative to the dataset's local folder (None: the catalog's
    `local.files`); `hub_split` / `hub_config` default to the catalog's source;
    `package_file` is (importable package, path inside it); `normalize` gets the
    raw records and their origin ("local", "package" or "hub").
    """

    name: str = "test"
    local_files: tuple[str, ...] | None = None
    csv_columns: tuple[str, ...] | None = None
    reader: LocalReader | None = None
    hub_split: str | None = None
    hub_config: str | None = None
    package_file: tuple[str, str] | None = None
    normalize: Normalizer | None = None

    def describe(self) -> dict[str, Any]:
        """What identifies this source in a prompt hash (no function reprs: they change per run)."""
        return {
            "name": self.name,
            "local_files": list(self.local_files or ()),
            "hub_split": self.hub_split,
            "hub_config": self.hub_config,
        }


def resolve_data_dir(data_dir: str | None) -> str | None:
    return data_dir or os.environ.get(DATA_DIR_ENV) or None


def load_records(dataset: Dataset, data_dir: str | None = None, source: DataSource | None = None) -> list[Record]:
    """The records of `dataset`'s split named by `source` (default: its spec's evaluation split)."""
    if source is None:
        source = _default_source(dataset)
    root = resolve_data_dir(data_dir)
    folder = dataset.local.folder if dataset.local else dataset.id
    files = (
        source.local_files if source.local_files is not None else (tuple(dataset.local.files) if dataset.local else ())
    )

    local_note = ""
    if root and files:
        paths = [Path(root) / folder / f for f in files]
        missing = [p for p in paths if not p.is_file()]
        if not missing:
            return _finish(source, _read_local(paths, source), "local")
        local_note = f"no {missing[0]}"
    elif files:
        local_note = (
            f"no --data-dir or ${DATA_DIR_ENV} was given (the local copy would be <data-dir>/{folder}/{files[0]})"
        )
    else:
        local_note = "no local copy is known for it"

    package_note = ""
    if source.package_file:
        path = package_data_path(*source.package_file)
        if path is not None:
            return _finish(source, _read_local([path], source), "package")
        package_note = f"the package {source.package_file[0]} holds no {source.package_file[1]}, "

    hub = dataset.source
    split = source.hub_split or hub.split
    config = source.hub_config or hub.config
    try:
        rows = _load_hub(hub.id, config, split, hub.revision)
    except Exception as exc:  # noqa: BLE001 - any hub failure becomes one clear sentence
        reason = _short_reason(exc)
        hub_name = hub.id + (f" ({config}, {split})" if config else f" ({split})")
        raise DataMissingError(
            f"Dataset {dataset.id!r} ({source.name} split) is not available: {local_note}, "
            f"{package_note}and the hub dataset {hub_name} could not be loaded ({reason}); "
            f"pass --data-dir with a folder holding {folder}/ (or set ${DATA_DIR_ENV}), "
            "or go online so the hub can be reached."
        ) from None
    return _finish(source, rows, "hub")


def package_data_path(package: str, relative: str) -> Path | None:
    """A data file inside an installed package, found without importing (executing) the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin:
        roots = [str(Path(spec.origin).parent)]
    for root in roots:
        path = Path(root) / relative
        if path.is_file():
            return path
    return None


def _default_source(dataset: Dataset) -> DataSource:
    from evalmap.tasks.registry import find_spec

    spec = find_spec(dataset.id)
    return spec.source if spec is not None else DataSource()


def _finish(source: DataSource, records: list[Record], origin: str) -> list[Record]:
    return source.normalize(records, origin) if source.normalize else records


def _load_hub(hub_id: str, config: str | None, split: str, revision: str | None) -> list[Record]:
    try:
        import datasets
    except ImportError as exc:
        raise RuntimeError("the `datasets` package is not installed; pip install 'evalmap[hf]'") from exc
    rows = datasets.load_dataset(hub_id, config, split=split, revision=revision)
    return [dict(row) for row in rows]


def _short_reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text.rstrip(". ")
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- local files --------------------------------------------------------------------


def _read_local(paths: list[Path], source: DataSource) -> list[Record]:
    try:
        if source.reader is not None:
            return source.reader(paths)
        records: list[Record] = []
        for path in paths:
            records.extend(read_file(path, source.csv_columns))
        return records
    except (OSError, ValueError, UnicodeDecodeError, csv.Error) as exc:
        raise EvalmapError(
            f"Could not read {paths[0].parent} ({_short_reason(exc)}); check the files against "
            "the dataset's SOURCE.md or remove them to use the hub copy."
        ) from None


def open_text(path: Path) -> io.TextIOBase:
    name = path.name
    if name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    if name.endswith(".bz2"):
        return bz2.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")  # noqa: SIM115 - returned to the caller


def read_file(path: Path, csv_columns: Sequence[str] | None = None) -> list[Record]:
    """Records of one file by its extension: jsonl, json, csv (no header), or lines of text."""
    name = path.name.removesuffix(".gz").removesuffix(".bz2")
    with open_text(path) as fh:
        if name.endswith(".jsonl"):
            return [json.loads(line) for line in fh if line.strip()]
        if name.endswith(".json"):
            data = json.load(fh)
            if isinstance(data, list):
                return data
            if isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
                return [{"_key": k, **v} for k, v in data.items()]
            return [data]
        if name.endswith(".csv"):
            rows = list(csv.reader(fh))
            cols = list(csv_columns or [])
            out = []
            for row in rows:
                keys = cols + [f"col{i}" for i in range(len(cols), len(row))]
                out.append(dict(zip(keys, row, strict=False)))
            return out
        return [{"text": line.rstrip("\n")} for line in fh]


# -- helpers shared by the family modules --------------------------------------------


class LazyRecords:
    """Load a source's records once per task, safely from many threads."""

    def __init__(self, dataset: Dataset, data_dir: str | None, source: DataSource):
        self._args = (dataset, data_dir, source)
        self._lock = threading.Lock()
        self._records: list[Record] | None = None

    def get(self) -> list[Record]:
        if self._records is None:
            with self._lock:
                if self._records is None:
                    self._records = load_records(*self._args)
        return self._records


def settings_hash(payload: dict[str, Any]) -> str:
    """sha256 of a JSON payload with sorted keys: the same settings give the same hash everywhere."""
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def mean_scores(samples: Sequence[Any], names: Sequence[str]) -> list[Score]:
    """One `mean_score` per metric name over the samples that carry it, in `names` order."""
    scores = []
    for name in names:
        values = [float(s.metrics[name]) for s in samples if name in s.metrics]
        scores.append(mean_score(name, values))
    return scores
