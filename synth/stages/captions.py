"""captions: N contextual captions per concept from a text backend, schema-checked, cached, quarantined."""
from __future__ import annotations

import json
import logging
from typing import Any

from ..engine import (ShardResult, StageContext, atomic_write_json, chunk, content_id, seed_from_id)
from ..llm import LLMRequest, TextBackend, validate_captions

log = logging.getLogger(__name__)

SYSTEM = ("You write short image captions for a dataset of cultural concepts. Answer with a JSON list of "
          "strings and nothing else.")
USER = """Concept: {name} ({culture_name}; category: {category}).
Cultural context: {context}
Key visual features: {features}

Write {n} different captions of images showing {name}. Each caption:
- is under {max_words} words;
- is a different scene or visual style (photo, painting, market, close-up, ...);
- shows at least one key visual feature and keeps the cultural context;
- names "{name}".
Return a JSON list of {n} strings."""


def concept_words(concept: dict) -> tuple[list[str], list[str]]:
    """(names that count as naming the concept, terms that count as naming its culture)."""
    names = [concept["name"], *concept.get("aliases", [])]
    culture = [t for t in (concept.get("demonym"), concept.get("culture_name")) if t]
    return names, culture


class CaptionStage:
    """Shard = a chunk of concepts; record = one caption (with the concept's metadata carried along)."""

    name = "captions"
    upstream = None

    def __init__(self, concepts: list[dict], backend: TextBackend, n: int = 10, max_words: int = 15,
                 max_attempts: int = 3, concepts_per_shard: int = 8, require_culture: bool = False,
                 batch_size: int = 16):
        if n < 1 or max_words < 3 or max_attempts < 1:
            raise ValueError("captions needs n >= 1, max_words >= 3, max_attempts >= 1")
        self.concepts = sorted(concepts, key=lambda c: c["id"])
        self.backend, self.n, self.max_words = backend, n, max_words
        self.max_attempts, self.per_shard, self.require_culture = max_attempts, concepts_per_shard, require_culture
        self.batch_size = batch_size

    def settings(self) -> dict:
        return {"backend": self.backend.settings(), "n": self.n, "max_words": self.max_words,
                "max_attempts": self.max_attempts, "require_culture": self.require_culture,
                "prompt": [SYSTEM, USER], "concepts_per_shard": self.per_shard,
                "concepts": content_id([_facts(c) for c in self.concepts], length=64)}

    def plan(self, ctx: StageContext) -> list[list[Any]]:
        return chunk(self.concepts, self.per_shard)

    def _request(self, c: dict, attempt: int) -> LLMRequest:
        facts = {**_facts(c), "n": self.n, "max_words": self.max_words}
        user = USER.format(n=self.n, max_words=self.max_words, features="; ".join(c.get("features", [])), **{
            k: c.get(k, "") for k in ("name", "culture_name", "category", "context")})
        return LLMRequest(item_id=c["id"], messages=[{"role": "system", "content": SYSTEM},
                                                     {"role": "user", "content": user}],
                          seed=seed_from_id(f"{c['id']}:{attempt}"), task="captions", facts=facts)

    def process_shard(self, index: int, items: list[dict], ctx: StageContext) -> ShardResult:
        cache = {c["id"]: ctx.work / f"{c['id']}.json" for c in items}
        responses: dict[str, list[str]] = {}
        for c in items:  # responses survive a crash: replay them before asking the model again
            p = cache[c["id"]]
            responses[c["id"]] = json.loads(p.read_text(encoding="utf-8"))["responses"] if p.exists() else []
        result: dict[str, list[str]] = {}
        errors: dict[str, list[str]] = {c["id"]: [] for c in items}
        calls = 0
        bar = ctx.bar(len(items), f"captions shard {index}")
        for attempt in range(self.max_attempts):
            pending = [c for c in items if c["id"] not in result]
            need = [c for c in pending if len(responses[c["id"]]) <= attempt]
            for part in chunk(need, self.batch_size) if need else []:
                answers = self.backend.respond([self._request(c, attempt) for c in part])
                calls += len(part)
                for c, a in zip(part, answers):
                    responses[c["id"]].append(a)
                    atomic_write_json(cache[c["id"]], {"responses": responses[c["id"]]})
            for c in pending:
                names, culture = concept_words(c)
                caps, err = validate_captions(responses[c["id"]][attempt], names, self.n, self.max_words,
                                              culture if self.require_culture else None)
                if caps is not None:
                    result[c["id"]] = caps
                    bar.update(1)
                else:
                    errors[c["id"]].append(err)
            bar.set_postfix(ok=len(result), failing=len(items) - len(result))
        bar.close()
        res = ShardResult(stats={"model_calls": calls})
        for c in items:
            if c["id"] not in result:
                res.quarantined.append({"concept_id": c["id"], "stage": "captions",
                                        "reason": errors[c["id"]][-1], "attempts": self.max_attempts,
                                        "errors": errors[c["id"]], "last_response": responses[c["id"]][-1][:500]})
                continue
            for k, cap in enumerate(result[c["id"]]):
                res.records.append({
                    "caption_id": content_id("caption", c["id"], cap), "caption": cap, "caption_index": k,
                    "concept_id": c["id"], "concept_name": c["name"], "culture": c["culture"],
                    "region": c["region"], "category": c["category"], "concept_prompt": c["concept_prompt"],
                    "twin_concept_ids": list(c.get("twin_ids", [])), "twin_prompts": list(c.get("twin_prompts", [])),
                    "generated_concept": bool(c.get("generated", False))})
        return res


def _facts(c: dict) -> dict:
    keys = ("id", "name", "aliases", "culture", "culture_name", "demonym", "region", "category", "context",
            "features", "twin_ids", "concept_prompt", "twin_prompts")
    return {k: c.get(k) for k in keys}
