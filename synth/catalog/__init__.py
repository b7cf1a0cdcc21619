"""The curated CulTwin concept catalog: YAML files of cultural concepts and their look-alike twins.

`load_catalog()` reads every `synth/catalog/data/*.yaml` (curated, hand-written facts) and validates
it; generated concepts (from LLM stages, `generated: true`) live in `synth/catalog/generated/` or a
run folder and are only read when asked for (`include_generated=True` or explicit paths), so they are
never merged into the curated catalog silently. Format: synth/catalog/FORMAT.md.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import yaml

from .regions import COUNTRIES, REGIONS
from .regions import SUBREGIONS
from .schema import (CATEGORIES, CATEGORY_NOUNS, Citation, Concept, Twin, _norm, concept_problems,
                     parse_concept)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "CATEGORIES", "DATA_DIR", "GENERATED_DIR", "FLOORS", "WORLD_CATALOG", "Catalog", "CatalogError", "Citation",
    "Concept",
    "Twin", "check_floors", "load_catalog", "validate",
]

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent / "data"
GENERATED_DIR = Path(__file__).resolve().parent / "generated"
# The offline twin world's concepts (synth/world/catalog.yaml): hand-written like the curated catalog, so
# held to the same rules (shared labels included) whenever it is loaded.
WORLD_CATALOG = Path(__file__).resolve().parent.parent / "world" / "catalog.yaml"

# What the shipped curated catalog must reach (issues 3 and 11): size, breadth, and at least
# `subregion_min` concepts in every UN M49 subregion.
FLOORS: dict[str, float] = {
    "concepts": 500, "twin_pairs": 150, "categories": 10, "cultures": 60, "region_share": 0.10,
    "subregion_min": 5,
}

_MAX_PROBLEMS_SHOWN = 25


class CatalogError(ValueError):
    """Raised when catalog files are invalid; `problems` holds every problem found."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        shown = "\n  - ".join(self.problems[:_MAX_PROBLEMS_SHOWN])
        more = len(self.problems) - _MAX_PROBLEMS_SHOWN
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"invalid catalog ({len(self.problems)} problem(s)); fix these and run "
                         f"`python -m synth.catalog validate`:\n  - {shown}{tail}")


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


_THE_NAMES = ("United ", "Republic", "Democratic", "Central African", "Dominican Republic")
_THE_SUFFIXES = ("Islands", "Netherlands", "Philippines", "Bahamas", "Maldives", "Gambia")


def _place(culture_name: str) -> str:
    if culture_name.startswith(_THE_NAMES) or culture_name.endswith(_THE_SUFFIXES):
        return f"the {culture_name}"
    return culture_name


@dataclass
class Catalog:
    """Concepts keyed by id, with twin-pair and grouping helpers."""

    concepts: dict[str, Concept] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.concepts)

    def __iter__(self):
        return iter(self.concepts.values())

    def __contains__(self, concept_id: object) -> bool:
        return concept_id in self.concepts

    def __getitem__(self, concept_id: str) -> Concept:
        try:
            return self.concepts[concept_id]
        except KeyError:
            raise KeyError(f"unknown concept id {concept_id!r} ({len(self.concepts)} in catalog)") from None

    def twin_pairs(self, include_weak: bool = False) -> list[tuple[str, str]]:
        """Each unordered twin pair once, as (smaller id, larger id), sorted.

        Only true look-alikes by default; `include_weak=True` adds the links marked
        `strength: weak` (kept for the record with their reason, see FORMAT.md).
        """
        pairs = {tuple(sorted((c.id, t.id))) for c in self.concepts.values()
                 for t in (c.twins + c.weak_twins if include_weak else c.twins)
                 if t.id in self.concepts}
        return sorted(pairs)  # type: ignore[arg-type]

    def weak_twin_pairs(self) -> list[tuple[str, str]]:
        """The pairs marked `strength: weak` only."""
        strong = set(self.twin_pairs())
        return [p for p in self.twin_pairs(include_weak=True) if p not in strong]

    def twins_of(self, concept_id: str) -> list[Concept]:
        """The (strong) twin concepts of one concept (those present in this catalog)."""
        return [self.concepts[t.id] for t in self[concept_id].twins if t.id in self.concepts]

    def by_category(self) -> dict[str, list[Concept]]:
        """Concepts grouped by category, categories in CATEGORIES order then any others."""
        groups: dict[str, list[Concept]] = {}
        for c in sorted(self.concepts.values(), key=lambda c: c.id):
            groups.setdefault(c.category, []).append(c)
        order = {name: i for i, name in enumerate(CATEGORIES)}
        return dict(sorted(groups.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))

    def filter(self, category: str | None = None, region: str | None = None,
               culture: str | None = None) -> "Catalog":
        """A sub-catalog; twin links to concepts filtered out stay on the concepts but no longer pair.

        `culture` matches any of a concept's cultures (a shared dish is found under each country).
        """
        keep = {cid: c for cid, c in self.concepts.items()
                if (category is None or c.category == category)
                and (region is None or c.region == region)
                and (culture is None or culture in c.cultures)}
        return Catalog(keep)

    def concept_prompt(self, concept_id: str) -> str:
        """The short name form used as a class prompt, e.g. 'a photo of gyoza, a Japanese dumpling'."""
        c = self[concept_id]
        noun = c.kind or CATEGORY_NOUNS.get(c.category, "thing")
        if c.demonym:
            desc = f"{c.demonym} {noun}"
            return f"a photo of {c.name}, {_article(desc)} {desc}"
        return f"a photo of {c.name}, {_article(noun)} {noun} from {_place(c.culture_name)}"

    def stats(self) -> dict:
        """Counts per category, region, subregion and culture, plus totals (JSON-serialisable)."""
        concepts = list(self.concepts.values())
        n = len(concepts)
        pairs = self.twin_pairs()
        cultures = Counter(c.culture for c in concepts)
        names: dict[str, Counter] = {}
        for c in concepts:
            names.setdefault(c.culture, Counter())[c.culture_name] += 1
        shared = Counter(code for c in concepts for code in c.cultures[1:])
        regions = Counter(c.region for c in concepts)
        subregions = Counter(c.subregion for c in concepts)
        pair_cats = Counter(self.concepts[a].category for a, _ in pairs)
        return {
            "totals": {
                "concepts": n, "twin_pairs": len(pairs), "categories": len({c.category for c in concepts}),
                "cultures": len(cultures), "regions": len(regions),
                "concepts_with_twins": sum(1 for c in concepts if c.twins),
                "generated": sum(1 for c in concepts if c.generated),
                "weak_twin_pairs": len(self.weak_twin_pairs()),
                "multi_culture_concepts": sum(1 for c in concepts if len(c.cultures) > 1),
                "subregion_min": min((subregions.get(s, 0) for s in SUBREGIONS), default=0),
            },
            "sources": {
                "with_source": sum(1 for c in concepts if c.sources),
                "with_2plus_sources": sum(1 for c in concepts if len(c.sources) >= 2),
                "with_url": sum(1 for c in concepts if any(s.startswith(("http://", "https://"))
                                                         for s in c.sources)),
                "with_read_source": sum(1 for c in concepts if c.read_sources),
            },
            "category": dict(sorted(Counter(c.category for c in concepts).items(),
                                    key=lambda kv: (-kv[1], kv[0]))),
            "twin_pairs_per_category": dict(sorted(pair_cats.items(), key=lambda kv: (-kv[1], kv[0]))),
            "region": {r: regions.get(r, 0) for r in REGIONS},
            "region_share": {r: round(regions.get(r, 0) / n, 4) if n else 0.0 for r in REGIONS},
            "subregion": dict(sorted({s: subregions.get(s, 0) for s in SUBREGIONS}.items(),
                                     key=lambda kv: (-kv[1], kv[0]))),
            # per primary culture code: the most used culture_name, every name used, the count,
            # and how many more concepts list the code as a secondary culture
            "culture": {code: {"name": names[code].most_common(1)[0][0],
                               "names": sorted(names[code]), "count": k,
                               "also_shared_by": shared.get(code, 0)}
                        for code, k in sorted(cultures.items(), key=lambda kv: (-kv[1], kv[0]))},
        }

    def to_frame(self) -> "pd.DataFrame":
        """One row per concept (list fields stay lists); pandas is imported only here."""
        import pandas as pd

        rows = []
        for c in self.concepts.values():
            row = c.to_dict()
            row["twin_ids"] = c.twin_ids
            row["twins"] = [{"id": t.id, "distinguishing": t.distinguishing} for t in c.twins]
            row["concept_prompt"] = self.concept_prompt(c.id)
            row["source_file"] = c.source_file
            rows.append(row)
        columns = ["id", "name", "aliases", "culture", "culture_name", "demonym", "kind", "region",
                   "subregion", "category", "context", "features", "twins", "twin_ids", "sources",
                   "generated", "concept_prompt", "source_file"]
        return pd.DataFrame(rows, columns=columns)


def validate(catalog: Catalog, shared_labels: bool = True) -> list[str]:
    """Every problem in a catalog (empty list when valid): field rules plus twin-link rules.

    shared_labels: also require that no two concepts share a name/alias unless both list it under
    `shared_aliases` with the reason (one thing under several names must be one concept).
    """
    problems: list[str] = []
    concepts = catalog.concepts
    for key, c in concepts.items():
        if key != c.id:
            problems.append(f"{c.source_file}: {c.id}: stored under a different key {key!r}")
        problems.extend(concept_problems(c))
    for c in concepts.values():
        label = f"{c.source_file or '<memory>'}: {c.id}"
        for t in [*c.twins, *c.weak_twins]:
            other = concepts.get(t.id)
            if other is None:
                problems.append(f"{label}: twin {t.id!r} does not exist in the catalog")
                continue
            common = [code for code in c.cultures if code in other.cultures]
            if common:
                problems.append(f"{label}: twin {t.id!r} has the same culture ({', '.join(common)}); "
                                "twins must come from different cultures")
            back = next((b for b in [*other.twins, *other.weak_twins] if b.id == c.id), None)
            if back is not None and back.strength != t.strength:
                problems.append(f"{label}: twin {t.id!r} is {t.strength} here but {back.strength} "
                                f"in {t.id!r}; mark both sides alike")
            if other.category != c.category:
                problems.append(f"{label}: twin {t.id!r} is category {other.category!r}, not "
                                f"{c.category!r}; twins must share a category")
            if back is None:
                problems.append(f"{label}: lists twin {t.id!r} but {t.id!r} "
                                f"({other.source_file}) does not list {c.id!r} back; add the "
                                "reverse link with its own distinguishing text")
    if shared_labels:
        problems.extend(_shared_label_problems(catalog))
    return problems


def _shared_label_problems(catalog: Catalog) -> list[str]:
    """Two concepts may share a name/alias only when each lists it in `shared_aliases` with why;
    otherwise it is one thing under several names (merge them: aliases + `cultures`)."""
    owners: dict[str, list[Concept]] = {}
    for c in catalog.concepts.values():
        for key in dict.fromkeys(_norm(x) for x in c.labels):
            owners.setdefault(key, []).append(c)
    out: list[str] = []
    for key, cs in sorted(owners.items()):
        if len(cs) < 2:
            continue
        ids = ", ".join(sorted(c.id for c in cs))
        for c in cs:
            if key not in {_norm(a) for a in c.shared_aliases}:
                out.append(f"{c.source_file or '<memory>'}: {c.id}: label {key!r} is also used by "
                           f"[{ids}]; if they are one thing, merge them into one concept (aliases "
                           "plus `cultures`), else list it under `shared_aliases` with the reason")
    return out


def check_floors(catalog: Catalog, floors: dict[str, float] | None = None) -> list[str]:
    """Where the catalog falls short of the size/coverage floors (empty list when it meets them)."""
    floors = FLOORS if floors is None else floors
    s = catalog.stats()
    out = [f"{key}: {s['totals'][key]} < required {int(floors[key])}"
           for key in ("concepts", "twin_pairs", "categories", "cultures")
           if key in floors and s["totals"][key] < floors[key]]
    if "subregion_min" in floors:
        out += [f"subregion {name}: {k} concepts < required {int(floors['subregion_min'])}"
                for name, k in s["subregion"].items() if k < floors["subregion_min"]]
    if "region_share" in floors:
        out += [f"region {r}: {share:.1%} of concepts < required {floors['region_share']:.0%}"
                for r, share in s["region_share"].items() if share < floors["region_share"]]
    return out


def _yaml_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted([*p.glob("*.yaml"), *p.glob("*.yml")]))
        elif p.is_file():
            files.append(p)
        else:
            raise CatalogError([f"{p}: no such file or folder"])
    return files


def _is_project_catalog(path: Path) -> bool:
    """A file of the curated catalog (synth/catalog/data/) or the offline world's catalog."""
    p = path.resolve()
    return p == WORLD_CATALOG or p.parent == DATA_DIR


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_catalog(paths: str | Path | Iterable[str | Path] | None = None,
                 include_generated: bool = False, shared_labels: bool | None = None) -> Catalog:
    """Read and validate catalog YAML files; raises CatalogError listing problems with file and id.

    paths: files and/or folders of `*.yaml` (default: the curated `synth/catalog/data/`).
    include_generated: also read `synth/catalog/generated/` (when paths is None) and accept entries
    marked `generated: true`; without it such entries are an error, so LLM output never slips into
    the curated catalog unnoticed.
    shared_labels: enforce the shared-label rule (see `validate`); default: on for the project's own
    hand-written catalogs (the curated one, paths=None, and the offline world's `WORLD_CATALOG`, alone or
    together), off for other files (a dataset's copy, generated concepts), which opt in with True.
    """
    if paths is None:
        roots: list[str | Path] = [DATA_DIR]
        if include_generated and GENERATED_DIR.is_dir():
            roots.append(GENERATED_DIR)
    elif isinstance(paths, (str, Path)):
        roots = [paths]
    else:
        roots = list(paths)
    files = _yaml_files(roots)
    if not files:
        raise CatalogError([f"no catalog YAML files found in {[str(r) for r in roots]}"])
    if shared_labels is None:
        shared_labels = all(_is_project_catalog(f) for f in files)
    problems: list[str] = []
    concepts: dict[str, Concept] = {}
    for path in files:
        where = _display(path)
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as exc:
            problems.append(f"{where}: not valid YAML: {exc}")
            continue
        if data is None:
            continue
        if not isinstance(data, list):
            problems.append(f"{where}: must be a YAML list of concepts, got {type(data).__name__}")
            continue
        for i, raw in enumerate(data):
            concept, errs = parse_concept(raw, f"{where}[{i}]" if not isinstance(raw, dict) else where)
            problems.extend(errs)
            if concept is None:
                continue
            if concept.generated and not include_generated:
                problems.append(f"{where}: {concept.id}: marked generated: true in a curated load; "
                                "keep generated concepts in synth/catalog/generated/ and load them "
                                "with include_generated=True")
            if concept.id in concepts:
                problems.append(f"{where}: {concept.id}: duplicate id (first defined in "
                                f"{concepts[concept.id].source_file}); ids must be unique across files")
                continue
            concepts[concept.id] = concept
    catalog = Catalog(concepts)
    problems.extend(validate(catalog, shared_labels=shared_labels))
    if problems:
        raise CatalogError(problems)
    log.info("loaded %d concepts (%d twin pairs) from %d file(s)", len(concepts),
             len(catalog.twin_pairs()), len(files))
    return catalog
