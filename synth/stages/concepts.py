"""concepts: an LLM/VLM proposes cultural concepts, top-down (culture x category grid) or bottom-up
(page titles of an image-text corpus such as WIT). Output is in the catalog format, ``generated: true``,
written to the run folder (``<out>/generated/concepts.yaml``), never into the curated catalog."""
from __future__ import annotations

import json
import logging
import re
import unicodedata
from typing import Any

from ..catalog.regions import COUNTRIES
from ..catalog.schema import CATEGORIES, concept_problems, parse_concept
from ..engine import ShardResult, StageContext, atomic_write_json, chunk, content_id, seed_from_id
from ..llm import LLMRequest, TextBackend, parse_json

log = logging.getLogger(__name__)

SYSTEM = ("You are a careful cultural historian building a dataset of visually recognisable cultural concepts. "
          "Answer with one JSON object and nothing else.")
FIELDS = """{"name": str, "aliases": [str], "context": str (15-35 words of true cultural context),
 "features": [3-5 short key visual features], "kind": str (a noun such as dumpling, robe, drum)}"""
TOP_DOWN = """Propose one well-known, visually distinctive {category} concept from {culture_name}{avoid}.
Return JSON with fields {fields}."""
BOTTOM_UP = """An encyclopedia page is titled "{title}". If it names one visually recognisable cultural concept
(a dish, garment, building, artwork, symbol, festival, instrument, game, object or vehicle) tied to one
country or community, return JSON with fields {fields} plus "culture" (ISO 3166-1 alpha-2 code),
"category" (one of {categories}) and "is_cultural": true. Otherwise return {{"is_cultural": false}}."""


def slugify(text: str) -> str:
    s = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "_", s).strip("_") or "concept"


def build_concept(obj: dict, culture: str, category: str, source: str, taken: set[str]) -> tuple[dict | None, str | None]:
    """Turn model JSON into a catalog-format dict and check it with the catalog's own rules."""

    if culture not in COUNTRIES or COUNTRIES[culture][1] is None:
        return None, f"culture {culture!r} is not an ISO 3166-1 alpha-2 code with a UN region"
    cname, region, subregion = COUNTRIES[culture]
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        return None, "missing 'name'"
    cid = f"{slugify(name)}_{culture.lower()}"
    if cid in taken:
        return None, f"concept {cid!r} already exists"
    raw = {"id": cid, "name": name.strip(), "aliases": obj.get("aliases") or [], "culture": culture,
           "culture_name": cname, "region": region, "subregion": subregion, "category": category,
           "context": obj.get("context"), "features": obj.get("features"), "twins": [],
           "sources": [source], "generated": True}
    if isinstance(obj.get("kind"), str) and obj["kind"].strip():
        raw["kind"] = obj["kind"].strip()
    concept, problems = parse_concept(raw, "generated")
    if concept is not None:
        problems = concept_problems(concept)
    if problems:
        return None, problems[0].replace("generated: ", "")
    return concept.to_dict(), None


class ConceptStage:
    """Items: grid cells {culture, category} and/or corpus titles; record: one generated concept."""

    name = "concepts"
    upstream = None

    def __init__(self, backend: TextBackend, cultures: list[str] = (), categories: list[str] = (),
                 titles: list[str] = (), existing_ids: set[str] = frozenset(), max_attempts: int = 3,
                 items_per_shard: int = 16):
        self.backend, self.max_attempts, self.per_shard = backend, max_attempts, items_per_shard
        self.existing = set(existing_ids)
        self.items = [{"kind": "cell", "culture": c, "category": k} for c in sorted(cultures) for k in sorted(categories)]
        self.items += [{"kind": "title", "title": t} for t in sorted(set(titles))]
        for it in self.items:
            it["item_id"] = content_id("concept-item", it)

    def settings(self) -> dict:
        return {"backend": self.backend.settings(), "items": content_id(self.items, length=64),
                "max_attempts": self.max_attempts, "prompts": [SYSTEM, TOP_DOWN, BOTTOM_UP, FIELDS],
                "per_shard": self.per_shard}

    def plan(self, ctx: StageContext) -> list[list[Any]]:
        return chunk(self.items, self.per_shard)

    def _messages(self, it: dict) -> list[dict]:
        if it["kind"] == "cell":
            user = TOP_DOWN.format(category=it["category"], culture_name=COUNTRIES.get(it["culture"], (it["culture"],))[0],
                                   avoid="", fields=FIELDS)
        else:
            user = BOTTOM_UP.format(title=it["title"], fields=FIELDS, categories=", ".join(CATEGORIES))
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]

    def check(self, it: dict, text: str, taken: set[str]) -> tuple[dict | None, str | None]:
        obj, err = parse_json(text, dict)
        if err:
            return None, err
        if it["kind"] == "title":
            if obj.get("is_cultural") is False:
                return {"skip": True}, None
            culture, category = obj.get("culture", ""), obj.get("category", "")
            if category not in CATEGORIES:
                return None, f"category {category!r} not in {CATEGORIES}"
            source = f"generated by {self.backend.name} from title {it['title']!r}"
        else:
            culture, category = it["culture"], it["category"]
            source = f"generated by {self.backend.name} for {culture} x {category}"
        return build_concept(obj, str(culture).upper(), category, source, taken)

    def process_shard(self, index: int, items: list[dict], ctx: StageContext) -> ShardResult:
        return run_llm_items(self, items, ctx, task="concepts", taken=set(self.existing))


def run_llm_items(stage, items: list[dict], ctx: StageContext, task: str, taken: set[str]) -> ShardResult:
    """Ask, validate, retry, cache and quarantine for one shard of JSON-object items (concepts, twins)."""
    responses: dict[str, list[str]] = {}
    for it in items:
        p = ctx.work / f"{it['item_id']}.json"
        responses[it["item_id"]] = json.loads(p.read_text(encoding="utf-8"))["responses"] if p.exists() else []
    done: dict[str, dict] = {}
    errors: dict[str, list[str]] = {it["item_id"]: [] for it in items}
    for attempt in range(stage.max_attempts):
        pending = [it for it in items if it["item_id"] not in done]
        need = [it for it in pending if len(responses[it["item_id"]]) <= attempt]
        if need:
            answers = stage.backend.respond([LLMRequest(it["item_id"], stage._messages(it),
                                                        seed_from_id(f"{it['item_id']}:{attempt}"), task, it)
                                             for it in need])
            for it, a in zip(need, answers):
                responses[it["item_id"]].append(a)
                atomic_write_json(ctx.work / f"{it['item_id']}.json", {"responses": responses[it["item_id"]]})
        for it in pending:  # in item order, so id collisions resolve the same way in every run
            val, err = stage.check(it, responses[it["item_id"]][attempt], taken)
            if val is not None:
                done[it["item_id"]] = val
                if "id" in val:
                    taken.add(val["id"])
            else:
                errors[it["item_id"]].append(err)
    res = ShardResult()
    for it in items:
        val = done.get(it["item_id"])
        if val is None:
            res.quarantined.append({**it, "stage": task, "reason": errors[it["item_id"]][-1],
                                    "errors": errors[it["item_id"]], "last_response": responses[it["item_id"]][-1][:500]})
        elif val.get("skip"):
            res.rejected.append({**it, "reason": "model says the title is not a cultural concept"})
        else:
            res.records.append({**val, "item_id": it["item_id"]})
    return res
