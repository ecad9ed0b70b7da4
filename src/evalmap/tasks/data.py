"""Dataset records for tasks: a local folder first, then a package copy, then the hub.

`load_records(dataset, data_dir, source)` returns the records of one split of a dataset
in the shape its spec works with. Each spec names its splits as `DataSource`s:
which local files to read (under `<data-dir>/<dataset.local.folder>/`), which hub
split and config, an optional copy inside an installed package, and a `normalize`
function that turns local, package and hub records into one record shape (so a
prompt never depends on where the data came from).

Order: `data_dir` (argument, else `$EVALMAP_DATA_DIR`) when its files are there,
then the package copy, then `datasets.load_dataset` (which honours HF_HUB_OFFLINE
and its cache). When nothing works the user gets a `DataMissingError` in one
sentence saying where we looked and what to do.

Records are checked as they load, before any model loads: a line that is not JSON,
a record that is not an object, a normaliser that trips over a record, a missing or
wrongly typed field (declared next to each normaliser with `record_shape`), a gold
answer outside its options, and a file with no records each stop the run with one
sentence naming the file, the line (or record number) and the field.

`LazyRecords` loads a source's records once per task, safely from many threads.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import importlib.util
import io
import json
import os
import threading
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalmap.catalog.schema import Dataset
from evalmap.errors import DataMissingError, EvalmapError
from evalmap.hub import cache_only_when_offline

DATA_DIR_ENV = "EVALMAP_DATA_DIR"

Record = dict[str, Any]
Normalizer = Callable[[list[Record], str], list[Record]]  # (records, origin) -> records
LocalReader = Callable[[list[Path]], list[Record]]
RecordCheck = Callable[[Record], str | None]  # a record's problem in a few words, or None


class DataFormatError(EvalmapError):
    """A dataset file's records do not have the shape its spec reads: names the file, line and field."""


class Text:
    """In a `record_shape`: a string that is not empty (a question, a prompt, a gold answer)."""


def record_shape(fields: dict[str, Any], check: RecordCheck | None = None) -> Callable[[Normalizer], Normalizer]:
    """Declare what a normaliser's records hold, next to the normaliser (one place for the shape).

    `fields` maps a field name to the type it must have: `Text` (a non-empty string), a type
    (`str`, `int`, `list`, `dict`), `list[str]` (a list of strings) or a tuple of these;
    `check` states what types cannot (a gold index inside the options). Every record a
    normaliser returns is checked at load, so a bad record stops the run before a model loads,
    not halfway through it.
    """

    def mark(normalize: Normalizer) -> Normalizer:
        normalize.record_fields = dict(fields)  # type: ignore[attr-defined]
        normalize.record_check = check  # type: ignore[attr-defined]
        return normalize

    return mark


@dataclass(frozen=True)
class DataSource:
    """One split of a dataset, as a spec reads it.

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
    hub_file_repo: bool = False  # the hub dataset is a repo of these same files (BFCL), not a loadable split


def resolve_data_dir(data_dir: str | None) -> str | None:
    return data_dir or os.environ.get(DATA_DIR_ENV) or None


def load_records(dataset: Dataset, data_dir: str | None, source: DataSource) -> list[Record]:
    """The records of `dataset`'s split named by `source` (a spec's `source`, `fewshot_source`, ...)."""
    root = resolve_data_dir(data_dir)
    folder = dataset.local.folder if dataset.local else dataset.id
    files = (
        source.local_files if source.local_files is not None else (tuple(dataset.local.files) if dataset.local else ())
    )

    if root and not Path(root).is_dir():
        given = f"--data-dir {root}" if data_dir else f"${DATA_DIR_ENV} ({root})"
        what = "is not a folder" if Path(root).exists() else "does not exist"
        raise DataMissingError(
            f"The data folder {given} {what}; pass the folder that holds the dataset folders "
            f"(e.g. {folder}/), or leave --data-dir out to load datasets from the hub."
        )
    local_note = ""
    if root and files:
        paths = [Path(root) / folder / f for f in files]
        missing = [p for p in paths if not p.is_file()]
        if not missing:
            records, where = _read_local(paths, source, dataset.id)
            return _finish(dataset, source, records, "local", where)
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
            records, where = _read_local([path], source, dataset.id)
            return _finish(dataset, source, records, "package", where)
        package_note = f"the package {source.package_file[0]} holds no {source.package_file[1]}, "

    hub = dataset.source
    split = source.hub_split or hub.split
    config = source.hub_config or hub.config
    if source.hub_file_repo and files:
        try:
            paths = _download_hub_files(hub.id, files, hub.revision)
        except Exception as exc:  # noqa: BLE001 - any hub failure becomes one clear sentence
            raise DataMissingError(
                f"Dataset {dataset.id!r} ({source.name} split) is not available: {local_note}, and the files of "
                f"the hub dataset repo {hub.id} could not be fetched ({_short_reason(exc)}); pass --data-dir "
                f"with a folder holding {folder}/ (or set ${DATA_DIR_ENV}), or go online so the hub can be reached."
            ) from None
        records, where = _read_local(paths, source, dataset.id)
        return _finish(dataset, source, records, "hub", where)
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
    where = Where(describe=lambda i: f"row {i + 1} of the hub dataset {hub.id}", origin=f"the hub dataset {hub.id}")
    return _finish(dataset, source, rows, "hub", where)


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


def _finish(dataset: Dataset, source: DataSource, records: list, origin: str, where: Where) -> list[Record]:
    """Normalise the records and check every one of them (see the module doc); raise on the first bad one."""
    label = f"Dataset {dataset.id!r} ({source.name} split)"
    fix = "fix that record or remove it"
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataFormatError(
                f"{label}: {where(i)} is {_kind_of(record)}, not an object with the dataset's fields; {fix}."
            )
    if not source.normalize:
        out = records
    else:
        try:
            out = source.normalize(records, origin)
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
            i = _first_failing(source.normalize, records, origin)
            at = where(i) if i is not None else f"a record of {_origin_name(where)}"
            raise DataFormatError(f"{label}: {at} {_normalize_problem(exc)}; {fix}.") from None
    if not out:
        raise DataFormatError(
            f"{label}: {_origin_name(where)} holds no records; put the dataset's records in it, "
            "or remove it to load the hub copy."
        )
    fields = getattr(source.normalize, "record_fields", None) or {}
    check = getattr(source.normalize, "record_check", None)
    key = next((name for name in ("id", "task_id") if name in fields), None)
    seen: dict[Any, int] = {}
    same_order = len(out) == len(records)  # one record in, one out, in order: locations carry over
    for k, record in enumerate(out):
        problem = _record_problem(record, fields, check) if fields or check else None
        if problem is not None:
            if same_order:
                i: int | None = k
            else:
                i = _first_failing(source.normalize, records, origin, lambda r: _record_problem(r, fields, check))
            at = where(i) if i is not None else f"record {k + 1} of {_origin_name(where)}"
            raise DataFormatError(f"{label}: {at} {problem}; {fix}.")
        if key is not None:
            first = seen.setdefault(record[key], k)
            if first != k:
                earlier, here = (where(first), where(k)) if same_order else (f"record {first + 1}", f"record {k + 1}")
                raise DataFormatError(
                    f"{label}: {here} repeats the {key} {_short_value(record[key])} of {earlier}; "
                    "give every record its own id or remove the duplicate."
                )
    return out


def _first_failing(
    normalize: Normalizer, records: list[Record], origin: str, problem: RecordCheck | None = None
) -> int | None:
    """The index of the first raw record that fails on its own (only on the error path: it normalises
    records one by one)."""
    for i, record in enumerate(records):
        try:
            out = normalize([record], origin)
        except (KeyError, TypeError, AttributeError, ValueError, IndexError):
            return i
        if problem is not None and any(problem(r) for r in out):
            return i
    return None


def _record_problem(record: Record, fields: dict[str, Any], check: RecordCheck | None) -> str | None:
    if not isinstance(record, dict):
        return f"is {_kind_of(record)}, not an object"
    for name, expected in fields.items():
        if name not in record or record[name] is None:
            return f"has no field {name!r}"
        value = record[name]
        if not _has_type(value, expected):
            if expected is Text and isinstance(value, str):
                return f"has an empty {name!r}"
            return f"has {name!r} = {_short_value(value)} ({_kind_of(value)}) where {_type_name(expected)} is expected"
        if not encodable(value):  # a JSON escape like "\ud800": no engine or server can be sent it
            return f"has {name!r} with text that is not valid Unicode (a lone surrogate escape such as \\ud800)"
    if check is not None:
        try:
            problem = check(record)
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
            problem = _normalize_problem(exc)
        if problem:
            return problem
    return None


def encodable(value: Any) -> bool:
    """Every string in the value can be written as UTF-8."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, list):
        return all(encodable(v) for v in value)
    if isinstance(value, dict):
        return all(encodable(k) and encodable(v) for k, v in value.items())
    return True


def _has_type(value: Any, expected: Any) -> bool:
    if isinstance(expected, tuple):
        return any(_has_type(value, e) for e in expected)
    if expected is Text:
        return isinstance(value, str) and value.strip() != ""
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    origin = typing.get_origin(expected)
    if origin is list:
        (inner,) = typing.get_args(expected)
        return isinstance(value, list) and all(_has_type(v, inner) for v in value)
    return isinstance(value, expected)


def _type_name(expected: Any) -> str:
    if isinstance(expected, tuple):
        return " or ".join(_type_name(e) for e in expected)
    if expected is Text or expected is str:
        return "text"
    if typing.get_origin(expected) is list:
        return f"a list of {_type_name(typing.get_args(expected)[0])}"
    return {int: "a whole number", float: "a number", list: "a list", dict: "an object"}.get(expected, str(expected))


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short_value(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _normalize_problem(exc: Exception) -> str:
    """What a normaliser's exception says about the record, in a few words."""
    if isinstance(exc, KeyError):
        return f"has no field {exc.args[0]!r}" if exc.args else "lacks a field"
    if isinstance(exc, IndexError):
        return "has a list with too few entries"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = text.rstrip(". ")
    if len(text) > 120:
        text = text[:117] + "..."
    return f"has a field of the wrong type or value ({text})"


def _origin_name(where: Where) -> str:
    return getattr(where, "origin", None) or "the data"


def _load_hub(hub_id: str, config: str | None, split: str, revision: str | None) -> list[Record]:
    try:
        import datasets
    except ImportError as exc:
        raise RuntimeError("the `datasets` package is not installed; pip install 'evalmap[hf]'") from exc
    with cache_only_when_offline() as offline:
        try:
            rows = datasets.load_dataset(hub_id, config, split=split, revision=revision)
        except Exception:
            if offline:  # said at once, not after retries (evalmap/hub.py)
                raise ConnectionError(f"{offline}, and the local hub cache holds no copy") from None
            raise
    images = [name for name, feature in rows.features.items() if isinstance(feature, datasets.Image)]
    if images:
        return _rows_with_images(rows, images)
    return [dict(row) for row in rows]


class ImageRef:
    """An image a record points to (a file, or a row of a hub split), read only when a request is built:
    a split of 200k photos (VQAv2) stays in its files or its memory-mapped Arrow cache, not in memory."""

    __slots__ = ("_read", "_key", "where")

    def __init__(self, read: Callable[[Any], bytes], key: Any, where: str):
        self._read, self._key, self.where = read, key, where

    @classmethod
    def file(cls, path: Path) -> ImageRef:
        return cls(lambda p: Path(p).read_bytes(), path, str(path))

    def read(self) -> bytes:
        """The image's encoded bytes (PNG, JPEG, ... as stored)."""
        return self._read(self._key)


def _rows_with_images(rows: Any, columns: list[str]) -> list[Record]:
    """A hub split's records with each `datasets.Image` column as an ImageRef (None where a row has no
    image, as ScienceQA's text questions): the text columns are read now, the image bytes when asked."""
    view = rows.select_columns(columns).with_format("arrow")
    present = {c: view[c].is_valid().to_pylist() for c in columns}
    records = rows.remove_columns(columns).to_list()

    def read(key: tuple[int, str]) -> bytes:
        row, column = key
        cell = view[row].column(column)[0].as_py()
        if cell.get("bytes") is None and cell.get("path"):
            return Path(cell["path"]).read_bytes()
        return cell["bytes"]

    for i, record in enumerate(records):
        for c in columns:
            record[c] = ImageRef(read, (i, c), f"row {i + 1}") if present[c][i] else None
    return records


def _download_hub_files(hub_id: str, files: Sequence[str], revision: str | None) -> list[Path]:
    """Each file of a hub dataset repo, through the hub cache (honours HF_HUB_OFFLINE)."""
    from huggingface_hub import hf_hub_download

    with cache_only_when_offline() as offline:
        try:
            return [Path(hf_hub_download(hub_id, f, repo_type="dataset", revision=revision)) for f in files]
        except Exception:
            if offline:
                raise ConnectionError(f"{offline}, and the local hub cache holds no copy") from None
            raise


def _short_reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text.rstrip(". ")
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- local files --------------------------------------------------------------------


class Where:
    """Where record i came from, in words: `<file> line 7`, `<file> record 3`, `row 5 of the hub dataset X`."""

    def __init__(self, places: list[tuple[Path, str, int]] | None = None, describe=None, origin: str = ""):
        self.places = places
        self.describe = describe
        self.origin = origin

    def __call__(self, i: int) -> str:
        if self.places is not None and i < len(self.places):
            path, unit, number = self.places[i]
            return f"{path} {unit} {number}"
        return self.describe(i) if self.describe else f"record {i + 1}"


def _read_local(paths: list[Path], source: DataSource, dataset_id: str = "") -> tuple[list, Where]:
    files = paths[0] if len(paths) == 1 else paths[0].parent
    label = f"Dataset {dataset_id!r} ({source.name} split): " if dataset_id else ""
    try:
        if source.reader is not None:
            records = source.reader(paths)
            return records, Where(describe=lambda i: f"record {i + 1} read from {files}", origin=str(files))
        records, places = [], []
        for path in paths:
            for unit, number, record in _located(path, source.csv_columns):
                records.append(record)
                places.append((path, unit, number))
        return records, Where(places, origin=str(files))
    except DataFormatError as exc:
        raise DataFormatError(f"{label}{exc}") from None
    except (OSError, ValueError, UnicodeDecodeError, csv.Error, EOFError) as exc:
        raise DataFormatError(
            f"{label}could not read {files} ({_short_reason(exc)}); check the files against "
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
    return [record for _, _, record in _located(path, csv_columns)]


def _located(path: Path, csv_columns: Sequence[str] | None = None) -> Iterator[tuple[str, int, Any]]:
    """(unit, number, record) of one file: `line` numbers for jsonl, csv and text, `record` numbers for json."""
    name = path.name.removesuffix(".gz").removesuffix(".bz2")
    with open_text(path) as fh:
        if name.endswith(".jsonl"):
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataFormatError(
                        f"{path} line {number} is not JSON ({exc.msg} at column {exc.colno}); "
                        "fix that line or remove it (a .jsonl file holds one JSON object per line)."
                    ) from None
                yield "line", number, record
            return
        if name.endswith(".json"):
            try:
                data = json.load(fh)
            except json.JSONDecodeError as exc:
                raise DataFormatError(
                    f"{path} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); fix the file "
                    "or remove it."
                ) from None
            if isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
                data = [{"_key": k, **v} for k, v in data.items()]
            elif not isinstance(data, list):
                data = [data]
            for number, record in enumerate(data, 1):
                yield "record", number, record
            return
        if name.endswith(".csv"):
            reader = csv.reader(fh)
            cols = list(csv_columns or [])
            for row in reader:
                keys = cols + [f"col{i}" for i in range(len(cols), len(row))]
                yield "line", reader.line_num, dict(zip(keys, row, strict=False))
            return
        for number, line in enumerate(fh, 1):
            yield "line", number, {"text": line.rstrip("\n")}


# -- a cache per task ------------------------------------------------------------------


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
