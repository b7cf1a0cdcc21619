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
from .schema import CATEGORIES, CATEGORY_NOUNS, Concept, Twin, concept_problems, parse_concept

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "CATEGORIES", "DATA_DIR", "GENERATED_DIR", "FLOORS", "Catalog", "CatalogError", "Concept",
    "Twin", "check_floors", "load_catalog", "validate",
]

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent / "data"
GENERATED_DIR = Path(__file__).resolve().parent / "generated"

# What the shipped curated catalog must reach (issue 3).
FLOORS: dict[str, float] = {
    "concepts": 300, "twin_pairs": 150, "categories": 10, "cultures": 60, "region_share": 0.10,
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

    def twin_pairs(self) -> list[tuple[str, str]]:
        """Each unordered twin pair once, as (smaller id, larger id), sorted."""
        pairs = {tuple(sorted((c.id, t.id))) for c in self.concepts.values() for t in c.twins
                 if t.id in self.concepts}
        return sorted(pairs)  # type: ignore[arg-type]

    def twins_of(self, concept_id: str) -> list[Concept]:
        """The twin concepts of one concept (those present in this catalog)."""
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
        """A sub-catalog; twin links to concepts filtered out stay on the concepts but no longer pair."""
        keep = {cid: c for cid, c in self.concepts.items()
                if (category is None or c.category == category)
                and (region is None or c.region == region)
                and (culture is None or c.culture == culture)}
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
        names = {c.culture: c.culture_name for c in concepts}
        regions = Counter(c.region for c in concepts)
        pair_cats = Counter(self.concepts[a].category for a, _ in pairs)
        return {
            "totals": {
                "concepts": n, "twin_pairs": len(pairs), "categories": len({c.category for c in concepts}),
                "cultures": len(cultures), "regions": len(regions),
                "concepts_with_twins": sum(1 for c in concepts if c.twins),
                "generated": sum(1 for c in concepts if c.generated),
            },
            "category": dict(sorted(Counter(c.category for c in concepts).items(),
                                    key=lambda kv: (-kv[1], kv[0]))),
            "twin_pairs_per_category": dict(sorted(pair_cats.items(), key=lambda kv: (-kv[1], kv[0]))),
            "region": {r: regions.get(r, 0) for r in REGIONS},
            "region_share": {r: round(regions.get(r, 0) / n, 4) if n else 0.0 for r in REGIONS},
            "subregion": dict(sorted(Counter(c.subregion for c in concepts).items(),
                                     key=lambda kv: (-kv[1], kv[0]))),
            "culture": {code: {"name": names[code], "count": k}
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


def validate(catalog: Catalog) -> list[str]:
    """Every problem in a catalog (empty list when valid): field rules plus twin-link rules."""
    problems: list[str] = []
    concepts = catalog.concepts
    for key, c in concepts.items():
        if key != c.id:
            problems.append(f"{c.source_file}: {c.id}: stored under a different key {key!r}")
        problems.extend(concept_problems(c))
    for c in concepts.values():
        label = f"{c.source_file or '<memory>'}: {c.id}"
        for t in c.twins:
            other = concepts.get(t.id)
            if other is None:
                problems.append(f"{label}: twin {t.id!r} does not exist in the catalog")
                continue
            if other.culture == c.culture:
                problems.append(f"{label}: twin {t.id!r} has the same culture ({c.culture}); "
                                "twins must come from different cultures")
            if other.category != c.category:
                problems.append(f"{label}: twin {t.id!r} is category {other.category!r}, not "
                                f"{c.category!r}; twins must share a category")
            if c.id not in other.twin_ids:
                problems.append(f"{label}: lists twin {t.id!r} but {t.id!r} "
                                f"({other.source_file}) does not list {c.id!r} back; add the "
                                "reverse link with its own distinguishing text")
    return problems


def check_floors(catalog: Catalog, floors: dict[str, float] | None = None) -> list[str]:
    """Where the catalog falls short of the size/coverage floors (empty list when it meets them)."""
    floors = FLOORS if floors is None else floors
    s = catalog.stats()
    out = [f"{key}: {s['totals'][key]} < required {int(floors[key])}"
           for key in ("concepts", "twin_pairs", "categories", "cultures")
           if key in floors and s["totals"][key] < floors[key]]
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


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_catalog(paths: str | Path | Iterable[str | Path] | None = None,
                 include_generated: bool = False) -> Catalog:
    """Read and validate catalog YAML files; raises CatalogError listing problems with file and id.

    paths: files and/or folders of `*.yaml` (default: the curated `synth/catalog/data/`).
    include_generated: also read `synth/catalog/generated/` (when paths is None) and accept entries
    marked `generated: true`; without it such entries are an error, so LLM output never slips into
    the curated catalog unnoticed.
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
    problems.extend(validate(catalog))
    if problems:
        raise CatalogError(problems)
    log.info("loaded %d concepts (%d twin pairs) from %d file(s)", len(concepts),
             len(catalog.twin_pairs()), len(files))
    return catalog
