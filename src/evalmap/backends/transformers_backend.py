"""Hugging Face transformers backend: any causal LM (hub repo, local folder or GGUF file) on CPU or GPU.

Design notes
- GGUF files are dequantized by transformers on load, which is slow; the first load keeps a
  safetensors copy that later loads read (`weights.py`: `converted_cache_root`, `write_converted_copy`).
- Generation runs its own decode loop (KV cache, left padding with explicit attention mask and
  position ids) rather than `model.generate`, so that sampling uses one seeded generator per
  request (reproducible at any batch size and batch position), per-row stop strings end a row as
  soon as they appear, and finished rows leave the batch.
- Log-likelihoods follow lm-eval: context+continuation are encoded whole and split at the
  context's length (trailing spaces of the context move onto the continuation), the input is
  truncated from the left, batches are right padded and sorted by length, and a request whose
  input is a prefix of another request's input (same context: e.g. single-token multiple-choice
  answers) is read from that request's forward pass instead of getting its own row.
- Batch invariance: in float32 (the CPU default) greedy texts were identical at batch sizes 1, 4,
  8 and 16 in every check (SmolLM2-135M on CPU; a random-init SmolLM2 on CPU and on an H100), and
  log-likelihoods agreed to ~1e-5. In bfloat16 (the CUDA default) matmul kernels chosen per batch
  shape round differently, so a near-tie can flip a greedy token late in a long generation; pass
  dtype="float32" where bit-stable greedy output across batch sizes matters more than speed.
- Generation batches group requests by (max_tokens, temperature, top_p); stop strings are per row.
- A `vision-language` catalog model loads with AutoProcessor + AutoModelForImageTextToText; its chat
  template (the processor's) writes the image tokens, the processor expands them and makes the pixel
  tensors (`vision.py`), which go into the first forward pass of the same decode loop. Requests with
  images are batched apart from text-only ones; a Qwen2-VL-style model gets its 3-D RoPE positions.
- `window` (requests per call from `base.stream`) is 16 batches, so length sorting has room to pad
  little; `on_tokens` is told, after each decoding step, how many rows made a token in it.
"""

from __future__ import annotations

import gc
import hashlib
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalmap.backends import vision
from evalmap.backends.base import (
    BackendInfo,
    Capabilities,
    Generation,
    GenerationRequest,
    LogLikelihood,
    LoglikelihoodRequest,
    MaskedPositionRequest,
    OnResponse,
    OnTokens,
    PositionLogprobs,
    PromptTooLongError,
    length_sorted,
    split_context,
    template_renders_tools,
    tools_refused,
)
from evalmap.backends.registry import install_hint
from evalmap.backends.weights import (
    converted_dir,
    file_fingerprint,
    folder_fingerprint,
    has_converted_copy,
    resolve_gguf,
    write_converted_copy,
)
from evalmap.errors import BackendUnavailableError, EvalmapError

if TYPE_CHECKING:
    from evalmap.backends import BackendOptions
    from evalmap.catalog.schema import Model

_INSTALL_HINT = f"install the Hugging Face extra with `{install_hint('transformers')}`"
_DTYPES = ("float32", "float16", "bfloat16")


def _import_deps() -> tuple[Any, Any]:
    # OpenMP threads that spin while they wait make a CPU matmul up to ~40x slower whenever another process
    # (a sandboxed test of the scorer pool, a second run) holds a core: measured 16 ms vs 0.37 ms for an
    # 8x576x1536 linear on 2 busy cores. Passive waiting costs nothing measurable on an idle machine. It must be
    # set before torch starts OpenMP; a user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise BackendUnavailableError(
            f"The transformers backend needs torch and transformers ({exc.name} is missing); {_INSTALL_HINT}."
        ) from exc
    # evalmap draws its own progress bars; the library's per-load bars would interleave with them.
    transformers.utils.logging.disable_progress_bar()
    return torch, transformers


class TransformersBackend:
    """A causal LM run in process with torch + transformers (satisfies `evalmap.backends.base.Backend`)."""

    @property
    def window(self) -> int:
        """Requests per engine call from `base.stream`: 16 batches to length-sort."""
        return self.batch_size * 16

    @classmethod
    def from_catalog(cls, model: Model, options: BackendOptions) -> TransformersBackend:
        gguf = model.run.gguf
        # A GGUF that needs no download (package file or path) is preferred: it works offline.
        local = resolve_gguf(gguf) if gguf and (gguf.package or gguf.path) else None
        ref, gguf_file = (str(local.parent), local.name) if local else (model.run.hf or model.hf_repo, None)
        if ref is None:
            raise EvalmapError(f"{model.id} names no Hugging Face repo or local weights for transformers.")
        return cls(
            ref, gguf_file=gguf_file, device=options.device, dtype=options.dtype or model.run.dtype,
            batch_size=options.batch_size, trust_remote_code=model.run.trust_remote_code,
            masked_lm=model.objective == "masked_lm", vision=model.modality == "vision-language",
        )

    @classmethod
    def capabilities_before_load(cls, model: Model, options: BackendOptions) -> Capabilities:
        """What the catalog entry promises (the loaded model's config may say more): logprobs; images for a
        vision-language model (loaded with its processor)."""
        masked = model.objective == "masked_lm"
        return Capabilities(
            chat_template=model.chat_template, logprobs=not masked, tools=model.tool_template,
            max_context=model.context_length, masked_positions=masked, images=model.modality == "vision-language",
        )

    def __init__(
        self,
        model_ref: str,
        *,
        gguf_file: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 8,
        max_length: int | None = None,
        trust_remote_code: bool = False,
        revision: str | None = None,
        cache_dir: str | None = None,
        masked_lm: bool = False,
        vision: bool = False,
    ):
        torch, transformers = _import_deps()
        self._torch = torch
        self._transformers = transformers
        self.model_ref = str(model_ref)
        self.gguf_file = gguf_file
        self.batch_size = max(1, int(batch_size))
        self.trust_remote_code = trust_remote_code
        self.revision = revision
        self.cache_dir = cache_dir
        self.masked_lm = masked_lm  # loaded with AutoModelForMaskedLM; answers masked_positions only
        self.vision = vision  # loaded with AutoProcessor + AutoModelForImageTextToText; takes images
        self.processor = None  # the vision-language model's processor (its chat template writes image tokens)
        self.device = self._resolve_device(device)
        self.dtype = self._resolve_dtype(dtype)
        if self.device.type == "cpu":
            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
            torch.set_num_threads(max(1, cpus or 1))

        self.converted_dir: Path | None = None
        self.gguf_path: Path | None = None  # the GGUF file loaded, when it was one
        self.loaded_from = ""  # "gguf" (dequantized now), "converted-cache", "local" or "hub"
        self.conversion_seconds = 0.0  # of the load, converting the GGUF to the cached copy (a first load only)
        started = time.perf_counter()
        if gguf_file:
            model, tokenizer, fingerprint = self._load_gguf(gguf_file)
        else:
            model, tokenizer, fingerprint = self._load_hf()
        self.load_seconds = time.perf_counter() - started

        model.to(self.device)
        model.eval()
        self._model = model
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._eos_ids = self._eos_token_ids(model, tokenizer)
        self._add_bos = self._tokenizer_adds_bos(tokenizer)
        self._keeps_logits = "logits_to_keep" in _forward_params(model)

        config_max = getattr(model.config.get_text_config(), "max_position_embeddings", None) or 2048
        self.max_length = int(max_length or config_max)
        template = getattr(self.processor, "chat_template", None) or getattr(tokenizer, "chat_template", None)
        self.capabilities = Capabilities(
            chat_template=bool(template),
            logprobs=not masked_lm,
            images=self.processor is not None,
            tools=template_renders_tools(template),
            max_context=self.max_length,
            masked_positions=masked_lm,
        )
        self.info = BackendInfo(
            name="transformers",
            version=transformers.__version__,
            model=f"{self.model_ref}/{gguf_file}" if gguf_file else self.model_ref,
            fingerprint=fingerprint,
            extra={
                "device": str(self.device),
                "dtype": str(self.dtype).removeprefix("torch."),
                "torch": torch.__version__,
            },
        )

    # ------------------------------------------------------------------ loading

    def _resolve_device(self, device: str):
        torch = self._torch
        if device in ("auto", "", None):
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            resolved = torch.device(device)
        except RuntimeError as exc:
            raise BackendUnavailableError(f"Unknown torch device {device!r}; use auto, cpu, cuda or cuda:N.") from exc
        if resolved.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"Device {device!r} was asked for but torch sees no CUDA GPU; use device='cpu'."
            )
        return resolved

    def _resolve_dtype(self, dtype: str):
        torch = self._torch
        if dtype in ("auto", "", None):
            if self.device.type == "cuda":
                return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return torch.float32
        name = str(dtype).removeprefix("torch.")
        name = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}.get(name, name)
        if name not in _DTYPES:
            raise BackendUnavailableError(f"Unknown dtype {dtype!r}; use auto, float32, float16 or bfloat16.")
        return getattr(torch, name)

    def _gguf_path(self, gguf_file: str) -> Path:
        local = Path(self.model_ref).expanduser() / gguf_file
        if local.is_file():
            return local
        if Path(gguf_file).expanduser().is_file():
            return Path(gguf_file).expanduser()
        if Path(self.model_ref).expanduser().is_dir():
            raise BackendUnavailableError(f"GGUF file {local} does not exist.")
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(self.model_ref, gguf_file, revision=self.revision))
        except Exception as exc:  # network, auth, missing file: one sentence for the user
            raise BackendUnavailableError(
                f"Could not fetch {gguf_file} from the hub repo {self.model_ref} ({type(exc).__name__}); "
                "check the network or pass the folder holding the .gguf file as the model."
            ) from exc

    def _load_gguf(self, gguf_file: str):
        path = self._gguf_path(gguf_file)
        self.gguf_path = path  # the file itself (mobile_benchmark runs it on llama.cpp)
        fingerprint = file_fingerprint(path)
        target = converted_dir(fingerprint, self.cache_dir)
        self.converted_dir = target
        if has_converted_copy(target):
            try:
                model, tokenizer = self._from_folder(target)
                self.loaded_from = "converted-cache"
                return model, tokenizer, fingerprint
            except Exception:  # a damaged copy: convert again and replace it
                pass
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch = self._torch
        converting = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        # The weights are plain tensors now; drop the GGUF quantizer so the model saves and casts normally.
        model.hf_quantizer = None
        model.config.__dict__.pop("quantization_config", None)
        self.loaded_from = "gguf"
        versions = {"transformers": self._transformers.__version__, "torch": self._torch.__version__}
        written = write_converted_copy(model, tokenizer, target, path, fingerprint, versions)
        self.conversion_seconds = time.perf_counter() - converting  # once per machine: the planner leaves it out
        if written:
            # Run from the copy, so the first and every later run use the very same files.
            try:
                return (*self._from_folder(target), fingerprint)
            except Exception:  # unreadable copy (disk trouble): keep going with the model in memory
                pass
        return model.to(self.dtype), tokenizer, fingerprint

    def _from_folder(self, folder: Path | str, **kwargs):
        from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

        common = {"trust_remote_code": self.trust_remote_code, **kwargs}
        if self.vision:
            model, self.processor = vision.load(str(folder), self.dtype, **common)
            return model, self.processor.tokenizer
        tokenizer = AutoTokenizer.from_pretrained(str(folder), **common)
        auto = AutoModelForMaskedLM if self.masked_lm else AutoModelForCausalLM
        model = auto.from_pretrained(str(folder), dtype=self.dtype, **common)
        return model, tokenizer

    def _load_hf(self):
        folder = Path(self.model_ref).expanduser()
        if folder.is_dir():
            model, tokenizer = self._from_folder(folder)
            self.loaded_from = "local"
            return model, tokenizer, folder_fingerprint(folder)
        try:
            model, tokenizer = self._from_folder(self.model_ref, revision=self.revision)
        except OSError as exc:
            raise BackendUnavailableError(
                f"Could not load the model {self.model_ref!r} from the Hugging Face hub (offline, private or "
                "misspelled?); check the network or pass a local folder holding its files."
            ) from exc
        self.loaded_from = "hub"
        return model, tokenizer, self._hub_fingerprint()

    def _hub_fingerprint(self) -> str:
        """The resolved commit of a hub repo (from the snapshot folder), else a hash of the files."""
        from transformers.utils import cached_file

        try:
            config = Path(cached_file(self.model_ref, "config.json", revision=self.revision))
        except Exception:
            return hashlib.sha256(f"{self.model_ref}@{self.revision}".encode()).hexdigest()[:16]
        if config.parent.parent.name == "snapshots":
            return config.parent.name
        return folder_fingerprint(config.parent)

    @staticmethod
    def _eos_token_ids(model, tokenizer) -> set[int]:
        ids: set[int] = set()
        if tokenizer.eos_token_id is not None:
            ids.add(int(tokenizer.eos_token_id))
        generation_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        if isinstance(generation_eos, int):
            ids.add(generation_eos)
        elif generation_eos:
            ids.update(int(i) for i in generation_eos)
        return ids

    @staticmethod
    def _tokenizer_adds_bos(tokenizer) -> bool:
        bos = tokenizer.bos_token_id
        if bos is None:
            return False
        with_special = tokenizer("x", add_special_tokens=True)["input_ids"]
        plain = tokenizer("x", add_special_tokens=False)["input_ids"]
        return len(with_special) > len(plain) and with_special[0] == bos

    # ------------------------------------------------------------------ helpers

    @property
    def model(self):
        if self._model is None:
            raise RuntimeError("This TransformersBackend was closed.")
        return self._model

    def _causal_only(self) -> None:
        if self.masked_lm:
            raise EvalmapError(
                f"{self.model_ref} is a masked LM: it answers masked marginals only, not generations or "
                "log-likelihoods of a continuation."
            )

    def _encode(self, text: str) -> list[int]:
        """Plain text -> ids, with BOS only when the tokenizer adds it by default (never EOS)."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return [self.tokenizer.bos_token_id, *ids] if self._add_bos else list(ids)

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        if request.chat:
            if request.tools and not self.capabilities.tools:
                raise tools_refused(self.model_ref)
            if self.processor is not None:
                return vision.encode(self.processor, request, self._add_bos, request.tool_list())[0]
            text = self.tokenizer.apply_chat_template(
                request.chat_messages(), tools=request.tool_list(), add_generation_prompt=True, tokenize=False
            )
            # The rendered template carries its own special tokens.
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return self._encode(request.prompt)

    def close(self) -> None:
        self._model = None
        gc.collect()
        if self.device.type == "cuda":
            self._torch.cuda.empty_cache()

    def __enter__(self) -> TransformersBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ generation

    def generate(
        self,
        requests: list[GenerationRequest],
        on_response: OnResponse | None = None,
        on_tokens: OnTokens | None = None,
    ) -> list[Generation]:
        self._causal_only()
        results: list[Generation | None] = [None] * len(requests)
        images: list[dict | None] = [None] * len(requests)  # per request: its image tensors (processor output)
        prompts = []
        for i, r in enumerate(requests):
            if r.images:
                if self.processor is None:
                    raise EvalmapError(
                        f"{self.model_ref} is loaded as a text-only model, so it cannot take images; a "
                        "vision-language model needs `modality: vision-language` in the catalog."
                    )
                if r.tools and not self.capabilities.tools:
                    raise tools_refused(self.model_ref)
                ids, images[i] = vision.encode(self.processor, r, self._add_bos, r.tool_list())
                prompts.append(ids)
            else:
                prompts.append(self._prompt_ids(r))
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):  # requests with images are batched apart (all rows carry pixels)
            sampling = r.temperature > 0
            key = (r.max_tokens, float(r.temperature) if sampling else 0.0, float(r.top_p) if sampling else 1.0)
            groups[(*key, bool(r.images))].append(i)
        for indices in groups.values():
            order = length_sorted([(i, len(prompts[i])) for i in indices])
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                for i, generation in zip(
                    batch,
                    self._generate_batch(
                        [requests[i] for i in batch], [prompts[i] for i in batch], on_tokens, [images[i] for i in batch]
                    ),
                    strict=True,
                ):
                    results[i] = generation
                    if on_response is not None:
                        on_response(i, generation)
        return results  # type: ignore[return-value]

    def _generate_batch(
        self,
        requests: list[GenerationRequest],
        prompts: list[list[int]],
        on_tokens: OnTokens | None = None,
        images: list[dict | None] | None = None,
    ) -> list[Generation]:
        """One left-padded batch; `images` (all rows or none) are the rows' image tensors, fed to the first
        forward pass (a multimodal-RoPE model also gets its 3-D positions from them)."""
        torch = self._torch
        started = time.perf_counter()
        n = len(requests)
        max_new = max(r.max_tokens for r in requests)
        if max_new <= 0:
            return [
                Generation(text="", prompt_tokens=len(p), completion_tokens=0, finish_reason="length") for p in prompts
            ]
        room = max(1, self.max_length - max_new)
        with_images = bool(images) and images[0] is not None
        if with_images and max(len(p) for p in prompts) > room:  # cutting would cut an image's tokens
            raise PromptTooLongError(
                f"A prompt with images of {max(len(p) for p in prompts):,} tokens leaves no room for "
                f"{max_new:,} new tokens in {self.model_ref}'s {self.max_length:,}; shorten it or lower max_tokens."
            )
        prompts = [p[-room:] if len(p) > room else p for p in prompts]
        width = max(len(p) for p in prompts)
        input_ids = torch.full((n, width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for row, ids in enumerate(prompts):  # LEFT padding: every row's last token is its newest one
            if ids:
                input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
                mask[row, width - len(ids) :] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        pixels: dict = {}
        if with_images:
            lengths = [len(p) for p in prompts]
            pixels = vision.batch(images, lengths, width, self.device, self.dtype)
            rope = vision.rope_positions(self.model, input_ids, mask, pixels)
            positions = positions if rope is None else rope

        generators = []
        for r in requests:
            if r.temperature > 0:
                g = torch.Generator(device=self.device)
                g.manual_seed(int(r.seed))
                generators.append(g)
            else:
                generators.append(None)

        generated: list[list[int]] = [[] for _ in range(n)]
        finish: list[str] = ["length"] * n
        used: list[int] = [0] * n  # tokens produced, EOS included
        active = list(range(n))
        model = self.model
        with torch.inference_mode():
            out = model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=positions,
                use_cache=True,
                **({"logits_to_keep": 1} if self._keeps_logits else {}),
                **pixels,
            )
            cache = out.past_key_values
            logits = out.logits[:, -1, :].float()
            for _ in range(max_new):
                chosen = self._pick([requests[i] for i in active], [generators[i] for i in active], logits)
                keep: list[int] = []
                for row, i in enumerate(active):
                    token = int(chosen[row])
                    used[i] += 1
                    if token in self._eos_ids:
                        finish[i] = "stop"
                        continue
                    generated[i].append(token)
                    stops = requests[i].stop
                    if (
                        stops
                        and _find_stop(self.tokenizer.decode(generated[i], skip_special_tokens=True), stops) is not None
                    ):
                        finish[i] = "stop"
                        continue
                    if used[i] >= requests[i].max_tokens:
                        continue
                    keep.append(row)
                if on_tokens is not None:
                    on_tokens(len(active))  # every active row made a token (an EOS too, as `used` counts)
                if not keep:
                    break
                if len(keep) < len(active):  # finished rows leave the batch
                    index = torch.tensor(keep, dtype=torch.long, device=self.device)
                    cache.batch_select_indices(index)
                    mask, positions, chosen = mask[index], positions.index_select(-2, index), chosen[index]
                    active = [active[row] for row in keep]
                mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
                positions = positions[..., -1:] + 1  # (batch, 1), or (3, batch, 1) for 3-D RoPE
                out = model(
                    input_ids=chosen.view(-1, 1).to(self.device),
                    attention_mask=mask,
                    position_ids=positions,
                    past_key_values=cache,
                    use_cache=True,
                )
                cache = out.past_key_values
                logits = out.logits[:, -1, :].float()
        latency = (time.perf_counter() - started) / n
        results = []
        for i, r in enumerate(requests):
            text = self.tokenizer.decode(generated[i], skip_special_tokens=True)
            cut = _find_stop(text, r.stop)
            if cut is not None:
                text = text[:cut]
            results.append(
                Generation(
                    text=text,
                    prompt_tokens=len(prompts[i]),
                    completion_tokens=used[i],
                    finish_reason=finish[i],
                    latency_s=latency,
                )
            )
        return results

    def _pick(self, requests: list[GenerationRequest], generators: list, logits):
        """Next token per row: argmax when greedy, else a seeded sample with temperature / top-p."""
        torch = self._torch
        chosen = logits.argmax(dim=-1)
        for row, (r, g) in enumerate(zip(requests, generators, strict=True)):
            if g is None:
                continue
            probs = torch.softmax(logits[row] / float(r.temperature), dim=-1)
            if r.top_p < 1.0:
                sorted_probs, sorted_ids = probs.sort(descending=True)
                drop = sorted_probs.cumsum(-1) - sorted_probs > float(r.top_p)
                sorted_probs = sorted_probs.masked_fill(drop, 0.0)
                pick = torch.multinomial(sorted_probs, 1, generator=g)
                chosen[row] = sorted_ids[pick[0]]
            else:
                chosen[row] = torch.multinomial(probs, 1, generator=g)[0]
        return chosen

    # ------------------------------------------------------------------ log-likelihood

    def _split_tokens(self, request: LoglikelihoodRequest) -> tuple[list[int], list[int]]:
        """lm-eval's encoding: encode context+continuation whole and split at the context's length."""
        context, continuation = split_context(request)
        if not context:  # condition on a lone BOS (or EOS) token, as lm-eval does
            prefix = self.tokenizer.bos_token_id
            if prefix is None:
                prefix = self.tokenizer.eos_token_id
            return [prefix], list(self.tokenizer(continuation, add_special_tokens=False)["input_ids"])
        whole = self._encode(context + continuation)
        context_ids = self._encode(context)
        return whole[: len(context_ids)], whole[len(context_ids) :]

    def loglikelihood(
        self, requests: list[LoglikelihoodRequest], on_response: OnResponse | None = None
    ) -> list[LogLikelihood]:
        self._causal_only()
        results: list[LogLikelihood | None] = [None] * len(requests)
        limit = self.max_length
        feeds: dict[int, tuple[list[int], int]] = {}  # request -> (model input, continuation length)
        targets: dict[int, list[int]] = {}  # request -> continuation tokens
        for i, request in enumerate(requests):
            context, continuation = self._split_tokens(request)
            if not continuation:
                results[i] = LogLikelihood(
                    logprob=0.0, is_greedy=True, continuation_tokens=0, context_tokens=len(context)
                )
                if on_response is not None:
                    on_response(i, results[i])
                continue
            continuation = continuation[-limit:]
            feed = (context + continuation)[-(limit + 1) :][:-1]
            feeds[i] = (feed, len(continuation))
            targets[i] = continuation

        # One row per distinct input; a request whose input is a prefix of a longer row with the same
        # context reads its logits from that row (causal attention: position t only sees tokens <= t).
        rows: list[list[int]] = []
        by_context: dict[tuple[int, ...], list[int]] = defaultdict(list)
        served: dict[int, list[int]] = defaultdict(list)  # row -> requests
        for i in length_sorted([(i, len(feed)) for i, (feed, _) in feeds.items()]):
            feed, ncont = feeds[i]
            key = tuple(feed[: len(feed) - ncont + 1])
            for row in by_context[key]:
                if len(rows[row]) >= len(feed) and rows[row][: len(feed)] == feed:
                    served[row].append(i)
                    break
            else:
                rows.append(feed)
                by_context[key].append(len(rows) - 1)
                served[len(rows) - 1].append(i)

        for start in range(0, len(rows), self.batch_size):
            batch = list(range(start, min(start + self.batch_size, len(rows))))
            for i, value in self._score_rows([rows[r] for r in batch], [served[r] for r in batch], feeds, targets):
                results[i] = value
                if on_response is not None:
                    on_response(i, value)
        return results  # type: ignore[return-value]

    def _score_rows(self, rows, served, feeds, targets):
        torch = self._torch
        started = time.perf_counter()
        width = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, row in enumerate(rows):  # RIGHT padding: positions 0.. are the same as unbatched
            input_ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[b, : len(row)] = 1
        first = min(len(feeds[i][0]) - feeds[i][1] for group in served for i in group)
        keep = width - first
        kwargs = {"logits_to_keep": keep} if self._keeps_logits else {}
        with torch.inference_mode():
            logits = self.model(
                input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device), use_cache=False, **kwargs
            ).logits
            logits = logits[:, -keep:, :].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            greedy = logits.argmax(dim=-1)
        count = sum(len(group) for group in served)
        latency = (time.perf_counter() - started) / count
        out = []
        for b, group in enumerate(served):
            for i in group:
                feed, ncont = feeds[i]
                offset = len(feed) - ncont - first  # kept-logit index predicting the first continuation token
                target = torch.tensor(targets[i], dtype=torch.long, device=logprobs.device)
                picked = logprobs[b, offset : offset + ncont].gather(-1, target.view(-1, 1)).squeeze(-1)
                is_greedy = bool((greedy[b, offset : offset + ncont] == target).all())
                out.append(
                    (
                        i,
                        LogLikelihood(
                            logprob=float(picked.double().sum()),
                            is_greedy=is_greedy,
                            continuation_tokens=ncont,
                            context_tokens=len(feed) - ncont + 1,
                            latency_s=latency,
                        ),
                    )
                )
        return out

    # ------------------------------------------------------------------ raw speed (efficiency_bench's baseline)

    def raw_bench(self, n_prompt: int, n_gen: int, reps: int, depth: int = 0, seed: int = 0) -> dict[str, list[float]]:
        """llama-bench's pp/tg measured on this model without evalmap's decode loop: random tokens, one untimed
        warm-up, each repetition from an empty KV cache; tg feeds one token per forward after `depth` context
        tokens. {"pp": tok/s per repetition, "tg": ...}; only the forward calls are timed."""
        self._causal_only()
        torch = self._torch
        generator = torch.Generator().manual_seed(seed)
        vocab = int(self.model.config.get_text_config().vocab_size)
        keep = {"logits_to_keep": 1} if self._keeps_logits else {}

        def tokens(n: int):
            return torch.randint(0, vocab, (1, max(1, n)), generator=generator).to(self.device)

        out: dict[str, list[float]] = {"pp": [], "tg": []}
        with torch.inference_mode():
            self.model(input_ids=tokens(16), use_cache=False, **keep)  # warm-up
            for _ in range(reps if n_prompt else 0):
                ids = tokens(n_prompt)
                start = time.perf_counter()
                self.model(input_ids=ids, use_cache=False, **keep)
                out["pp"].append(n_prompt / (time.perf_counter() - start))
            for _ in range(reps if n_gen else 0):
                context, ids = tokens(depth), tokens(n_gen)
                past = self.model(input_ids=context, use_cache=True, **keep).past_key_values
                start = time.perf_counter()
                for k in range(n_gen):
                    past = self.model(input_ids=ids[:, k : k + 1], past_key_values=past, use_cache=True,
                                      **keep).past_key_values  # fmt: skip
                out["tg"].append(n_gen / (time.perf_counter() - start))
        return out

    # ------------------------------------------------------------------ masked LMs

    def masked_positions(
        self, requests: list[MaskedPositionRequest], on_response: OnResponse | None = None
    ) -> list[PositionLogprobs]:
        """log p(letter) at each request's masked position, read from one forward pass of its sequence with that
        position masked (ESM reads <cls> + one token per residue + <eos>); rows of equal length share a batch."""
        if not self.masked_lm:
            raise EvalmapError(
                f"{self.model_ref} is loaded as a causal LM; masked marginals need a catalog model with "
                "`objective: masked_lm`."
            )
        torch = self._torch
        rows = [self._masked_row(r) for r in requests]
        letters = {r.alphabet: self._letter_ids(r.alphabet) for r in requests}
        results: list[PositionLogprobs | None] = [None] * len(requests)
        order = length_sorted([(i, len(row)) for i, (row, _) in enumerate(rows)])
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            started = time.perf_counter()
            width = max(len(rows[i][0]) for i in batch)
            input_ids = torch.full((len(batch), width), self._pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for b, i in enumerate(batch):
                row = rows[i][0]
                input_ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
                mask[b, : len(row)] = 1
            with torch.inference_mode():
                logits = self.model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device)).logits
            latency = (time.perf_counter() - started) / len(batch)
            for b, i in enumerate(batch):
                logprobs = torch.log_softmax(logits[b, rows[i][1]].float(), dim=-1)
                alphabet = requests[i].alphabet
                picked = logprobs[letters[alphabet]].double().tolist()
                results[i] = PositionLogprobs(
                    dict(zip(alphabet, picked, strict=True)), context_tokens=len(rows[i][0]), latency_s=latency
                )
                if on_response is not None:
                    on_response(i, results[i])
        return results  # type: ignore[return-value]

    def _letter_ids(self, letters: str) -> list[int]:
        """One token id per letter; a letter the vocabulary lacks (it would read as <unk>) is refused."""
        ids = self.tokenizer.convert_tokens_to_ids(list(letters))
        unknown = [c for c, i in zip(letters, ids, strict=True) if i is None or i == self.tokenizer.unk_token_id]
        if unknown:
            raise EvalmapError(
                f"The tokenizer of {self.model_ref} has no single token for {''.join(sorted(set(unknown)))!r}; "
                "masked marginals need a model that reads one token per residue (ESM-style)."
            )
        return ids

    def _masked_row(self, request: MaskedPositionRequest) -> tuple[list[int], int]:
        """The sequence's ids with the tokenizer's special tokens, the request's residue masked; and its index."""
        sequence, position = request.sequence, request.position
        if not 1 <= position <= len(sequence):
            raise EvalmapError(f"Masked position {position} is outside the {len(sequence)}-residue sequence.")
        residues = self._letter_ids(sequence)
        ids = list(self.tokenizer.build_inputs_with_special_tokens(residues))
        offset = next(k for k in range(len(ids) - len(residues) + 1) if ids[k : k + len(residues)] == residues)
        if len(ids) > self.max_length:
            raise PromptTooLongError(
                f"A {len(sequence)}-residue sequence needs {len(ids)} positions; "
                f"{self.model_ref} has {self.max_length}."
            )
        ids[offset + position - 1] = self.tokenizer.mask_token_id
        return ids, offset + position - 1


def _find_stop(text: str, stops: tuple[str, ...]) -> int | None:
    """Index of the earliest stop string in `text`, or None."""
    hits = [text.find(s) for s in stops if s]
    hits = [h for h in hits if h >= 0]
    return min(hits) if hits else None


def _forward_params(model) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return set()
