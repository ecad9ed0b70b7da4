"""Models outside the catalog, named on the command line instead of written as YAML.

A model reference is `hf:ORG/NAME` (a Hugging Face repo, loaded by transformers or vLLM),
`openai:NAME` (the name an OpenAI-compatible server knows, with --base-url), or a local path
(a folder holding config.json, or a .gguf file). Each becomes an ad-hoc catalog entry whose
unknown facts (size, context, license) are guessed from what is at hand and listed in
`unverified`, so a plan's estimate says what it rests on.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from evalmap.catalog.schema import GGUFSource, Model, RunHints

PREFIXES = ("hf:", "openai:")
DEFAULT_CONTEXT = 4096  # when nothing says otherwise; the engines read the real one from the weights
_SIZE = re.compile(r"(?<![a-z0-9.])(?:(\d+)x)?(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", re.IGNORECASE)
_BYTES_PER_PARAM = {"float32": 4.0, "float64": 8.0, "int8": 1.0}  # else 2 (bf16 / fp16)


def is_model_ref(text: str) -> bool:
    """A prefixed reference or a path that exists: anything else is a catalog id, a selector or an HF repo id."""
    if text.startswith(PREFIXES):
        return True
    path = Path(text).expanduser()
    return ("/" in text or text.endswith(".gguf")) and path.exists()


def size_from_name(name: str) -> float | None:
    """Billions of parameters as a model name states them (`Qwen2.5-0.5B` -> 0.5, `SmolLM2-135M` -> 0.135;
    `8x7B` -> 56, an upper bound: experts share their attention weights)."""
    found = _SIZE.findall(name)
    if not found:
        return None
    experts, number, unit = found[-1]
    value = int(experts or 1) * float(number) / (1000 if unit.lower() == "m" else 1)
    return value if value > 0 else None


def slug(text: str) -> str:
    """A catalog-style id (`^[a-z0-9_]+$`) for a reference."""
    out = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return out or "model"


def _folder_facts(folder: Path) -> dict:
    """What a transformers folder tells about its model: size (from the weight files), context, images."""
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    text_config = config.get("text_config") or config
    facts: dict = {}
    context = text_config.get("max_position_embeddings") or config.get("max_position_embeddings")
    if isinstance(context, int) and context > 0:
        facts["context_length"] = context
    weights = [*folder.glob("*.safetensors"), *folder.glob("*.bin")]
    dtype = str(text_config.get("torch_dtype") or config.get("torch_dtype") or config.get("dtype") or "")
    if weights:
        total = sum(p.stat().st_size for p in weights)
        facts["params_b"] = total / _BYTES_PER_PARAM.get(dtype, 2.0) / 1e9
    if "vision_config" in config:
        facts["modality"] = "vision-language"
    tokenizer = folder / "tokenizer_config.json"
    has_template = (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file()
    if tokenizer.is_file():
        has_template = has_template or "chat_template" in json.loads(tokenizer.read_text(encoding="utf-8"))
    facts["chat_template"] = has_template
    return facts


def model_from_ref(ref: str, model_id: str) -> Model:
    """The ad-hoc catalog entry for a reference (see the module doc); `model_id` is the id it gets."""
    facts: dict = {}
    if ref.startswith("hf:"):
        repo = ref.removeprefix("hf:")
        name, run = repo, RunHints(default_backend="transformers", hf=repo)
        facts["hf_repo"] = repo
    elif ref.startswith("openai:"):
        name = ref.removeprefix("openai:")
        run = RunHints(default_backend="openai", server_model=name)
    else:
        path = Path(ref).expanduser().resolve()
        name = path.name
        if path.is_file() and path.suffix == ".gguf":
            run = RunHints(default_backend="llamacpp", gguf=GGUFSource(file=path.name, path=str(path)))
            facts["params_b"] = size_from_name(name) or path.stat().st_size / 0.6 / 1e9  # ~4.5 bits a weight (Q4)
        else:
            run = RunHints(default_backend="transformers", hf=str(path))
            facts.update(_folder_facts(path))
    facts.setdefault("params_b", size_from_name(name))
    unverified = ["params_b", "license", *(["context_length"] if "context_length" not in facts else [])]
    return Model(
        id=model_id,
        name=name,
        categories=["text"],
        hf_repo=facts.pop("hf_repo", None),
        params_b=facts.pop("params_b", None) or 1.0,
        context_length=facts.pop("context_length", DEFAULT_CONTEXT),
        license="unknown",
        unverified=unverified,
        run=run,
        notes=f"outside the catalog: {ref}",
        **facts,
    )
