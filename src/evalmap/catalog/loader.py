"""Load the packaged catalog, merge the user's override files, validate everything.

Overrides (`--catalog FILE`, or `EVALMAP_CATALOG` with paths joined by `:`) may
add models, datasets and plans, or change fields of existing ones by id: a
mapping for an existing id is deep-merged into it, so a user can point a team
fine-tune at its weights with three lines of YAML.

A catalog file is untrusted input: it must be UTF-8, and its YAML is composed by the
safe loader and then built node by node with a budget, so an alias that contains
itself (`&a [*a]`) or nested aliases that expand exponentially ("billion laughs")
are refused in one sentence instead of recursing or hanging.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from evalmap.catalog import refs
from evalmap.catalog.schema import CATEGORIES, TASK_TYPES, Dataset, GGUFSource, Mapping, Model, Plan, Status
from evalmap.errors import EvalmapError, UnknownIdError

PACKAGE_FILES = ("models.yaml", "datasets.yaml", "mapping.yaml")
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml parses ~15x faster, same line marks
SECTIONS = {"models": Model, "datasets": Dataset, "plans": Plan}
# Values one catalog file may build (the packaged files build ~1,500 each); aliases count each time they are used.
MAX_NODES = 200_000
# libyaml's composer recurses in C and crashes the interpreter (SIGSEGV) past ~10,000 nested levels; a
# file with more openers ([, {, "- ") than this is composed by the pure-Python loader instead,
# whose recursion limit ends in a RecursionError (the packaged files have fewer than 300).
C_LOADER_MAX_OPENERS = 5_000


class CatalogError(EvalmapError):
    """A catalog file is malformed: names the file, line and field."""


@dataclass
class _Located:
    """Parsed YAML plus the line of every mapping/sequence node, keyed by path."""

    data: Any
    file: str
    lines: dict[tuple, int] = field(default_factory=dict)

    def line_of(self, path: tuple) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())


class _Builder:
    """Builds Python values from a composed YAML node graph, refusing cycles and runaway alias expansion."""

    def __init__(self, file: str):
        self.file = file
        self.built = 0
        self.active: set[int] = set()  # ids of the collection nodes being built (the path from the root)
        self.seen: set[int] = set()  # ids of the nodes built so far: meeting one again means an alias
        self.aliased = False
        self.scalars = yaml.SafeLoader("")

    def fail(self, node: yaml.Node, problem: str) -> CatalogError:
        return CatalogError(f"Invalid YAML in {self.file} line {node.start_mark.line + 1}: {problem}.")

    def build(self, node: yaml.Node, path: tuple, lines: dict[tuple, int]) -> Any:
        self.built += 1
        if id(node) in self.seen:
            self.aliased = True
        self.seen.add(id(node))
        if self.built > MAX_NODES:
            if self.aliased:
                problem = f"its aliases expand to more than {MAX_NODES:,} values; write the entries out instead"
            else:
                problem = f"it holds more than {MAX_NODES:,} values; split it into smaller catalog files"
            raise self.fail(node, problem)
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            value = self.scalars.construct_object(node, deep=True)
            self.scalars.constructed_objects.clear()
            return value
        if id(node) in self.active:
            raise self.fail(
                node, "an alias refers to a collection that contains it (a recursive structure); remove that alias"
            )
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                out = {}
                for key_node, value_node in node.value:
                    if not isinstance(key_node, yaml.ScalarNode):
                        raise self.fail(key_node, "a key is a list or a mapping; keys must be plain names")
                    key = key_node.value
                    out[key] = self.build(value_node, (*path, key), lines)
                    lines[(*path, key)] = key_node.start_mark.line + 1  # a field's line is its key's line
                return out
            return [self.build(child, (*path, i), lines) for i, child in enumerate(node.value)]
        finally:
            self.active.discard(id(node))


def _decode(data: bytes, file: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CatalogError(
            f"Catalog file {file} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); save it as UTF-8."
        ) from None


def _read_yaml(text: str, file: str) -> _Located:
    located = _Located(None, file)
    try:
        openers = text.count("[") + text.count("{") + text.count("- ")
        node = yaml.compose(text, Loader=_YAML_LOADER if openers <= C_LOADER_MAX_OPENERS else yaml.SafeLoader)
        located.data = _Builder(file).build(node, (), located.lines) if node is not None else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CatalogError(f"Invalid YAML in {file}{where}: {problem}.") from None
    except RecursionError:
        raise CatalogError(f"Invalid YAML in {file}: it nests lists or mappings too deeply; flatten it.") from None
    if not isinstance(located.data, dict):
        raise CatalogError(f"Invalid catalog file {file} line 1: the top level must be a mapping.")
    return located


def _validate(cls: type[BaseModel], data: Any, located: _Located, path: tuple) -> Any:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x.startswith("function-")))
        line = located.line_of((*path, *loc))
        field_name = ".".join(str(x) for x in loc) or "(record)"
        ident = data.get("id") if isinstance(data, dict) else None
        who = f" ({ident})" if ident else ""
        raise CatalogError(
            f"Invalid catalog file {located.file} line {line}{who}, field {field_name!r}: {err['msg']}."
        ) from None


def _deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def invalid_value(what: str, value: str, valid: list[str] | tuple[str, ...]) -> EvalmapError:
    """`--task-type math` and friends: the value is wrong, and here are the right ones."""
    return EvalmapError(f"{value!r} is not a valid {what}; valid: {', '.join(valid)}.")


def check_choice(what: str, value: str | None, valid: list[str] | tuple[str, ...]) -> None:
    if value is not None and value not in valid:
        raise invalid_value(what, value, valid)


@dataclass
class Catalog:
    models: dict[str, Model]
    datasets: dict[str, Dataset]
    mapping: Mapping
    plans: dict[str, Plan]
    sources: list[str]
    version: str
    aliases: dict[str, str] = field(default_factory=dict)  # model references outside the catalog -> their ids

    def model_id(self, ref: str) -> str:
        """The catalog id a model reference names: an id, a reference added by `with_model_refs`, or a
        catalog model's Hugging Face repo id (`Qwen/Qwen2.5-7B-Instruct`, with or without `hf:`)."""
        if ref in self.models:
            return ref
        if ref in self.aliases:
            return self.aliases[ref]
        repo = ref.removeprefix("hf:").lower()
        for model in self.models.values():
            if model.hf_repo and model.hf_repo.lower() == repo:
                return model.id
        if "/" in ref and not ref.startswith(refs.PREFIXES):
            raise EvalmapError(
                f"{ref!r} is neither a catalog model nor a path that exists; for a Hugging Face model outside the "
                f"catalog write hf:{ref} (or `evalmap models` lists the catalog)."
            )
        raise UnknownIdError("model", ref, list(self.models))

    def model(self, model_id: str) -> Model:
        return self.models[self.model_id(model_id)]

    def dataset(self, dataset_id: str) -> Dataset:
        if dataset_id not in self.datasets:
            raise UnknownIdError("dataset", dataset_id, list(self.datasets))
        return self.datasets[dataset_id]

    def _derived(self, models: dict[str, Model], aliases: dict[str, str], salt: str) -> Catalog:
        """This catalog with other models; its version changes with them, so a run on them is another run."""
        version = hashlib.sha256(f"{self.version}\0{salt}".encode()).hexdigest()[:12] if salt else self.version
        return Catalog(models, self.datasets, self.mapping, self.plans, self.sources, version, aliases)

    def with_model_refs(self, selectors: list[str]) -> Catalog:
        """The catalog plus an ad-hoc entry for each model reference outside it (`hf:ORG/NAME`, `openai:NAME`,
        a local folder or .gguf file: see catalog/refs.py); other selectors pass through untouched."""
        models, aliases = dict(self.models), dict(self.aliases)
        for ref in selectors:
            if ref in aliases or not refs.is_model_ref(ref):
                continue
            try:
                aliases[ref] = self.model_id(ref)  # hf:ORG/NAME of a catalog model is that model
                continue
            except EvalmapError:
                pass
            name = ref.split(":", 1)[1].split("/")[-1] if ref.startswith(refs.PREFIXES) else Path(ref).stem
            base = refs.slug(name)
            model_id, n = base, 2
            while model_id in models:
                model_id, n = f"{base}_{n}", n + 1
            try:
                models[model_id] = refs.model_from_ref(ref, model_id)
            except (OSError, ValueError) as exc:
                raise EvalmapError(f"The model {ref} cannot be read ({exc}); pass a folder with config.json, a "
                                   ".gguf file, hf:ORG/NAME or openai:NAME.") from None
            aliases[ref] = model_id
        added = sorted(r for r in aliases if aliases[r] not in self.models)
        return self._derived(models, aliases, "\0".join(f"{r}={aliases[r]}" for r in added))

    def with_weights(self, weights: dict[str, str]) -> Catalog:
        """The catalog with models pointed at local weights (`--weights`): a folder holding config.json for
        transformers / vLLM, or a .gguf file for llama.cpp. The version changes with them, so a run on other
        weights is another run (and the engines fingerprint the files, so the cache tells them apart)."""
        models = dict(self.models)
        for model_id, given in weights.items():
            model = self.model(model_id)
            path = Path(given).expanduser()
            if path.is_file() and path.suffix == ".gguf":
                run = model.run.model_copy(update={"gguf": GGUFSource(file=path.name, path=str(path.resolve()))})
            elif path.is_dir() and (path / "config.json").is_file():
                run = model.run.model_copy(update={"hf": str(path.resolve())})
            else:
                what = "is neither a .gguf file nor a folder with config.json" if path.exists() else "does not exist"
                raise EvalmapError(
                    f"--weights {given} for {model_id} {what}; pass the folder holding the model's config.json and "
                    "weights (transformers, vLLM) or its .gguf file (llama.cpp)."
                )
            models[model.id] = model.model_copy(update={"run": run})
        pinned = "\0".join(f"{m}={models[m].run.hf or models[m].run.gguf}" for m in sorted(weights))
        return self._derived(models, self.aliases, pinned) if weights else self

    def plan(self, plan_id: str) -> Plan:
        key = plan_id.lower()
        key = key if key in self.plans else f"plan_{key}"
        if key not in self.plans:
            raise UnknownIdError("plan", plan_id, list(self.plans))
        return self.plans[key]

    def select_datasets(self, selectors: list[str]) -> list[str]:
        """Resolve dataset ids and selectors in catalog order: `all`, `runnable` (the datasets evalmap has a
        task for), `status:ready|expansion` (the guide's label), `task_type:TYPE`. (`recommended`, which
        depends on the model, is the planner's: see planner.plan_pairs.)"""
        chosen: list[str] = []
        for sel in selectors:
            kind, _, value = sel.partition(":")
            if sel == "all":
                ids = list(self.datasets)
            elif sel == "runnable":
                ids = [d.id for d in self.datasets.values() if d.runnable]
            elif kind == "status" and value:
                check_choice("status (the guide's label)", value, [s.value for s in Status])
                ids = [d.id for d in self.datasets.values() if d.guide_status.value == value]
            elif kind == "task_type" and value:
                check_choice("task type", value, TASK_TYPES)
                ids = [d.id for d in self.datasets.values() if d.task_type == value]
            elif sel == "recommended":
                raise EvalmapError("The `recommended` selector depends on the model; use it in plan or run --datasets.")
            else:
                ids = [self.dataset(sel).id]
            chosen.extend(i for i in ids if i not in chosen)
        return chosen

    def select_models(self, selectors: list[str]) -> list[str]:
        """Resolve model ids, references (see `model_id`) and selectors (`all`, `guide`, `guide:CAT`,
        `category:CAT`) in catalog order."""
        chosen: list[str] = []
        for sel in selectors:
            kind, _, value = sel.partition(":")
            if sel == "all":
                ids = list(self.models)
            elif sel == "guide":
                ids = [m.id for m in self.models.values() if m.in_guide]
            elif kind in ("guide", "category") and value:
                check_choice("category", value, CATEGORIES)
                if kind == "guide":
                    group = next((g for g in self.mapping.groups if g.category == value), None)
                    ids = list(group.guide_models) if group else []
                else:
                    ids = [m.id for m in self.models.values() if value in m.categories]
            else:
                ids = [self.model_id(sel)]
            chosen.extend(i for i in ids if i not in chosen)
        return chosen


def _override_paths(extra: list[str] | None) -> list[Path]:
    paths = [p for p in os.environ.get("EVALMAP_CATALOG", "").split(os.pathsep) if p]
    paths += list(extra or [])
    out = []
    for p in paths:
        path = Path(p).expanduser()
        if not path.is_file():
            raise CatalogError(f"Catalog file {path} does not exist.")
        out.append(path)
    return out


def load_catalog(overrides: list[str] | None = None) -> Catalog:
    """The packaged catalog plus the user's override files, validated."""
    package = resources.files("evalmap.catalog")
    raw: dict[str, dict[str, tuple[dict, _Located, tuple]]] = {s: {} for s in SECTIONS}
    mapping_src: tuple[dict, _Located] | None = None
    sources: list[str] = []
    texts: list[str] = []

    def absorb(located: _Located) -> None:
        nonlocal mapping_src
        data = located.data
        unknown = set(data) - {*SECTIONS, "mapping", "version"}
        if unknown:
            key = sorted(unknown)[0]
            raise CatalogError(
                f"Invalid catalog file {located.file} line {located.line_of((key,))}: unknown section "
                f"{key!r} (expected models, datasets, plans or mapping)."
            )
        for section in SECTIONS:
            entries = data.get(section) or []
            if not isinstance(entries, list):
                raise CatalogError(
                    f"Invalid catalog file {located.file} line {located.line_of((section,))}: "
                    f"{section!r} must be a list."
                )
            for i, entry in enumerate(entries):
                if not isinstance(entry, dict) or "id" not in entry:
                    raise CatalogError(
                        f"Invalid catalog file {located.file} line {located.line_of((section, i))}: "
                        f"every {section} entry needs an 'id'."
                    )
                ident = entry["id"]
                if isinstance(ident, list | dict) or ident is None:
                    kind = "empty" if ident is None else "a list" if isinstance(ident, list) else "a mapping"
                    raise CatalogError(
                        f"Invalid catalog file {located.file} line {located.line_of((section, i, 'id'))}: "
                        f"the 'id' of a {section} entry must be a name, not {kind}."
                    )
                previous = raw[section].get(entry["id"])
                merged = _deep_merge(previous[0], entry) if previous else entry
                raw[section][entry["id"]] = (merged, located, (section, i))
        if "mapping" in data:
            mapping_src = (data["mapping"], located)

    for name in PACKAGE_FILES:
        text = package.joinpath(name).read_text(encoding="utf-8")
        texts.append(text)
        absorb(_read_yaml(text, f"evalmap/catalog/{name}"))
        sources.append(f"evalmap/catalog/{name}")
    plans_dir = resources.files("evalmap.plans")
    for entry in sorted(plans_dir.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            text = entry.read_text(encoding="utf-8")
            texts.append(text)
            absorb(_read_yaml(text, f"evalmap/plans/{entry.name}"))
    for path in _override_paths(overrides):
        try:
            text = _decode(path.read_bytes(), str(path))
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise CatalogError(f"Catalog file {path} cannot be read ({reason}); check its permissions.") from None
        texts.append(text)
        absorb(_read_yaml(text, str(path)))
        sources.append(str(path))

    built: dict[str, dict] = {}
    for section, cls in SECTIONS.items():
        built[section] = {
            key: _validate(cls, data, located, path) for key, (data, located, path) in raw[section].items()
        }
    if mapping_src is None:
        raise CatalogError("No mapping section found in the catalog files.")
    mapping = _validate(Mapping, mapping_src[0], mapping_src[1], ("mapping",))
    version = hashlib.sha256("\0".join(texts).encode()).hexdigest()[:12]
    catalog = Catalog(built["models"], built["datasets"], mapping, built["plans"], sources, version)
    _check_references(catalog)
    return catalog


def _check_references(catalog: Catalog) -> None:
    """Every id the mapping and plans mention must exist: fail at load, not mid-run."""
    for group in catalog.mapping.groups:
        catalog.select_models(group.guide_models)
        for tier in group.tiers:
            catalog.select_datasets(tier.datasets)
    for pool in catalog.mapping.pools:
        catalog.select_models(pool.models)
        catalog.select_models(pool.catalog_models or [])
        catalog.select_datasets(pool.datasets)
    keys = {p.key for p in catalog.mapping.pools}
    for listing in ("ready_matrix", "expansion_matrix", "usage_immediate", "usage_comprehensive"):
        for key in getattr(catalog.mapping, listing):
            if key not in keys:
                raise UnknownIdError("pool", key, sorted(keys))
    for plan in catalog.plans.values():
        for step in plan.steps:
            catalog.select_models(step.models)
            catalog.select_datasets([d for d in step.datasets if d != "recommended"])  # per model, at plan time
