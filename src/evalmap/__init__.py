"""evalmap: model-to-dataset mapping turned into evaluations that run.

The public API (see README.md, "Python API"):

    import evalmap

    result = evalmap.evaluate("smollm2_135m", "gsm8k", samples=2, data_dir="datasets/")
    result.score("gsm8k")          # the headline score: value, stderr, 95% CI, n
    result.to_dict()               # the JSON of results.json and `evalmap run --format json`
    evalmap.load_run("latest")     # a stored run, as a RunResult
    evalmap.plan(plan="A")         # the planner's jobs, tokens and time estimate
    evalmap.load_catalog()         # the Catalog: models, datasets, mapping, plans

Names are imported on first use, so `import evalmap` loads nothing else.
"""

from typing import TYPE_CHECKING, Any

# public name -> "module:attribute", imported on first access (PEP 562)
_LAZY = {
    "evaluate": "evalmap.api:evaluate",
    "plan": "evalmap.api:plan",
    "load_run": "evalmap.api:load_run",
    "RunResult": "evalmap.api:RunResult",
    "Catalog": "evalmap.catalog.loader:Catalog",
    "load_catalog": "evalmap.catalog.loader:load_catalog",
    "EvalmapError": "evalmap.errors:EvalmapError",
}

__all__ = ["__version__", *_LAZY]


def _version() -> str:
    """The installed distribution's version (pyproject.toml states it once)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("evalmap")
    except PackageNotFoundError:
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in _LAZY:
        import importlib

        module, _, attribute = _LAZY[name].partition(":")
        value = getattr(importlib.import_module(module), attribute)
    else:
        raise AttributeError(f"module 'evalmap' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports these on first use
    from evalmap.api import RunResult, evaluate, load_run, plan  # noqa: F401
    from evalmap.catalog.loader import Catalog, load_catalog  # noqa: F401
    from evalmap.errors import EvalmapError  # noqa: F401

    __version__: str
