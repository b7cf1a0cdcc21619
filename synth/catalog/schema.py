"""Concept/Twin records and the per-concept field rules of the curated catalog (see FORMAT.md)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from .regions import COUNTRIES, REGIONS, SUBREGIONS

CATEGORIES: tuple[str, ...] = (
    "cuisine", "clothing", "art", "architecture", "symbol", "festival",
    "music", "games_sports", "everyday_objects", "transport",
)

# Noun used in concept prompts when a concept has no `kind` of its own.
CATEGORY_NOUNS: dict[str, str] = {
    "cuisine": "dish", "clothing": "garment", "art": "artwork", "architecture": "building",
    "symbol": "symbol", "festival": "festival", "music": "musical instrument",
    "games_sports": "game", "everyday_objects": "object", "transport": "vehicle",
}

ID_RE = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")
ISO_RE = re.compile(r"^[A-Z]{2}$")
COMMUNITY_RE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")

CONTEXT_MIN_WORDS = 10
CONTEXT_MAX_WORDS = 40

REQUIRED_STR = ("id", "name", "culture", "culture_name", "region", "subregion", "category", "context")
OPTIONAL_STR = ("demonym", "kind")
LIST_FIELDS = ("aliases", "features")
ALLOWED_KEYS = frozenset(REQUIRED_STR + OPTIONAL_STR + LIST_FIELDS
                         + ("sources", "twins", "generated", "cultures", "shared_aliases"))

# A twin link is `strong` (a true look-alike, the default) or `weak` (kept for the record, with the
# reason; excluded from Concept.twins and from Catalog.twin_pairs() unless asked for).
TWIN_STRENGTHS = ("strong", "weak")
_TWIN_KEYS = frozenset({"id", "distinguishing", "strength", "reason"})


@dataclass(frozen=True)
class Twin:
    """A link to a look-alike concept of another culture, with what tells them apart visually."""

    id: str
    distinguishing: str
    strength: str = "strong"
    reason: str | None = None  # why a weak link is weak (required when strength == "weak")

    @property
    def weak(self) -> bool:
        return self.strength == "weak"

    def to_dict(self) -> dict:
        out = {"id": self.id, "distinguishing": self.distinguishing}
        if self.weak:
            out.update(strength=self.strength, reason=self.reason)
        return out


# A source is either a plain note (legacy, e.g. "Wikipedia: Gyoza": not evidence that a page was read)
# or a mapping: {url, title, supports, status}. status "read" (the default) needs a URL and a
# `supports` text saying which facts the page supports; status "not read" records a page that could
# not be read (say so rather than cite a bare title).
SOURCE_STATUSES = ("read", "not read")
_SOURCE_KEYS = frozenset({"url", "title", "supports", "status"})


@dataclass(frozen=True)
class Citation:
    """One source of a concept's facts (see SOURCE_STATUSES)."""

    note: str | None = None       # a plain-string source (legacy)
    url: str | None = None
    title: str | None = None
    supports: str | None = None   # which of the concept's facts the page supports
    status: str = "read"

    @property
    def read(self) -> bool:
        """A page actually read: a URL, status read, and what it supports."""
        return self.note is None and self.status == "read" and bool(self.url) and bool(self.supports)

    @property
    def text(self) -> str:
        """Short display form (the URL, else the title, else the note)."""
        return self.note or self.url or self.title or ""

    def to_raw(self) -> str | dict:
        if self.note is not None:
            return self.note
        out: dict = {k: getattr(self, k) for k in ("url", "title", "supports") if getattr(self, k)}
        if self.status != "read":
            out["status"] = self.status
        return out


def parse_source(raw: object) -> tuple[Citation | None, str | None]:
    """One raw `sources` entry -> (Citation, None) or (None, problem text)."""
    if isinstance(raw, str):
        return (Citation(note=raw.strip()), None) if raw.strip() else (None, "a source is an empty string")
    if not isinstance(raw, dict):
        return None, f"a source must be a note string or a mapping {{url, supports}}, got {type(raw).__name__}"
    unknown = sorted(set(map(str, raw)) - _SOURCE_KEYS)
    if unknown:
        return None, f"source has unknown field(s) {unknown}; allowed: {sorted(_SOURCE_KEYS)}"
    if not all(isinstance(v, str) and v.strip() for v in raw.values()):
        return None, f"source fields must be non-empty strings, got {raw!r}"
    vals = {k: v.strip() for k, v in raw.items()}
    status = vals.get("status", "read")
    if status not in SOURCE_STATUSES:
        return None, f"source status must be one of {', '.join(map(repr, SOURCE_STATUSES))}, got {status!r}"
    url = vals.get("url")
    if url is not None and not url.startswith(("https://", "http://")):
        return None, f"source url must start with https:// (got {url!r})"
    if status == "read" and not (url and vals.get("supports")):
        return None, ("a source marked read needs a 'url' and a 'supports' text saying which facts "
                      "the page supports; if no page could be read, write status: not read")
    if status == "not read" and not (url or vals.get("title")):
        return None, "a source marked 'not read' needs a 'title' (or 'url') naming the page"
    return Citation(url=url, title=vals.get("title"), supports=vals.get("supports"), status=status), None


@dataclass
class Concept:
    """One culturally specific thing (a dish, a garment, a building...)."""

    id: str
    name: str
    culture: str
    culture_name: str
    region: str
    subregion: str
    category: str
    context: str
    features: list[str]
    aliases: list[str] = field(default_factory=list)
    twins: list[Twin] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    generated: bool = False
    demonym: str | None = None
    kind: str | None = None
    source_file: str = ""  # where it was loaded from (for error messages); not part of the data
    # Every culture that shares this one concept (primary `culture` first); `culture`,
    # `culture_name`, `region` and `subregion` always describe the primary one.
    cultures: list[str] = field(default_factory=list)
    # Weak twin links (little visual likeness), kept with their reason but out of `twins`, so every
    # consumer of `twins` / `twin_pairs()` sees true look-alikes only.
    weak_twins: list[Twin] = field(default_factory=list)
    # Labels (name or alias) this concept knowingly shares with another concept -> why that is right.
    shared_aliases: dict[str, str] = field(default_factory=dict)
    # The structured form of `sources` (which stays a list of display strings: URL, title or note).
    citations: list[Citation] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.cultures:
            self.cultures = [self.culture]
        if not self.citations and self.sources:
            self.citations = [Citation(note=s) for s in self.sources]

    @property
    def read_sources(self) -> list[Citation]:
        """Sources recorded as actually read (URL + what the page supports)."""
        return [c for c in self.citations if c.read]

    @property
    def twin_ids(self) -> list[str]:
        return [t.id for t in self.twins]

    @property
    def labels(self) -> list[str]:
        """The name and aliases (what a person might call it)."""
        return [self.name, *self.aliases]

    def to_dict(self) -> dict:
        """Plain dict in the YAML field order (without `source_file`)."""
        out: dict = {
            "id": self.id, "name": self.name, "aliases": list(self.aliases),
            "culture": self.culture, "culture_name": self.culture_name,
        }
        if self.cultures != [self.culture]:
            out["cultures"] = list(self.cultures)
        if self.shared_aliases:
            out["shared_aliases"] = dict(self.shared_aliases)
        if self.demonym:
            out["demonym"] = self.demonym
        if self.kind:
            out["kind"] = self.kind
        out.update({
            "region": self.region, "subregion": self.subregion, "category": self.category,
            "context": self.context, "features": list(self.features),
            "twins": [t.to_dict() for t in [*self.twins, *self.weak_twins]],
            "sources": [c.to_raw() for c in self.citations], "generated": self.generated,
        })
        return out


def _norm(label: str) -> str:
    """Comparison form of a name/alias: Unicode NFKC, case-folded, inner spaces collapsed."""
    return " ".join(unicodedata.normalize("NFKC", label).casefold().split())


def parse_concept(raw: object, where: str) -> tuple[Concept | None, list[str]]:
    """Type-check one raw YAML entry and build a Concept; returns (concept or None, problems).

    Only shape problems are reported here; value rules live in `concept_problems`.
    """
    if not isinstance(raw, dict):
        return None, [f"{where}: entry must be a mapping of fields, got {type(raw).__name__}"]
    cid = raw.get("id")
    label = f"{where}: {cid}" if isinstance(cid, str) and cid else f"{where}: <missing id>"
    problems: list[str] = []
    unknown = sorted(set(map(str, raw)) - ALLOWED_KEYS)
    if unknown:
        problems.append(f"{label}: unknown field(s) {unknown}; allowed: {sorted(ALLOWED_KEYS)}")
    values: dict = {}
    for key in REQUIRED_STR:
        val = raw.get(key)
        if val is None or (isinstance(val, str) and not val.strip()):
            problems.append(f"{label}: required field '{key}' is missing or empty")
        elif not isinstance(val, str):
            problems.append(f"{label}: field '{key}' must be a string, got {type(val).__name__}")
        else:
            values[key] = val.strip()
    for key in OPTIONAL_STR:
        val = raw.get(key)
        if val is not None and (not isinstance(val, str) or not val.strip()):
            problems.append(f"{label}: optional field '{key}' must be a non-empty string when given")
        elif val is not None:
            values[key] = val.strip()
    for key in LIST_FIELDS:
        val = raw.get(key, [] if key == "aliases" else None)
        if val is None:
            problems.append(f"{label}: required field '{key}' is missing (a list)")
        elif not isinstance(val, list) or not all(isinstance(v, str) and v.strip() for v in val):
            problems.append(f"{label}: field '{key}' must be a list of non-empty strings")
        else:
            values[key] = [v.strip() for v in val]
    sources = raw.get("sources")
    if sources is None:
        problems.append(f"{label}: required field 'sources' is missing (a list)")
    elif not isinstance(sources, list):
        problems.append(f"{label}: field 'sources' must be a list of notes or {{url, supports}} mappings")
    else:
        cites: list[Citation] = []
        for s in sources:
            cite, err = parse_source(s)
            if err:
                problems.append(f"{label}: {err}")
            else:
                cites.append(cite)
        values["citations"] = cites
        values["sources"] = [c.text for c in cites]
    cultures = raw.get("cultures")
    if cultures is not None:
        if not isinstance(cultures, list) or not cultures or not all(
                isinstance(v, str) and v.strip() for v in cultures):
            problems.append(f"{label}: field 'cultures' must be a non-empty list of culture codes "
                            "(primary `culture` first)")
        else:
            values["cultures"] = [v.strip() for v in cultures]
    shared = raw.get("shared_aliases")
    if shared is not None:
        if not isinstance(shared, dict) or not shared or not all(
                isinstance(k, str) and k.strip() and isinstance(v, str) and v.strip()
                for k, v in shared.items()):
            problems.append(f"{label}: field 'shared_aliases' must map each shared label to the "
                            "reason it is shared, e.g. {{'餃子': 'same characters name both'}}")
        else:
            values["shared_aliases"] = {k.strip(): v.strip() for k, v in shared.items()}
    twins_raw = raw.get("twins", [])
    twins: list[Twin] = []
    weak_twins: list[Twin] = []
    if twins_raw is None:
        twins_raw = []
    if not isinstance(twins_raw, list):
        problems.append(f"{label}: field 'twins' must be a list of {{id, distinguishing}}")
    else:
        for t in twins_raw:
            if (not isinstance(t, dict) or not {"id", "distinguishing"} <= set(t) <= _TWIN_KEYS
                    or not all(isinstance(t[k], str) and t[k].strip() for k in t)):
                problems.append(f"{label}: each twin needs a non-empty 'id' and 'distinguishing' "
                                f"text (optionally 'strength' and 'reason'), got {t!r}")
                continue
            strength = t.get("strength", "strong").strip()
            reason = t["reason"].strip() if "reason" in t else None
            if strength not in TWIN_STRENGTHS:
                problems.append(f"{label}: twin {t['id']!r}: strength must be one of "
                                f"{', '.join(TWIN_STRENGTHS)}, got {strength!r}")
                continue
            if strength == "weak" and not reason:
                problems.append(f"{label}: twin {t['id']!r} is marked weak without a 'reason'; "
                                "say why the likeness is weak")
                continue
            if strength == "strong" and reason:
                problems.append(f"{label}: twin {t['id']!r} has a 'reason' but is not marked "
                                "strength: weak")
                continue
            link = Twin(t["id"].strip(), t["distinguishing"].strip(), strength, reason)
            (weak_twins if link.weak else twins).append(link)
    generated = raw.get("generated", False)
    if not isinstance(generated, bool):
        problems.append(f"{label}: field 'generated' must be true or false")
        generated = False
    if problems:
        return None, problems
    return Concept(twins=twins, weak_twins=weak_twins, generated=generated, source_file=where,
                   **values), []


def concept_problems(c: Concept) -> list[str]:
    """Value rules of one concept on its own (codes, regions, category, context length...)."""
    label = f"{c.source_file or '<memory>'}: {c.id}"
    out: list[str] = []
    if not ID_RE.match(c.id):
        out.append(f"{label}: id must be a lower-case slug like 'gyoza' or 'jollof_rice'")
    if c.category not in CATEGORIES:
        out.append(f"{label}: unknown category {c.category!r}; valid: {', '.join(CATEGORIES)}")
    if c.region not in REGIONS:
        out.append(f"{label}: region {c.region!r} is not one of {', '.join(REGIONS)}")
    if c.cultures[0] != c.culture:
        out.append(f"{label}: cultures must list the primary culture {c.culture!r} first, "
                   f"got {c.cultures}")
    if len(set(c.cultures)) != len(c.cultures):
        out.append(f"{label}: cultures lists a code twice: {c.cultures}")
    for code in c.cultures[1:]:
        if not ((ISO_RE.match(code) and COUNTRIES.get(code, (None, None))[1])
                or COMMUNITY_RE.match(code)):
            out.append(f"{label}: cultures entry {code!r} is not an ISO 3166-1 alpha-2 code with a "
                       "UN M49 region or a lower-case community slug")
    labels = {_norm(x) for x in c.labels}
    for alias in c.shared_aliases:
        if _norm(alias) not in labels:
            out.append(f"{label}: shared_aliases names {alias!r}, which is not its name or an alias")
    if ISO_RE.match(c.culture):
        if c.culture not in COUNTRIES:
            out.append(f"{label}: culture {c.culture!r} is not an ISO 3166-1 alpha-2 code")
        else:
            name, region, subregion = COUNTRIES[c.culture]
            if region is None:
                out.append(f"{label}: culture {c.culture} ({name}) has no UN M49 region")
            elif (c.region, c.subregion) != (region, subregion):
                out.append(f"{label}: {c.culture} ({name}) is in {region}/{subregion} (UN M49), "
                           f"not {c.region}/{c.subregion}")
    elif COMMUNITY_RE.match(c.culture):
        if SUBREGIONS.get(c.subregion) != c.region:
            out.append(f"{label}: subregion {c.subregion!r} is not an M49 subregion of "
                       f"{c.region!r}; valid: {sorted(k for k, v in SUBREGIONS.items() if v == c.region)}")
    else:
        out.append(f"{label}: culture {c.culture!r} must be an upper-case ISO 3166-1 alpha-2 code "
                   "(e.g. JP) or a lower-case community slug (e.g. yoruba)")
    n_words = len(c.context.split())
    if not CONTEXT_MIN_WORDS <= n_words <= CONTEXT_MAX_WORDS:
        out.append(f"{label}: context has {n_words} words; write {CONTEXT_MIN_WORDS}-"
                   f"{CONTEXT_MAX_WORDS} words of cultural context")
    if not c.features:
        out.append(f"{label}: features is empty; list the key visual features")
    if not c.sources:
        out.append(f"{label}: sources is empty; note where the facts come from")
    seen: set[str] = set()
    for t in [*c.twins, *c.weak_twins]:
        if t.id == c.id:
            out.append(f"{label}: lists itself as a twin")
        if t.id in seen:
            out.append(f"{label}: lists twin {t.id!r} twice")
        seen.add(t.id)
    return out
