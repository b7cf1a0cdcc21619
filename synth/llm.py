"""Text backends for the LLM stages (concepts, twins, captions) and the schema checks on their output.

Three backends share one call, ``respond(requests) -> list[str]``:
- ``TransformersChatBackend``: a local chat model (text LLM or VLM) by hub id or folder, batched,
  chat template when the tokenizer has one, else a plain prompt;
- ``OpenAIChatBackend``: any OpenAI-compatible ``/chat/completions`` endpoint (vLLM, TGI, ...),
  concurrent threads, timeouts, bounded retries with backoff;
- ``TemplateBackend``: writes captions from the catalog's facts with no model at all.

Model output is never trusted: ``parse_json`` + the ``validate_*`` functions return (value, None) or
(None, reason); the stages retry a bounded number of times, then quarantine the item with the reason.
Transport failures that survive the retries raise ``BackendError``: the stage stops without marking
the shard done (cached responses are kept), because an unreachable server is not the item's fault.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)


class BackendError(RuntimeError):
    """The backend could not answer at all (server down, bad credentials, model failed to load)."""


@dataclass(frozen=True)
class LLMRequest:
    """One question to a backend. ``facts`` lets the template backend answer without a model."""

    item_id: str
    messages: list[dict]
    seed: int
    task: str = "captions"
    facts: dict = field(default_factory=dict)


class TextBackend(Protocol):
    name: str

    def settings(self) -> dict: ...

    def respond(self, requests: list[LLMRequest]) -> list[str]: ...


# ----------------------------------------------------------------------------- schema checks
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def parse_json(text: str, expect: type) -> tuple[Any, str | None]:
    """Find and parse the first JSON value of type ``expect`` (list or dict) in model output.

    Models wrap JSON in prose or code fences; we accept that but nothing looser.
    """
    if not isinstance(text, str) or not text.strip():
        return None, "empty response"
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    open_ch, close_ch = ("[", "]") if expect is list else ("{", "}")
    for cand in candidates:
        start = cand.find(open_ch)
        while start != -1:
            end = cand.rfind(close_ch)
            while end > start:
                try:
                    val = json.loads(cand[start:end + 1])
                    if isinstance(val, expect):
                        return val, None
                except json.JSONDecodeError:
                    pass
                end = cand.rfind(close_ch, start, end)
            start = cand.find(open_ch, start + 1)
    return None, f"no JSON {expect.__name__} found in response: {text[:80]!r}"


def _words(s: str) -> int:
    return len(s.split())


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s.strip().lower())


def validate_captions(text: str, names: list[str], n: int, max_words: int,
                      culture_terms: list[str] | None = None) -> tuple[list[str] | None, str | None]:
    """A JSON list of >= n distinct strings, each under ``max_words`` words and naming the concept.

    names: the concept's name and aliases (any one must appear, case-insensitive).
    culture_terms: when given, each caption must also mention one (demonym / culture name).
    Returns the first n captions, or None and the first problem found.
    """
    val, err = parse_json(text, list)
    if err:
        return None, err
    caps: list[str] = []
    seen: set[str] = set()
    low_names = [_norm(x) for x in names if x and x.strip()]
    for i, c in enumerate(val):
        if not isinstance(c, str) or not c.strip():
            return None, f"item {i} is not a non-empty string"
        c = re.sub(r"\s+", " ", c.strip())
        if _words(c) >= max_words:
            return None, f"caption {i} has {_words(c)} words (must be under {max_words}): {c[:60]!r}"
        if not any(nm in _norm(c) for nm in low_names):
            return None, f"caption {i} does not name the concept ({names[0]!r}): {c[:60]!r}"
        if culture_terms and not any(_norm(t) in _norm(c) for t in culture_terms if t):
            return None, f"caption {i} lost the cultural context (none of {culture_terms}): {c[:60]!r}"
        if _norm(c) in seen:
            return None, f"caption {i} repeats an earlier caption"
        seen.add(_norm(c))
        caps.append(c)
        if len(caps) == n:
            return caps, None
    return None, f"got {len(caps)} valid captions, need {n}"


# ----------------------------------------------------------------------------- template backend
STYLES = ("a close-up photo of", "a watercolor painting of", "a street photo of", "a studio photo of",
          "an old film photograph of", "a documentary photo of", "a pencil sketch of", "a wide-angle photo of",
          "a museum display of", "a smartphone snapshot of", "an oil painting of", "an overhead photo of")
SCENES = ("in soft morning light", "at a busy local market", "on a plain background", "during a celebration",
          "in its everyday setting", "under gallery lights", "outdoors in daylight", "on a wooden table", "",
          "at dusk", "in a family home")


def template_captions(facts: dict, n: int, max_words: int) -> list[str]:
    """Deterministic captions from catalog facts: a different style/scene each, a key feature, the culture.

    facts: a concept dict (name, culture_name, optional demonym, features).
    """
    name = facts["name"].strip()
    culture = f"{facts['demonym']} " if facts.get("demonym") else ""
    where = "" if culture else f" from {facts['culture_name']}"
    feats = [f.strip() for f in facts.get("features") or [] if f.strip()] or ["its typical look"]
    out: list[str] = []
    seen: set[str] = set()
    limit = len(STYLES) * len(SCENES)
    for k in range(limit):
        if len(out) == n:
            break
        style = STYLES[k % len(STYLES)]
        scene = SCENES[(k + k // len(STYLES)) % len(SCENES)]
        head = f"{style} {culture}{name}{where},".split()
        order = [feats[(k + j) % len(feats)] for j in range(len(feats))]
        cap = None
        for f in order:  # the k-th feature whole (with the scene if it fits), else the next feature
            for tail in ((scene.split() if scene else []), []):
                if len(head) + len(f.split()) + len(tail) < max_words:
                    cap = " ".join([*head, f, *tail])
                    break
            if cap:
                break
        if cap is None:  # no feature fits whole: cut the shortest at a word that can end a phrase
            words = min(order, key=lambda f: len(f.split())).split()[: max(1, max_words - 1 - len(head))]
            while len(words) > 1 and (words[-1].lower() in _DANGLING or words[-1].endswith((",", "("))):
                words.pop()
            cap = " ".join([*head, *words]).rstrip(",")
            if len(cap.split()) >= max_words:
                cap = " ".join(head[: max_words - 1]).rstrip(",")
        if _norm(cap) not in seen:
            seen.add(_norm(cap))
            out.append(cap)
    if len(out) < n:
        raise ValueError(f"template backend wrote only {len(out)} distinct captions for {name!r}; ask for fewer")
    return out


_DANGLING = {"and", "or", "with", "of", "on", "in", "the", "a", "an", "to", "at", "by", "from", "for", "its"}


class TemplateBackend:
    """Captions from catalog facts, no model: for smoke runs, CI and a baseline to compare LLMs against."""

    name = "template"

    def __init__(self, n: int = 10, max_words: int = 15):
        self.n, self.max_words = n, max_words

    def settings(self) -> dict:
        return {"backend": "template", "styles": list(STYLES), "scenes": list(SCENES)}

    def respond(self, requests: list[LLMRequest]) -> list[str]:
        out = []
        for r in requests:
            if r.task != "captions":
                raise BackendError(f"the template backend only writes captions, not {r.task!r}; configure "
                                   "llm.backend: transformers or openai for the concepts/twins stages")
            out.append(json.dumps(template_captions(r.facts, r.facts.get("n", self.n),
                                                    r.facts.get("max_words", self.max_words)), ensure_ascii=False))
        return out


# ----------------------------------------------------------------------------- transformers backend
def _resolve_dtype(dtype: str, device: str):
    import torch
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        return {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
                "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, bf16, fp16 or fp32") from None


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return f"cuda:{local % torch.cuda.device_count()}"
    return "cpu"


class TransformersChatBackend:
    """A local chat model (hub id or folder), loaded once, prompts batched with left padding.

    model_class: ``causal_lm`` (Qwen2.5-7B-Instruct, Llama...), ``image_text_to_text`` (Qwen2.5-VL...,
    used text-only here), or ``auto`` (try causal LM, fall back to image-text-to-text).
    """

    def __init__(self, model: str, device: str = "auto", dtype: str = "auto", batch_size: int = 8,
                 max_new_tokens: int = 384, temperature: float = 0.7, top_p: float = 0.95,
                 model_class: str = "auto", trust_remote_code: bool = False):
        self.model_id, self.device_pref, self.dtype_name = model, device, dtype
        self.batch_size, self.max_new_tokens = int(batch_size), int(max_new_tokens)
        self.temperature, self.top_p, self.model_class = float(temperature), float(top_p), model_class
        self.trust_remote_code = trust_remote_code
        self.name = model
        self._model = self._tok = self._proc = None

    def settings(self) -> dict:
        return {"backend": "transformers", "model": self.model_id, "max_new_tokens": self.max_new_tokens,
                "temperature": self.temperature, "top_p": self.top_p, "dtype": self.dtype_name}

    def _load(self) -> None:
        if self._model is not None:
            return
        import transformers as tf
        self.device = _resolve_device(self.device_pref)
        dtype = _resolve_dtype(self.dtype_name, self.device)
        kw = {"dtype": dtype, "trust_remote_code": self.trust_remote_code}
        try:
            if self.model_class in ("auto", "causal_lm"):
                try:
                    self._model = tf.AutoModelForCausalLM.from_pretrained(self.model_id, **kw)
                    self._tok = tf.AutoTokenizer.from_pretrained(self.model_id, trust_remote_code=self.trust_remote_code)
                except ValueError:
                    if self.model_class == "causal_lm":
                        raise
            if self._model is None:
                self._model = tf.AutoModelForImageTextToText.from_pretrained(self.model_id, **kw)
                self._proc = tf.AutoProcessor.from_pretrained(self.model_id, trust_remote_code=self.trust_remote_code)
                self._tok = self._proc.tokenizer
        except OSError as exc:
            raise BackendError(f"could not load chat model {self.model_id!r}: {exc}. Give a local folder or a "
                               "hub id reachable from here (HF_HUB_OFFLINE=1 forbids downloads)") from exc
        self._model.to(self.device).eval()
        self._tok.padding_side = "left"
        if self._tok.pad_token is None:
            self._tok.pad_token = self._tok.eos_token
        log.info("loaded chat model %s on %s (%s)", self.model_id, self.device, dtype)

    def _render(self, messages: list[dict]) -> str:
        tmpl_owner = self._proc if self._proc is not None else self._tok
        if getattr(tmpl_owner, "chat_template", None) or getattr(self._tok, "chat_template", None):
            if self._proc is not None:
                msgs = [{"role": m["role"], "content": [{"type": "text", "text": m["content"]}]} for m in messages]
                return self._proc.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            return self._tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in messages) + "\n\nAnswer:"

    def respond(self, requests: list[LLMRequest]) -> list[str]:
        import torch
        self._load()
        out: list[str] = []
        for i in range(0, len(requests), self.batch_size):
            batch = requests[i:i + self.batch_size]
            texts = [self._render(r.messages) for r in batch]
            enc = self._tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            torch.manual_seed(batch[0].seed)  # sampling is reproducible for a given batch
            gen_kw = {"max_new_tokens": self.max_new_tokens, "pad_token_id": self._tok.pad_token_id}
            if self.temperature > 0:
                gen_kw.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
            else:
                gen_kw.update(do_sample=False)
            with torch.inference_mode():
                ids = self._model.generate(**enc, **gen_kw)
            new = ids[:, enc["input_ids"].shape[1]:]  # (B, T_new): drop the prompt
            out.extend(self._tok.batch_decode(new, skip_special_tokens=True))
        return out


# ----------------------------------------------------------------------------- OpenAI-compatible HTTP
class OpenAIChatBackend:
    """POST ``{base_url}/chat/completions`` with a thread pool; retries 429/5xx/timeouts with backoff."""

    def __init__(self, model: str, base_url: str = "http://localhost:8000/v1", api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 8, timeout: float = 60.0, max_retries: int = 4, backoff: float = 1.0,
                 max_tokens: int = 384, temperature: float = 0.7, top_p: float = 0.95):
        self.model_id, self.base_url = model, base_url.rstrip("/")
        self.api_key_env, self.concurrency = api_key_env, max(1, int(concurrency))
        self.timeout, self.max_retries, self.backoff = float(timeout), int(max_retries), float(backoff)
        self.max_tokens, self.temperature, self.top_p = int(max_tokens), float(temperature), float(top_p)
        self.name = model

    def settings(self) -> dict:
        return {"backend": "openai", "model": self.model_id, "base_url": self.base_url,
                "max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p}

    def _post(self, req: LLMRequest) -> str:
        body = json.dumps({"model": self.model_id, "messages": req.messages, "max_tokens": self.max_tokens,
                           "temperature": self.temperature, "top_p": self.top_p, "seed": req.seed}).encode()
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(min(self.backoff * 2 ** (attempt - 1), 30.0))
            try:
                http_req = urllib.request.Request(f"{self.base_url}/chat/completions", data=body, headers=headers)
                with urllib.request.urlopen(http_req, timeout=self.timeout) as resp:
                    data = json.loads(resp.read().decode("utf-8"))
                return data["choices"][0]["message"]["content"] or ""
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}: {exc.read()[:200]!r}"
                if exc.code not in (408, 409, 429) and exc.code < 500:
                    raise BackendError(f"{self.base_url} refused the request ({last}); check model name "
                                       f"{self.model_id!r} and the API key in ${self.api_key_env}") from exc
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            except (KeyError, IndexError, json.JSONDecodeError) as exc:
                last = f"malformed response: {exc}"
            log.debug("request %s attempt %d failed: %s", req.item_id, attempt + 1, last)
        raise BackendError(f"{self.base_url} failed {self.max_retries + 1} times for item {req.item_id}: {last}")

    def respond(self, requests: list[LLMRequest]) -> list[str]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(self._post, requests))


# ----------------------------------------------------------------------------- registry
BACKENDS = {"template": TemplateBackend, "transformers": TransformersChatBackend, "openai": OpenAIChatBackend}


def create_backend(cfg: dict) -> TextBackend:
    """Build a backend from a config dict ``{backend: <name>, ...kwargs}``."""
    cfg = {k: v for k, v in cfg.items() if v is not None}
    kind = cfg.pop("backend", "template")
    if kind not in BACKENDS:
        raise ValueError(f"unknown llm backend {kind!r}; valid: {', '.join(BACKENDS)}")
    if kind != "template" and not cfg.get("model"):
        raise ValueError(f"llm.backend={kind} needs llm.model (a hub id or a local folder)")
    if kind == "template":
        cfg = {k: v for k, v in cfg.items() if k in ("n", "max_words")}
    try:
        return BACKENDS[kind](**cfg)
    except TypeError as exc:
        raise ValueError(f"bad settings for llm backend {kind!r}: {exc}") from exc
