"""The demo's logic as plain functions of `DemoServices` (no gradio import: tested directly).

Each public handler returns plain data (dicts, lists of (path, caption), pandas frames, plotly
figures, markdown). Bad input raises `DemoInputError`; the UI layer turns it into a message.
"""
from __future__ import annotations

import hashlib
import html
import logging
import math
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cultureclip.backbone import hub_reachable
from cultureclip.fileio import atomic_write_bytes
from demo.live_eval import when
from eval_suite import figures
from eval_suite import tables as T
from eval_suite.confusions import atlas_labels, col
from eval_suite.results import model_tag, read_result

from .blends import quantize_alpha
from .config import BlendNotReady, ServiceError
from .dataset import ConceptInfo
from .services import DemoServices
from .validation import MAX_LABELS, DemoInputError, clean_int, clean_query, load_image, parse_labels, scrub_paths

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import plotly.graph_objects as go
    import torch

logger = logging.getLogger(__name__)

ALL = "All"
TYPED_TEMPLATE = "a photo of {}."
MAX_TOP_K = 20


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]#.!|~<>$&:]|^[-+=])")


def _md(text: str) -> str:
    """User or data text shown literally in markdown: every markdown/HTML punctuation character is
    backslash-escaped, so no link, autolink (`https://`, `www.`), emphasis, HTML or `$$` maths survives
    (the message components also render no LaTeX)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


# =================================================================================================
# Recognize
# =================================================================================================


@dataclass
class Candidates:
    """Candidate labels: what is displayed, the text the model embeds, and the concept id if known."""

    display: list[str]
    prompts: list[str]
    concept_ids: list[str | None]
    notes: list[str] = field(default_factory=list)
    typed: list[bool] = field(default_factory=list)  # per label: the visitor's own (not from the catalog)

    def is_typed(self, j: int) -> bool:
        return self.typed[j] if self.typed else self.concept_ids[j] is None

    def subset(self, keep: Sequence[int]) -> "Candidates":
        return Candidates([self.display[j] for j in keep], [self.prompts[j] for j in keep],
                          [self.concept_ids[j] for j in keep], list(self.notes),
                          [self.is_typed(j) for j in keep])


def shown_spec(spec: str) -> str:
    """A model spec as a visitor may see it (page, CSV): a local folder by its last two parts, never the
    server's absolute path; hub ids and open_clip tags as they are."""
    spec = str(spec)
    if Path(spec).is_absolute() or Path(spec).is_dir():
        return "/".join(Path(spec).parts[-2:])
    return scrub_paths(spec)


def filter_choices(services: DemoServices) -> dict[str, list[str]]:
    """Dropdown choices for the catalog filters (each list starts with 'All')."""
    cs = services.concepts().values()
    return {
        "category": [ALL] + sorted({c.category for c in cs}),
        "region": [ALL] + sorted({c.region for c in cs}),
        "culture": [ALL] + sorted({c.culture_name for c in cs}),
    }


def _filtered(services: DemoServices, category: str | None, region: str | None, culture: str | None) -> list[ConceptInfo]:
    def ok(v: str, want: str | None) -> bool:
        return not want or want == ALL or v == want

    return [c for c in sorted(services.concepts().values(), key=lambda c: c.name.casefold())
            if ok(c.category, category) and ok(c.region, region) and ok(c.culture_name, culture)]


def _display(c: ConceptInfo) -> str:
    return f"{c.name} ({c.culture_name})"


def build_candidates(
    services: DemoServices,
    typed: str | None,
    use_catalog: bool = True,
    category: str | None = ALL,
    region: str | None = ALL,
    culture: str | None = ALL,
) -> Candidates:
    """Catalog concepts passing the filters (embedded with their concept prompt) + typed labels.

    A typed label that names a known concept is mapped to it (so twin flags work for typed labels)."""
    names: dict[str, ConceptInfo] = {}
    for c in services.concepts().values():
        names.setdefault(c.name.casefold(), c)
        names.setdefault(_display(c).casefold(), c)
    raw: list[str] = []
    if use_catalog:  # the operator's catalog is used whole, however large; only a visitor's typed labels are capped
        raw += [_display(c) for c in _filtered(services, category, region, culture)]
    n_catalog = len(raw)
    notes: list[str] = []
    own: set[str] = set()
    if typed and typed.strip():
        parsed = parse_labels(typed)
        raw += parsed.labels
        notes += parsed.notes
        own = {label.casefold() for label in parsed.labels}
    if not raw:
        if use_catalog and services.concepts():
            raise DemoInputError("No catalog concept matches these filters and no labels were typed: widen the filters or type labels.")
        raise DemoInputError("No candidate labels: type labels separated by commas (at least two, to compare).")
    cleaned = parse_labels(raw, max_labels=n_catalog + MAX_LABELS)
    cleaned.notes = [n for n in notes + cleaned.notes if not n.startswith("Only one label")] + \
        [n for n in cleaned.notes if n.startswith("Only one label")]
    prompts, ids = [], []
    for label in cleaned.labels:
        c = names.get(label.casefold())
        prompts.append(c.prompt if c else TYPED_TEMPLATE.format(label))
        ids.append(c.id if c else None)
    return Candidates(cleaned.labels, prompts, ids, cleaned.notes, [label.casefold() in own for label in cleaned.labels])


def _while_loading(services: DemoServices, cand: Candidates) -> tuple[Candidates, str]:
    """While the full catalog label banks are still embedding (the first minute of a cold start), Recognize ranks
    the catalog labels of the first, small bank (the examples' concepts and their twins) plus the visitor's own,
    and says so. Returns (candidates to rank, the sentence; empty when nothing was left out)."""
    starter = services.starter_prompts()
    if starter is None:
        return cand, ""
    catalog = [j for j in range(len(cand.prompts)) if not cand.is_typed(j)]
    keep = [j for j in range(len(cand.prompts)) if cand.is_typed(j) or cand.prompts[j] in starter]
    if len(keep) == len(cand.prompts):
        return cand, ""
    ranked = len(keep) - sum(cand.is_typed(j) for j in keep)
    if not keep:
        raise DemoInputError(f"The catalog's {len(catalog):,} labels are still loading (about a minute after a "
                             "start) and none of these is ready yet: try again shortly, or type your own labels.")
    own = len(keep) - ranked
    mine = f" and your {own:,} own label{'s' * (own != 1)}" if own else ""
    note = (f"Ranked over {ranked:,} of the catalog's {len(catalog):,} labels (the examples' concepts and their "
            f"twins){mine}; the other {len(catalog) - ranked:,} are still loading — ask again in a minute to rank them all.")
    return cand.subset(keep), note


@dataclass
class Pick:
    """A model's top answer: the label shown, its probability and the catalog concept it names (if any)."""

    label: str
    prob: float
    concept_id: str | None


@dataclass
class ClassifyResult:
    base: dict[str, float]  # top-k label -> probability (for gr.Label)
    tuned: dict[str, float]
    message: str  # markdown: twin flag, notes, or the error
    ok: bool = True
    picks: tuple[Pick, Pick] | None = None  # (base, tuned) top answers
    tuned_name: str = ""  # CultureCLIP, or the WiSE-FT blend it shows
    notes: str = ""  # markdown: the candidate count and notes, without the twin flag (the verdicts say it)


def _twin_flag(services: DemoServices, cand: Candidates, base_top: int, tuned_top: int, tuned_name: str) -> str:
    cs = services.concepts()
    a, b = cand.concept_ids[base_top], cand.concept_ids[tuned_top]
    base_name = services.config.base_name
    if base_top == tuned_top:
        return f"✅ {base_name} and {tuned_name} agree: **{_md(cand.display[base_top])}**."
    msg = (f"The models disagree: {base_name} says **{_md(cand.display[base_top])}**, "
           f"{tuned_name} says **{_md(cand.display[tuned_top])}**.")
    if a and b and b in cs[a].twins:
        why = cs[b].twins.get(a) or cs[a].twins.get(b) or ""
        msg = ("⚠️ **Cultural twins!** " + msg + " These two are look-alike concepts from different cultures"
               + (f": {_md(why)}" if why else ".") + "")
    return msg


def classify_batch(
    services: DemoServices,
    images: Sequence[Any],
    candidates: Sequence[Candidates],
    alphas: Sequence[float],
    top_ks: Sequence[int],
) -> list[ClassifyResult]:
    """Classify several requests; requests sharing candidates and alpha share one image forward per model.

    The label bank of every (model, candidate list) is embedded once and cached by the Embedder."""
    n = len(images)
    results: list[ClassifyResult | None] = [None] * n
    loaded: list[Any] = [None] * n
    ks = [5] * n
    for i, im in enumerate(images):
        try:
            ks[i] = clean_int(5 if top_ks[i] is None else top_ks[i], "Top-k", 1, MAX_TOP_K)
            loaded[i] = load_image(im)
        except DemoInputError as e:
            results[i] = ClassifyResult({}, {}, f"❌ {e}", ok=False)
    wise_ok, wise_note = services.wise_available()  # when the two models cannot be blended, both answer at α=1
    wise_refused: set[int] = set()
    groups: dict[tuple, list[int]] = {}
    for i in range(n):
        if results[i] is None:
            alpha = quantize_alpha(alphas[i]) if wise_ok else 1.0
            if not wise_ok and quantize_alpha(alphas[i]) < 1.0:
                wise_refused.add(i)
            groups.setdefault((tuple(candidates[i].prompts), alpha), []).append(i)
    for (prompts, alpha), idx in groups.items():
        try:
            cand, loading = _while_loading(services, candidates[idx[0]])
        except DemoInputError as e:
            for i in idx:
                results[i] = ClassifyResult({}, {}, f"⏳ {e}", ok=False)
            continue
        prompts = tuple(cand.prompts)
        base = services.embedder("base")
        preparing = ""  # the blend's label banks are still being embedded in the background: base answers alone
        try:
            tuned = services.blended(alpha, list(prompts))
        except BlendNotReady as e:
            tuned, preparing = None, str(e)
        except ServiceError as e:
            for i in idx:
                results[i] = ClassifyResult({}, {}, f"❌ {e}", ok=False)
            continue
        imgs = [loaded[i] for i in idx]
        probs = {}
        for key, emb in (("base", base), ("tuned", tuned)):
            if emb is None:
                continue
            bank = emb.label_bank(list(prompts), ("{}",))
            probs[key] = emb.zero_shot(emb.embed_images(imgs), bank)  # (n_group, L)
        if preparing:
            for row, i in enumerate(idx):
                vals, ids = probs["base"][row].topk(min(ks[i], len(prompts)))
                results[i] = ClassifyResult({cand.display[j]: round(float(v), 6) for v, j in zip(vals.tolist(), ids.tolist())},
                                            {}, preparing + (f"<br>⏳ {_md(loading)}" if loading else ""))
            continue
        tuned_name = services.config.tuned_name if alpha >= 1.0 else f"{services.config.tuned_name} (WiSE-FT α={alpha:.1f})"
        for row, i in enumerate(idx):
            k = min(ks[i], len(prompts))
            out = {}
            for key in ("base", "tuned"):
                vals, ids = probs[key][row].topk(k)
                out[key] = {cand.display[j]: round(float(v), 6) for v, j in zip(vals.tolist(), ids.tolist())}
            bt = int(probs["base"][row].argmax())
            tt = int(probs["tuned"][row].argmax())
            notes = "".join(f"<br>ℹ️ {_md(x)}" for x in cand.notes + ([wise_note] if i in wise_refused else []))
            count = f"⏳ {_md(loading)}" if loading else f"{len(prompts):,} candidate labels."  # the note says how many
            msg = _twin_flag(services, cand, bt, tt, tuned_name) + f"<br>{count}" + notes
            picks = tuple(Pick(cand.display[j], float(probs[key][row][j]), cand.concept_ids[j])
                          for key, j in (("base", bt), ("tuned", tt)))
            results[i] = ClassifyResult(out["base"], out["tuned"], msg, picks=picks, tuned_name=tuned_name,  # type: ignore[arg-type]
                                        notes=count + notes)
    return [r for r in results if r is not None]


def tuned_panel_name(services: DemoServices, alpha: Any) -> str:
    """What the right-hand panel shows: CultureCLIP, or the WiSE-FT blend at `alpha` when one is possible
    (when it is not, CultureCLIP answers at α=1 and the panel says so by its name)."""
    cfg = services.config
    q = quantize_alpha(alpha)
    if q < 1.0 and services.wise_available()[0]:
        return f"WiSE-FT α={q:.1f} ({cfg.base_name} ↔ {cfg.tuned_name})"
    return cfg.tuned_name


def concept_of_label(services: DemoServices, label: str | None) -> ConceptInfo | None:
    """The catalog concept a label names ("flag of Chad (Chad)" or "flag of Chad"), else None."""
    if not label or not str(label).strip():
        return None
    want = " ".join(str(label).split()).casefold()
    for c in services.concepts().values():
        if want in (_display(c).casefold(), c.name.casefold(), c.id.casefold()):
            return c
    return None


def _h(text: Any) -> str:
    # `$` and `{` too: gr.HTML fills a template, and data must never read as one
    return html.escape(" ".join(str(text).split()), quote=True).replace("$", "&#36;").replace("{", "&#123;")


def _cues(services: DemoServices, a: str, b: str) -> str:
    """HTML: how to tell twins `a` and `b` apart (the catalog's distinguishing text, each direction once)."""
    cs = services.concepts()
    ca, cb = cs[a], cs[b]
    seen, lines = set(), []
    for x, y in ((ca, cb), (cb, ca)):
        cue = x.twins.get(y.id, "")
        if cue and cue not in seen:
            seen.add(cue)
            lines.append(f"<li><b>{_h(x.name)}</b> ({_h(x.culture_name)}): {_h(cue)}</li>")
        feats = [f for f in x.features[:2] if f not in seen]
        if feats and not cue:
            lines.append(f"<li><b>{_h(x.name)}</b> ({_h(x.culture_name)}): {_h('; '.join(feats))}</li>")
    if not lines:
        return ""
    return (f'<div class="cues" id="twin-cues"><b>How to tell {_h(ca.name)} from {_h(cb.name)}</b>'
            f"<ul>{''.join(lines)}</ul></div>")


def _percent(p: float) -> str:
    """A probability as people read it: 57%, 3.2%, 0.4%, <0.1% (never a bare "0%" for a top answer)."""
    if p >= 0.095:
        return f"{p:.0%}"
    return f"{p:.1%}" if p >= 0.001 else "<0.1%"


def verdicts_html(services: DemoServices, result: ClassifyResult, truth: str | None = None) -> str:
    """The answer panel: each model's top answer with a verdict against the true concept when it is known
    (right / wrong / took it for its twin, naming the twin), and the cues that tell the twins apart when
    the models disagree on a twin pair. HTML; every text from data or the user is escaped."""
    if not result.ok or result.picks is None:
        return ""
    cs = services.concepts()
    true_c = concept_of_label(services, truth)
    cfg = services.config
    cards = []
    for pick, name, spec in zip(result.picks, (cfg.base_name, result.tuned_name or cfg.tuned_name),
                                (cfg.base, cfg.tuned)):
        if true_c is None:
            kind, tag = "unknown", "true concept unknown (your own image)"
        elif pick.concept_id == true_c.id:
            kind, tag = "right", "✓ right"
        elif pick.concept_id is not None and pick.concept_id in true_c.twins:
            kind, tag = "twin", f"✗ took it for its twin, {cs[pick.concept_id].name}"
        else:
            kind, tag = "wrong", "✗ wrong"
        cards.append(
            f'<div class="verdict {kind}" data-verdict="{kind}">'
            f'<div class="who" title="{_h(spec)}">{_h(name)}</div>'
            f'<div class="answer">{_h(pick.label)} <span class="prob">{_percent(pick.prob)}</span></div>'
            f'<div class="tag">{_h(tag)}</div></div>')
    head = ""
    if true_c is not None:
        head = f'<div class="truth">True concept: <b>{_h(_display(true_c))}</b></div>'
    a, b = result.picks[0].concept_id, result.picks[1].concept_id
    cues = ""
    if a and b and a != b and a in cs and b in cs and (b in cs[a].twins or a in cs[b].twins):
        cues = _cues(services, a, b)
    elif true_c is not None and any(p.concept_id in true_c.twins for p in result.picks if p.concept_id):
        twin = next(p.concept_id for p in result.picks if p.concept_id in true_c.twins)
        cues = _cues(services, true_c.id, twin)  # type: ignore[arg-type]
    return f'<div id="verdicts">{head}<div class="verdict-row">{"".join(cards)}</div>{cues}</div>'


def classify(
    services: DemoServices,
    image: Any,
    typed: str | None = "",
    use_catalog: bool = True,
    category: str | None = ALL,
    region: str | None = ALL,
    culture: str | None = ALL,
    alpha: float = 1.0,
    top_k: int = 5,
) -> ClassifyResult:
    """One image: top-k of the base model and CultureCLIP (WiSE-FT blended at `alpha`) side by side."""
    try:
        cand = build_candidates(services, typed, use_catalog, category, region, culture)
    except DemoInputError as e:
        return ClassifyResult({}, {}, f"❌ {e}", ok=False)
    return classify_batch(services, [image], [cand], [alpha], [top_k])[0]


# =================================================================================================
# Twin explorer
# =================================================================================================


def pair_value(a: str, b: str) -> str:
    return f"{a}|{b}"


def search_pairs(services: DemoServices, query: str | None = "", category: str | None = ALL,
                 culture: str | None = ALL, limit: int = 500) -> list[tuple[str, str]]:
    """(label, value) choices of twin pairs whose names/cultures/category match the filters."""
    cs = services.concepts()
    q = (query or "").strip().casefold()
    out = []
    for a, b in (services.image_pairs() if services.has_dataset else services.twin_pairs()):
        ca, cb = cs[a], cs[b]
        if category and category != ALL and ca.category != category:
            continue
        if culture and culture != ALL and culture not in (ca.culture_name, cb.culture_name):
            continue
        hay = " ".join([ca.name, cb.name, ca.culture_name, cb.culture_name, ca.category, ca.id, cb.id]).casefold()
        if q and q not in hay:
            continue
        out.append((f"{ca.name} ({ca.culture_name}) ↔ {cb.name} ({cb.culture_name}) · {ca.category}", pair_value(a, b)))
    return out[:limit]


@dataclass
class PairView:
    info: str  # markdown: names, cultures, context, distinguishing features
    gallery_a: list[tuple[str, str]]  # (image path inside the dataset folder, caption)
    gallery_b: list[tuple[str, str]]
    similarity: Any  # plotly figure: per model, 2 prompts x N images
    confusion: list[tuple[str, str]]  # images the base model gives to the twin
    confusion_note: str
    scatter: Any = None  # eval_suite.figures.twin_scatter of the pair's images


def _pair_ids(services: DemoServices, value: str | None) -> tuple[str, str]:
    if not services.has_dataset:
        raise DemoInputError("No dataset is configured, so there are no twin images to show (start the app with --dataset).")
    if not value or "|" not in str(value):
        raise DemoInputError("Pick a twin pair from the list (search by name, culture or category).")
    a, _, b = str(value).partition("|")
    cs = services.concepts()
    if a not in cs or b not in cs or b not in cs[a].twins:
        raise DemoInputError(f"Unknown twin pair {value!r}: pick one from the list.")
    return a, b


def _rows_of(services: DemoServices, concept_id: str):
    df = services.manifest()
    return df.index[df["concept_id"] == concept_id]


def _pair_scores(services: DemoServices, which: str, a: str, b: str, rows) -> "torch.Tensor":
    """(2, N) cosine similarity of the pair's prompts (a, b) to the images at manifest `rows`."""
    feats = services.image_index(which)
    ids, bank = services.concept_bank(which)
    pos = {c: i for i, c in enumerate(ids)}
    rows = [r for r in rows if r < feats.shape[0]]
    return bank[[pos[a], pos[b]]] @ feats[rows].T


@dataclass
class _PairBasics:
    """What the twin explorer shows for a pair without the dataset index: names, text and images."""

    a: str
    b: str
    ca: ConceptInfo
    cb: ConceptInfo
    rows_a: list
    rows_b: list
    info: str
    gallery_a: list[tuple[str, str]]
    gallery_b: list[tuple[str, str]]


def _pair_basics(services: DemoServices, value: str | None, n_per_side: int) -> _PairBasics:
    a, b = _pair_ids(services, value)
    cs = services.concepts()
    ca, cb = cs[a], cs[b]
    df = services.manifest()
    n_index = min(len(df), services.config.max_index_images)
    rows_a = [r for r in _rows_of(services, a) if r < n_index]
    rows_b = [r for r in _rows_of(services, b) if r < n_index]

    def gallery(rows, c):
        return [(df.at[r, "abs_path"], f"{c.name}: {df.at[r, 'caption']}") for r in rows[:n_per_side]]

    def side(c: ConceptInfo, other: ConceptInfo) -> str:
        feats = "".join(f"\n  - {_md(f)}" for f in c.features[:5])
        lines = [f"### {_md(c.name)} · {_md(c.culture_name)}", f"*{_md(c.category)} · {_md(c.region)}*"]
        if c.context:
            lines.append(_md(c.context))
        if c.twins.get(other.id):
            lines.append(f"**How to tell it from {_md(other.name)}:** {_md(c.twins[other.id])}")
        if feats:
            lines.append("**Key features:**" + feats)
        return "\n\n".join(lines)

    info = side(ca, cb) + "\n\n---\n\n" + side(cb, ca)
    return _PairBasics(a, b, ca, cb, rows_a, rows_b, info, gallery(rows_a, ca), gallery(rows_b, cb))


INDEX_PENDING = "⏳ "  # starts the note of a pair shown before the dataset index is ready


def pair_preview(services: DemoServices, value: str | None, n_per_side: int = 4) -> PairView:
    """The twin explorer's view of a pair while the dataset images are still being embedded: the text and
    images (they need no model), no similarity figures, and the index progress as the note. The browser
    shows it instead of an error and fills in the rest when the index is ready (`pair_view`)."""
    p = _pair_basics(services, value, n_per_side)
    status = services.index.status()
    if services.wait_index(0):  # the build has ended, so it failed: the status says why
        note = f"❌ {status}"
    else:
        note = INDEX_PENDING + status.replace("Try again in a moment.", "The similarity panels fill in by "
                                              "themselves when it is done.")
    return PairView(p.info, p.gallery_a, p.gallery_b, None, [], note, None)


def pair_view(services: DemoServices, value: str | None, n_per_side: int = 4) -> PairView:
    """Everything the twin explorer shows for one pair (IndexNotReady while the dataset index is built)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    p = _pair_basics(services, value, n_per_side)
    a, b, ca, cb, rows_a, rows_b, info = p.a, p.b, p.ca, p.cb, p.rows_a, p.rows_b, p.info
    df = services.manifest()
    shown = rows_a[:n_per_side] + rows_b[:n_per_side]
    names = [services.config.base_name, services.config.tuned_name]
    fig = make_subplots(rows=1, cols=2, subplot_titles=names, horizontal_spacing=0.12)
    # full names (no truncation: "flag of Slovakia" and "flag of Slovenia" share their first 10 characters)
    xlab = [f"{ca.name} #{i + 1}" for i in range(len(rows_a[:n_per_side]))] + \
           [f"{cb.name} #{i + 1}" for i in range(len(rows_b[:n_per_side]))]
    ylab = [f"“{ca.name}”", f"“{cb.name}”"]
    all_rows = rows_a + rows_b
    scores = {}
    for col, which in enumerate(("base", "tuned"), start=1):
        s_all = _pair_scores(services, which, a, b, all_rows)  # (2, N_all)
        scores[which] = s_all
        z = s_all[:, : len(rows_a[:n_per_side])].tolist()
        zb = s_all[:, len(rows_a) : len(rows_a) + len(rows_b[:n_per_side])].tolist()
        z = [za + zz for za, zz in zip(z, zb)]
        fig.add_trace(go.Heatmap(z=z, x=xlab, y=ylab, coloraxis="coloraxis",  # one colour scale for both panels
                                 texttemplate="%{z:.2f}", hovertemplate="%{y} vs %{x}: %{z:.3f}<extra></extra>"),
                      row=1, col=col)
    fig.update_layout(title="Cosine similarity: concept prompts (rows) vs the pair's images (columns)",
                      coloraxis=dict(colorscale="Viridis", colorbar=dict(title="cosine")),
                      height=380, margin=dict(l=10, r=10, t=70, b=10))
    fig.update_xaxes(tickangle=-35, automargin=True)
    if not shown:
        fig.add_annotation(text="no images of this pair in the dataset", showarrow=False)

    # confusion gallery: images the base model gives to the twin (own-vs-twin prompt), fixed by CultureCLIP?
    own = [0] * len(rows_a) + [1] * len(rows_b)
    conf = []
    fixed = 0
    points = []
    for j, r in enumerate(all_rows):
        o = own[j]
        s_b, s_t = scores["base"][:, j], scores["tuned"][:, j]
        for which, s in (("base", s_b), ("tuned", s_t)):
            points.append({"model": names[0] if which == "base" else names[1], "sim_own": float(s[o]),
                           "sim_twin": float(s[1 - o]), "concept": (ca, cb)[o].name,
                           "twin": (ca, cb)[1 - o].name, "image_id": str(df.at[r, "image_id"])})
        if float(s_b[1 - o]) > float(s_b[o]):
            ok = float(s_t[o]) > float(s_t[1 - o])
            fixed += ok
            mine, twin = (ca, cb)[o], (ca, cb)[1 - o]
            verdict = f"✓ {names[1]} right" if ok else f"✗ {names[1]} also wrong"
            conf.append((df.at[r, "abs_path"], f"{verdict} · {mine.name}, taken for {twin.name}"))  # verdict first
    total = len(all_rows)
    if total == 0:
        note = "No images of this pair in the dataset."
    elif conf:
        note = (f"{names[0]} gives **{len(conf)} of {total}** images of this pair to the twin; "
                f"{names[1]} fixes **{fixed}** of them.")
    else:
        note = f"{names[0]} assigns all {total} images of this pair to the right side of the pair."
    scatter = None
    if points:
        try:
            import pandas as pd

            from eval_suite.figures import twin_scatter

            scatter = twin_scatter(pd.DataFrame(points), title=f"{ca.name} vs {cb.name}: own vs twin similarity")
        except Exception as e:  # noqa: BLE001 - the scatter is an extra
            logger.warning("twin scatter unavailable: %s", e)
    return PairView(info, p.gallery_a, p.gallery_b, fig, conf[:24], note, scatter)


def confusion_table(services: DemoServices) -> "pd.DataFrame":
    """Per twin pair: how often each model prefers the twin's prompt over the own one (dataset images).

    Columns: pair, category, n_images, base_confusion, tuned_confusion (fractions), value (pair id).
    Computed once per services object (kept on it, so it goes when the services go)."""
    if not services.has_dataset:
        raise DemoInputError("No dataset is configured (start the app with --dataset).")
    for which in ("base", "tuned"):
        services.image_index(which)  # not ready yet: IndexNotReady, before taking the cache's lock
    return services.cached("confusion_table", lambda: _confusion_table(services))


def _confusion_table(services: DemoServices) -> "pd.DataFrame":
    import pandas as pd
    df = services.manifest()
    cs = services.concepts()
    n = min(len(df), services.config.max_index_images)
    members = {c: list(ix) for c, ix in df.iloc[:n].groupby("concept_id", sort=False).indices.items()}
    rates = {}
    for which in ("base", "tuned"):
        feats = services.image_index(which)
        ids, bank = services.concept_bank(which)
        pos = {c: i for i, c in enumerate(ids)}
        sims = feats @ bank.T  # (N, C)
        rates[which] = (sims, pos)
    rows = []
    for a, b in services.image_pairs():
        idx_a, idx_b = members.get(a, []), members.get(b, [])
        if not idx_a and not idx_b:
            continue
        rec = {"pair": f"{cs[a].name} ↔ {cs[b].name}", "category": cs[a].category,
               "cultures": f"{cs[a].culture_name} / {cs[b].culture_name}", "n_images": len(idx_a) + len(idx_b)}
        for which, (sims, pos) in rates.items():
            pa, pb = pos[a], pos[b]
            wrong = 0
            if idx_a:
                wrong += int((sims[idx_a, pb] > sims[idx_a, pa]).sum())
            if idx_b:
                wrong += int((sims[idx_b, pa] > sims[idx_b, pb]).sum())
            rec[f"{which}_confusion"] = wrong / rec["n_images"]
        rec["value"] = pair_value(a, b)
        rows.append(rec)
    out = pd.DataFrame(rows, columns=["pair", "category", "cultures", "n_images", "base_confusion", "tuned_confusion", "value"])
    return out.sort_values(["base_confusion", "n_images"], ascending=[False, False], kind="stable").reset_index(drop=True)


def confusion_map(services: DemoServices, top: int = 15) -> tuple[Any, "pd.DataFrame"]:
    """A bar chart of the `top` pairs the base model confuses most (with CultureCLIP beside it) + table."""
    import plotly.graph_objects as go

    table = confusion_table(services)
    head = table.head(top).iloc[::-1]
    names = [services.config.base_name, services.config.tuned_name]
    fig = go.Figure()
    for col, name, color in (("base_confusion", names[0], "#9aa5b1"), ("tuned_confusion", names[1], "#e4572e")):
        fig.add_trace(go.Bar(y=head["pair"], x=head[col] * 100, orientation="h", name=name, marker_color=color,
                             hovertemplate="%{y}: %{x:.0f}% of images given to the twin<extra>" + name + "</extra>"))
    fig.update_layout(barmode="group", title=f"Twin pairs the {names[0]} confuses most",
                      xaxis_title="images assigned to the twin (%)", height=max(320, 28 * len(head) + 120),
                      legend=dict(orientation="h", y=-0.15), margin=dict(l=10, r=10, t=50, b=10))
    shown = table.drop(columns=["value"]).copy()
    for col in ("base_confusion", "tuned_confusion"):
        shown[col] = (shown[col] * 100).round(1)
    shown = shown.rename(columns={"base_confusion": f"{names[0]} confusion %", "tuned_confusion": f"{names[1]} confusion %"})
    return fig, shown


# =================================================================================================
# Benchmarks
# =================================================================================================

# names people read for the benchmark and metric ids of eval_suite (unknown ids are shown as they are)
BENCHMARK_NAMES = {
    "cultwin_live": "CulTwin test split", "cultwin": "CulTwin", "globalrg_retrieval": "GlobalRG retrieval",
    "globalrg_grounding": "GlobalRG grounding", "crope": "CROPE", "cvqa": "CVQA", "worldcuisines": "WorldCuisines",
    "worldcuisines_kb": "WorldCuisines KB", "imagenet1k": "ImageNet-1k", "dollar_street": "Dollar Street",
    "geode": "GeoDE", "sugarcrepe": "SugarCrepe", "flickr30k": "Flickr30k", "coco": "COCO",
    "world_attributes": "World attributes",
}
METRIC_NAMES = {
    "twin_acc": "twin accuracy", "twin_group_score": "twin group score", "concept_acc1": "concept accuracy",
    "acc1": "top-1 accuracy", "acc5": "top-5 accuracy", "mean_per_class_recall": "mean per-class recall",
    "image_retrieval_recall@1": "image R@1", "text_retrieval_recall@1": "text R@1",
    "mean_subset_accuracy": "mean accuracy", "n_correct": "correct items",
}


def benchmark_name(b: Any) -> str:
    return BENCHMARK_NAMES.get(str(b), str(b))


def metric_name(m: Any) -> str:
    return METRIC_NAMES.get(str(m), str(m).replace("_", " "))


def model_roles(services: DemoServices, frame: "pd.DataFrame") -> dict[str, str]:
    """{result tag: "base" | "tuned"} for the loaded models' results, joined on data (the spec each result
    records, or its model_identity role when no result has the loaded spec), never guessed from names."""
    out: dict[str, str] = {}
    for spec, role in ((services.config.base, "base"), (services.config.tuned, "tuned")):
        rows = frame[(frame["model"] == spec) | (frame["model_tag"] == model_tag(spec))]
        if rows.empty and "model_role" in frame:
            rows = frame[frame["model_role"] == role]
        for tag in rows["model_tag"].astype(str).unique():
            out.setdefault(tag, role)
    return out


def model_names(services: DemoServices, frame: "pd.DataFrame") -> dict[str, str]:
    """{result tag: the name people read}: "Base CLIP" / "CultureCLIP" for the loaded models, else the name
    the model records (its training run), else the tag; unique."""
    roles = model_roles(services, frame)
    role_name = {"base": services.config.base_name, "tuned": services.config.tuned_name}
    out: dict[str, str] = {}
    recorded = frame.drop_duplicates("model_tag").set_index("model_tag")["model_name"] if len(frame) else {}
    for tag in sorted(frame["model_tag"].astype(str).unique()):
        if tag in roles:
            out[tag] = role_name[roles[tag]]
            continue
        name = recorded.get(tag) if hasattr(recorded, "get") else None
        name = str(name) if isinstance(name, str) and name else tag
        out[tag] = name if name not in out.values() else f"{name} ({tag})"
    return out


def benchmark_choices(services: DemoServices) -> dict[str, list[str]]:
    """Filter choices for the benchmarks tab (result ids; empty lists without results)."""
    frame = services.results.dashboard_frame()
    if frame is None:
        return {"benchmark": [], "model": [], "region": [], "category": []}

    def vals(col: str) -> list[str]:
        return sorted({str(v) for v in frame[col].dropna().unique()}) if col in frame.columns else []

    return {"benchmark": vals("benchmark"), "model": vals("model_tag"), "region": vals("region"), "category": vals("category")}


def benchmark_dropdowns(services: DemoServices) -> dict[str, list[tuple[str, str]]]:
    """`benchmark_choices` as (name people read, id) pairs for the dropdowns."""
    ch = benchmark_choices(services)
    frame = services.results.dashboard_frame()
    names = model_names(services, frame) if frame is not None else {}
    return {"benchmark": [(benchmark_name(b), b) for b in ch["benchmark"]],
            "model": [(names.get(m, m), m) for m in ch["model"]],
            "region": [(r, r) for r in ch["region"]], "category": [(c, c) for c in ch["category"]]}


@dataclass
class BenchmarkView:
    table: "pd.DataFrame"  # every selected row: benchmark, metric, group, model (name), value % and CI, n
    bars: Any
    heatmap: Any
    csv_path: str | None
    message: str
    comparison: "pd.DataFrame | None" = None  # base and tuned side by side, the difference with its interval (no
    # rows when the results lack one of the loaded models)
    models: str = ""  # markdown: which model each name is (spec, weights hash, when computed)


MAX_CSV_FILES = 64  # the app's own temp files: the newest CSVs are kept, older ones deleted


def _csv_dir() -> Path:
    d = Path(tempfile.gettempdir()) / "cultureclip_demo"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _prune(folder: Path, keep: int, pattern: str = "cultureclip_benchmarks_*.csv") -> None:
    """Delete all but the `keep` newest finished CSVs in `folder` (not another thread's temp file in
    flight; best effort: another thread may race us)."""
    files = []
    for f in folder.glob(pattern):
        try:
            files.append((f.stat().st_mtime, f))
        except OSError:
            continue
    for _, f in sorted(files, reverse=True)[keep:]:
        try:
            f.unlink()
        except OSError:
            pass


def empty_state(services: DemoServices) -> str:
    """What a visitor reads when there are no results to show (owner hints are in the log and the README)."""
    names = f"{services.config.base_name} and {services.config.tuned_name}"
    if services.has_dataset:
        st = services.evaluator.state
        if st.status == "running":
            return (f"⏳ Computing the first results: {_md(names)} on the dataset's test split. The table fills in "
                    "by itself when it is done (progress above).")
        if st.status == "error":
            return "The evaluation did not finish (see the message above); no results to show yet."
        return (f"No results yet. “Evaluate the loaded models” computes them for {_md(names)} on the dataset's test "
                "split (a few minutes on a CPU).")
    return "No benchmark results are available in this Space yet."


_SAMPLES: dict[tuple, dict] = {}  # per-item values of result files, keyed by (path, mtime) of every file


def _result_samples(services: DemoServices) -> "dict[tuple[str, str, str], pd.DataFrame]":
    """Per-item values ({(model_tag, benchmark, task): frame by item id}) of the shown results that keep them
    (the live evaluation's do), for the paired-bootstrap interval of the difference."""
    import pandas as pd

    files = [Path(f) for f in (services.evaluator.state.files if services.has_dataset else ())]
    for folder in services.results.folders:
        files += sorted(Path(folder).glob("*.json"))
    key = []
    for f in files:
        try:
            key.append((str(f), f.stat().st_mtime_ns))
        except OSError:
            continue
    key = tuple(key)
    if key in _SAMPLES:
        return _SAMPLES[key]
    out: dict[tuple[str, str, str], pd.DataFrame] = {}
    for f, _ in key:
        try:
            r = read_result(f)
        except Exception:  # noqa: BLE001 - unreadable files are reported by the table loader
            continue
        if r.get("samples"):
            out[(r.get("model_tag") or r["model"], r["benchmark"], r["task"])] = pd.DataFrame(r["samples"]).set_index("ids")
    _SAMPLES.clear()
    _SAMPLES[key] = out
    return out


def _signed(v: float) -> str:
    return f"{v:+.1f}".replace("-", "−")


def comparison_columns(services: DemoServices) -> list[str]:
    names = services.config.base_name, services.config.tuned_name
    return ["benchmark", "metric", "group", f"{names[0]} %", f"{names[1]} %", "Δ points", "Δ 95% interval", "n"]


def empty_comparison(services: DemoServices) -> "pd.DataFrame":
    """The comparison's headers without rows (no table of `1 2 3` headers while there is nothing to show)."""
    import pandas as pd

    return pd.DataFrame(columns=comparison_columns(services))


def comparison_table(services: DemoServices, frame: "pd.DataFrame", main_only: bool = True,
                     regions: Sequence[str] | None = None, categories: Sequence[str] | None = None) -> "pd.DataFrame | None":
    """Base and tuned side by side (values in %), the difference in points and its 95% interval (paired
    bootstrap over the items both models saw, from the results' per-item values; "—" where they keep none).
    No rows when the results do not have both loaded models."""
    import pandas as pd

    roles = model_roles(services, frame)
    if sorted(set(roles.values())) != ["base", "tuned"]:
        return empty_comparison(services)
    sel = frame[frame["model_tag"].astype(str).isin(list(roles))]
    samples = _result_samples(services)
    # one tag per role: rows of several result tags of one model (bundled + live) are compared together
    sel = sel.assign(model_tag=sel["model_tag"].astype(str).map(roles))
    samples = {(roles[t], b, k): v for (t, b, k), v in samples.items() if t in roles}
    try:
        cmp = T.compare(sel, "base", "tuned", samples, groups=True, metric=None if main_only else "all")
    except (ValueError, KeyError) as e:
        logger.info("no base/tuned comparison: %s", e)
        return empty_comparison(services)
    for col_, want in (("region", regions), ("category", categories)):
        if want and col_ in cmp:
            cmp = cmp[cmp[col_].astype(str).isin(list(want))]
    names = services.config.base_name, services.config.tuned_name
    pct = lambda s: (s.astype(float) * 100).round(1)  # noqa: E731

    def interval(lo: float, hi: float) -> str:
        if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
            return "—"
        return f"{_signed(100 * lo)} to {_signed(100 * hi)}"

    out = pd.DataFrame({
        "benchmark": cmp["benchmark"].map(benchmark_name),
        "metric": cmp["metric"].map(metric_name),
        "group": cmp["group"].astype(str).where(cmp["group"].astype(str) != "all", "all items"),
        f"{names[0]} %": pct(cmp["base"]),
        f"{names[1]} %": pct(cmp["tuned"]),
        "Δ points": pct(cmp["delta"]),
        "Δ 95% interval": [interval(a, b) for a, b in zip(cmp["delta_ci_low"], cmp["delta_ci_high"])],
        "n": cmp["n"],
    })
    overall = (cmp["group"] == "all").to_numpy()
    order = sorted(range(len(out)), key=lambda i: (not overall[i], i))
    return out.iloc[order].reset_index(drop=True)


def _models_note(services: DemoServices, frame: "pd.DataFrame") -> str:
    """Which model each name is: its spec, weights hash and when its results were computed (a details row)."""
    names = model_names(services, frame)
    roles = model_roles(services, frame)
    lines = []
    for role, name, spec in (("base", services.config.base_name, services.config.base),
                             ("tuned", services.config.tuned_name, services.config.tuned)):
        rows = frame[frame["model_tag"].astype(str).map(roles.get) == role]
        sha = next((str(s) for s in rows["checkpoint_sha"].dropna().unique()), "") if len(rows) else ""
        stamp = when(rows["timestamp"].max()) if len(rows) else None
        code = shown_spec(spec).replace("`", "'")  # literal inside a code span (markdown escapes would show there)
        lines.append(f"**{_md(name)}** = `{code}`" + (f" · weights sha256 `{sha[:12]}`" if sha else "")
                     + (f" · computed {stamp}" if stamp else ""))
    others = [n for t, n in names.items() if t not in roles]
    if others:
        lines.append("Other models in the results: " + ", ".join(_md(n) for n in others[:12])
                     + ("…" if len(others) > 12 else ""))
    return "<br>".join(lines)


def benchmark_view(
    services: DemoServices,
    benchmarks: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    regions: Sequence[str] | None = None,
    categories: Sequence[str] | None = None,
    main_only: bool = True,
) -> BenchmarkView:
    """Base vs tuned side by side, every selected row (values in %), figures with the names people read and
    a CSV of the rows (with each model's spec)."""
    import pandas as pd

    frame = services.results.dashboard_frame()
    if frame is None:
        if services.results.error:
            logger.info("Benchmarks tab: %s", services.results.error)
        return BenchmarkView(pd.DataFrame(), None, None, None, empty_state(services), empty_comparison(services))
    names = model_names(services, frame)
    sel = frame
    if main_only:
        sel = sel[sel["is_main"]]
    for col_, want in (("benchmark", benchmarks), ("model_tag", models), ("region", regions), ("category", categories)):
        if want and col_ in sel.columns:
            sel = sel[sel[col_].astype(str).isin(list(want))]
    table = pd.DataFrame({
        "benchmark": sel["benchmark"].astype(str), "metric": sel["metric"].astype(str), "group": sel["group"].astype(str),
        "model": sel["model_tag"].astype(str).map(names), "value %": (sel["value"] * 100).round(2),
        "ci low %": (sel["ci_low"] * 100).round(2), "ci high %": (sel["ci_high"] * 100).round(2), "n": sel["n"],
    })
    for extra in ("region", "category"):  # group fields, for filtering the CSV (not shown: the group says it)
        if extra in sel.columns:
            table[extra] = sel[extra]
    fig_frame = frame[frame["model_tag"].astype(str).isin(list(models))] if models else frame
    if benchmarks:
        fig_frame = fig_frame[fig_frame["benchmark"].astype(str).isin(list(benchmarks))]
    cmp_frame = frame[frame["benchmark"].astype(str).isin(list(benchmarks))] if benchmarks else frame
    comparison = comparison_table(services, cmp_frame, main_only, regions, categories)
    names_ = services.config.base_name, services.config.tuned_name
    msg = (f"{len(comparison)} rows compare {_md(names_[0])} and {_md(names_[1])}" if len(comparison) else
           f"The results do not include both {_md(names_[0])} and {_md(names_[1])}")
    msg += f"; “Every result” below has all {len(table)} rows" + (" (main metric of each benchmark)" if main_only else "") \
        + " and the CSV."
    bars = heat = None
    try:
        bars, heat = _benchmark_figures(services, fig_frame, names)
    except Exception as e:  # noqa: BLE001 - figures are optional; the tables are the core
        logger.warning("benchmark figures unavailable: %s", e)
        msg += " · figures unavailable for this selection"
    csv_path = None
    if len(table):
        specs = frame.drop_duplicates("model_tag").set_index("model_tag")["model"].astype(str).map(shown_spec)
        payload = table.assign(model_spec=sel["model_tag"].astype(str).map(specs).to_numpy()).to_csv(index=False)
        data = payload.encode("utf-8")
        digest = hashlib.sha256(data).hexdigest()[:12]
        path = _csv_dir() / f"cultureclip_benchmarks_{digest}.csv"
        if not path.exists():
            atomic_write_bytes(path, data)
            _prune(path.parent, MAX_CSV_FILES)
        csv_path = str(path)
    show = table.drop(columns=[c for c in ("region", "category") if c in table.columns]).reset_index(drop=True)
    return BenchmarkView(show, bars, heat, csv_path, msg, comparison, _models_note(services, frame))


def _benchmark_figures(services: DemoServices, frame: "pd.DataFrame", names: dict[str, str]) -> tuple[Any, Any]:
    """Bars of each benchmark's main metric per model and the tuned − base heatmap by region × category,
    with model and benchmark names people read (legend, axes, titles)."""
    named = frame.assign(model_tag=frame["model_tag"].astype(str).map(names),
                         benchmark=frame["benchmark"].astype(str).map(benchmark_name))
    order = [n for n in (services.config.base_name, services.config.tuned_name) if n in set(named["model_tag"])]
    order += sorted(set(named["model_tag"]) - set(order))
    bars = figures.benchmark_bars(named, models=order, title="Main metric of each benchmark (%, 95% interval)")
    bars.update_layout(title=dict(font=dict(size=14), x=0.01, xanchor="left"), margin=dict(t=50, l=50, r=10),
                       legend=dict(orientation="h", yanchor="top", y=-0.18, x=0, title=None), height=420,
                       yaxis_title=None, xaxis_title=None)
    heat = None
    roles = model_roles(services, frame)
    if sorted(set(roles.values())) == ["base", "tuned"]:
        base_n, tuned_n = services.config.base_name, services.config.tuned_name
        paired = named.assign(model_tag=frame["model_tag"].astype(str).map(
            lambda t: {"base": base_n, "tuned": tuned_n}.get(roles.get(t, ""), names.get(t, t))))
        found = sorted(paired["benchmark"].unique(), key=lambda b: (not b.startswith("CulTwin"), b))
        for bench in found:  # the first benchmark with region x category groups (CulTwin first)
            try:
                heat = figures.delta_heatmap(paired, base_n, tuned_n, benchmark=bench)
            except (ValueError, KeyError) as e:
                logger.debug("no delta heatmap for %s: %s", bench, e)
                continue
            metric = paired[(paired["benchmark"] == bench) & paired["is_main"]]["metric"].iloc[0]
            heat.update_layout(
                title=dict(text=f"{_html_text(tuned_n)} − {_html_text(base_n)}, {metric_name(metric)} (points)"
                                f"<br><sup>{_html_text(bench)}, by region × category; blue: {_html_text(tuned_n)} "
                                "is better</sup>", font=dict(size=14), x=0.01, xanchor="left"),
                margin=dict(t=70, l=10, r=10), height=420)
            heat.data[0].colorbar.title = "Δ pts"
            break
    return bars, heat


def _html_text(text: str) -> str:
    return html.escape(str(text), quote=False)


def start_evaluation(services: DemoServices) -> str:
    """Start (or queue) the live evaluation of both models on the dataset's test split; returns a note."""
    if not services.has_dataset:
        raise DemoInputError("No dataset is configured, so there is no test split to evaluate (start the app with --dataset).")
    return services.evaluator.start()


def evaluation_status(services: DemoServices) -> tuple[str, bool]:
    """(markdown status of the live evaluation, whether it is still running or queued)."""
    if not services.has_dataset:
        return "", False
    st = services.evaluator.state
    names = f"{services.config.base_name} and {services.config.tuned_name}"
    if st.status == "idle":
        return (f"{_md(names)} have not been evaluated on this dataset's test split yet (twin accuracy, twin group "
                "score, concept accuracy, with 95% intervals); results are kept for these exact weights."), False
    if st.status == "running":
        filled = int(round(20 * st.progress))
        bar = "█" * filled + "░" * (20 - filled)
        queued = " · another evaluation is queued" if st.queued else ""
        eta = ""
        started = getattr(st, "started", None)
        if started and st.progress >= 0.05:
            left = (time.monotonic() - started) * (1 - st.progress) / st.progress
            eta = f" · about {max(1, round(left / 60))} min left" if left >= 60 else f" · about {max(5, round(left, -1)):.0f} s left"
        return (f"⏳ Evaluating {_md(names)} on the dataset's test split: `{bar}` {st.progress:.0%}{eta} · "
                f"{_md(st.message)}{queued}"), True
    if st.status == "error":
        return f"❌ {_md(st.message)}", False
    return f"✅ {_md(st.message)}", False


def _base_tuned_tags(services: DemoServices, frame) -> tuple[str | None, str | None]:
    """Result tags of the base and tuned models, joined on data, never guessed from names.

    First the results of the loaded models (their spec, as recorded in each result's ``model``), then
    results whose ``model_identity`` carries the role ``base`` / ``tuned``. None when neither matches.
    """
    found: list[str | None] = []
    for spec, role in ((services.config.base, "base"), (services.config.tuned, "tuned")):
        rows = frame[(frame["model"] == spec) | (frame["model_tag"] == model_tag(spec))]
        if rows.empty and "model_role" in frame:
            rows = frame[frame["model_role"] == role]
        tags = sorted(rows["model_tag"].astype(str).unique())
        found.append(tags[0] if len(tags) == 1 else None)
    return found[0], found[1]


# =================================================================================================
# Cultural confusion atlas (text only: works for any CLIP, no images needed)
# =================================================================================================


@dataclass
class AtlasView:
    table: "pd.DataFrame"  # ranked pairs, most confusable for the base model first (values rounded)
    heatmap: Any  # region x category (buttons: base, tuned, difference)
    world: Any  # choropleth by culture when the map outlines can load, else countries ranked (eval_suite.figures)
    message: str
    legend: str = ""  # one line per column and figure: what the values mean


ATLAS_METRICS = {"prompt cosine": "prompt_cos", "name cosine": "name_cos", "prompt z-score": "prompt_z"}
ATLAS_DIGITS = 3
_ATLAS_WHAT = {
    "prompt_cos": "cosine between the two concepts' prompts in the model's text space (1 = the same text to the "
                  "model; higher = harder to tell apart by text)",
    "name_cos": "cosine between the two concepts' bare names (higher = harder to tell apart by name)",
    "prompt_z": "the prompt cosine as a z-score among all pairs of concepts of that model (0 = an average pair of "
                "concepts, +2 = much closer than average). Raw cosines of two models are not on one scale (each "
                "model has its own spread), z-scores are",
}


def atlas_table(atlas: "pd.DataFrame", metric: str, names: Sequence[str], digits: int = ATLAS_DIGITS) -> "pd.DataFrame":
    """The atlas table people read: rank, pair, cultures, category and the chosen metric per model with the
    difference, rounded to `digits` (as float64: a float32 0.983 would reach the page as 0.9829999804496765)."""
    import pandas as pd

    labels = atlas_labels(atlas)
    out = pd.DataFrame({"rank": atlas["rank"], "pair": atlas["pair"],
                        "cultures": atlas["culture_name_a"] + " / " + atlas["culture_name_b"],
                        "category": atlas["category"]})
    for lab, name in zip(labels, names):
        out[name] = atlas[col(metric, lab)].astype("float64").round(digits)
    if len(labels) == 2:
        out["Δ"] = (atlas[col(metric, labels[1])].astype("float64")
                    - atlas[col(metric, labels[0])].astype("float64")).round(digits)
    return out


def atlas_view(services: DemoServices, metric: str | None = "prompt cosine", query: str | None = "",
               top: int = 100) -> AtlasView:
    """The confusion atlas: text-text similarity of every twin pair's prompts and names, base vs tuned."""
    key = ATLAS_METRICS.get(str(metric), str(metric))
    if key not in ATLAS_METRICS.values():
        raise DemoInputError(f"Unknown atlas metric {metric!r}: pick one of {', '.join(ATLAS_METRICS)}.")
    atlas = services.atlas()
    if atlas.empty:
        raise DemoInputError("The catalog has no twin pairs between its concepts, so there is nothing to map.")
    labels = atlas_labels(atlas)
    table = atlas_table(atlas, key, labels)
    q = (query or "").strip().casefold()
    if q:
        hay = (atlas["pair"] + " " + atlas["culture_name_a"] + " " + atlas["culture_name_b"] + " " + atlas["category"]
               + " " + atlas["region_a"] + " " + atlas["region_b"]).str.casefold()
        # whole words first ("Chad" is the country, not "chador"); a fragment ("tart") still finds "tartan"
        hit = hay.str.contains(r"(?<!\w)" + re.escape(q) + r"(?!\w)", regex=True)
        if not hit.any():
            hit = hay.str.contains(q, regex=False)
        table = table[hit.to_numpy()]
    n = len(atlas)
    msg = f"**{n} twin pairs**, ranked by how close {_md(labels[0])} puts their prompts (most confusable first)."
    if len(labels) == 2:
        apart_z = int((atlas[col("prompt_z", labels[1])] < atlas[col("prompt_z", labels[0])]).sum())
        apart_cos = int((atlas[col("prompt_cos", labels[1])] < atlas[col("prompt_cos", labels[0])]).sum())
        msg += (f" Relative to its own average pair of concepts (z-score), {_md(labels[1])} puts **{apart_z} of {n}** "
                f"twin pairs further apart than {_md(labels[0])} does (raw cosine: {apart_cos} of {n}). This is text "
                f"against text only: {_md(labels[1])} is trained to match each *image* to the right one of two twins, "
                "which it can do while the two descriptions stay close in its text space, so a low count does not "
                "mean it tells twins apart less well. Whether it does is measured on images in the Benchmarks tab "
                "(twin accuracy).")
    if q:
        msg += f" Showing {len(table)} pairs matching “{_md(query)}”."
    k = max(1, min(int(top or 100), len(atlas)))
    m_label = next(name for name, v in ATLAS_METRICS.items() if v == key)
    legend = (f"**Columns**: *rank* by {_md(labels[0])}'s prompt cosine · *{_md(labels[0])}*, *{_md(labels[-1])}*: "
              f"the {m_label}, {_ATLAS_WHAT[key]}" + (f" · *Δ*: {_md(labels[1])} − {_md(labels[0])} "
              f"(negative: {_md(labels[1])} keeps the twins further apart)" if len(labels) == 2 else "") + ".<br>"
              f"**Figures**: the mean {m_label} of the twin pairs in each region × category cell, and by country "
              "(buttons switch between the models and their difference; red = more confusable).")
    return AtlasView(table.head(k).reset_index(drop=True), figures.atlas_heatmap(atlas, metric=key, label=m_label),
                     _atlas_world(services, atlas, key, m_label), msg, legend)


def _atlas_world(services: DemoServices, atlas: "pd.DataFrame", metric: str, label: str) -> Any:
    """The world map when the browser can fetch plotly's country outlines (they come from its CDN: the hub is
    reachable, so is the internet), else the countries ranked, which needs nothing from outside."""
    if not services.config.offline_world and hub_reachable():
        return figures.atlas_map(atlas, metric=metric, label=label)
    return figures.atlas_countries(atlas, metric=metric, label=label)


# =================================================================================================
# Search
# =================================================================================================


@dataclass
class SearchResult:
    base: list[tuple[str, str]]
    tuned: list[tuple[str, str]]
    message: str
    concept: str | None = None  # the catalog concept the query names, if any
    counts: dict[str, int] = field(default_factory=dict)  # per model ("base", "tuned"): hits of that concept


def concept_in_query(services: DemoServices, query: str) -> ConceptInfo | None:
    """The catalog concept a search query names ("the flag of Chad" -> flag of Chad): the longest concept
    name found in the query as whole words, else None."""
    q = " " + " ".join(re.findall(r"\w+", query.casefold())) + " "
    best = None
    for c in services.concepts().values():
        name = " " + " ".join(re.findall(r"\w+", c.name.casefold())) + " "
        if name.strip() and name in q and (best is None or len(c.name) > len(best.name)):
            best = c
    return best


def search(services: DemoServices, query: str | None, k: int = 8) -> SearchResult:
    """Text -> image retrieval over the dataset with both models (image embeddings cached per model)."""
    q = clean_query(query)
    if not services.has_dataset:
        raise DemoInputError("No dataset is configured, so there are no images to search (start the app with --dataset).")
    df = services.manifest()
    k = clean_int(8 if k is None else k, "The number of results", 1, 48)
    out = {}
    hits = {}
    counts = {}
    want = concept_in_query(services, q)

    def caption(i: int, v: float) -> str:
        cid, name = str(df.at[i, "concept_id"]), str(df.at[i, "concept_name"])
        if want is None:
            return f"{name} · {v:.3f}"
        if cid == want.id:
            return f"✓ {name} · {v:.3f}"
        return f"✗ {name}{' (its twin)' if cid in want.twins else ''} · {v:.3f}"

    for which in ("base", "tuned"):
        emb = services.embedder(which)
        feats = services.image_index(which)
        if feats.shape[0] == 0:
            raise DemoInputError("The dataset has no images.")
        text = emb.label_bank([q], (TYPED_TEMPLATE if len(q.split()) <= 3 else "{}",))  # (1, D), cached
        sims = (feats @ text[0]).float()
        vals, idx = sims.topk(min(k, feats.shape[0]))
        out[which] = [(df.at[int(i), "abs_path"], caption(int(i), v)) for v, i in zip(vals.tolist(), idx.tolist())]
        hits[which] = [str(df.at[int(i), "concept_name"]) for i in idx.tolist()]
        if want is not None:
            counts[which] = sum(str(df.at[int(i), "concept_id"]) == want.id for i in idx.tolist())
    names = services.config.base_name, services.config.tuned_name
    n = len(out["base"])
    msg = f"Top {n} of {min(len(df), services.config.max_index_images)} images for “{_md(q)}”. "
    if want is not None:
        msg += (f"**{names[0]}: {counts['base']} of {n}** are {_md(want.name)} · "
                f"**{names[1]}: {counts['tuned']} of {n}** (✓ marks them, ✗ the others).")
    else:
        msg += (f"Top hit — {names[0]}: **{_md(hits['base'][0])}**, {names[1]}: **{_md(hits['tuned'][0])}** "
                "(the query names no catalog concept, so the hits are not marked).")
    return SearchResult(out["base"], out["tuned"], msg, want.id if want else None, counts)


def example_images(services: DemoServices, n: int = 6) -> list[str]:
    """Paths of example images: both sides of twin pairs (see `example_pairs`)."""
    return [p for p, _ in example_pairs(services, n)]


# Look-alike pairs a first-time user should see first, when the loaded dataset has them (offline world
# and the paper's CulTwin concepts); the rest follow in catalog order.
FEATURED_PAIRS = [
    ("flag_chad", "flag_romania"), ("tartan_black_watch", "tartan_campbell"), ("flag_slovakia", "flag_slovenia"),
    ("flag_indonesia", "flag_monaco"), ("tartan_royal_stewart", "tartan_macduff"), ("flag_norway", "flag_iceland"),
    ("flag_ireland", "flag_cote_divoire"), ("flag_australia", "flag_new_zealand"),
    ("gyoza", "jiaozi"), ("hanbok", "hanfu"),
]


def featured_pairs(services: DemoServices) -> list[tuple[str, str]]:
    """Twin pairs of the loaded concepts, curated ones first (each as it appears in `twin_pairs`)."""
    pairs = services.twin_pairs()
    known = {frozenset(p): p for p in pairs}
    first = [known[frozenset(p)] for p in FEATURED_PAIRS if frozenset(p) in known]
    seen = {frozenset(p) for p in first}
    return first + [p for p in pairs if frozenset(p) not in seen]


def example_pairs(services: DemoServices, n: int = 8) -> list[tuple[str, str]]:
    """(image path, true concept) for up to `n` examples: both sides of featured twin pairs, one image each
    (test split first), so a user compares look-alikes and sees which model is right."""
    if not services.has_dataset:
        return []
    df = services.manifest()
    order = df.assign(_t=(df["split"] != "test")).sort_values(["_t"], kind="stable")
    first = order.drop_duplicates("concept_id").set_index("concept_id")["abs_path"]
    cs = services.concepts()
    out: list[tuple[str, str]] = []
    for a, b in featured_pairs(services):
        if a in first.index and b in first.index and Path(first[a]).is_file() and Path(first[b]).is_file():
            pa, pb = (a, b) if FEATURED_ORDER.get(a, 1) <= FEATURED_ORDER.get(b, 1) else (b, a)
            out += [(first[pa], _display(cs[pa])), (first[pb], _display(cs[pb]))]
        if len(out) >= n:
            break
    return out[:n]


FEATURED_ORDER = {c: i % 2 for p in FEATURED_PAIRS for i, c in enumerate(p)}


def copy_examples(services: DemoServices) -> dict[str, Any]:
    """Words for the page taken from what is loaded: twin pairs for the intro, a label placeholder and
    search suggestions (concept prompts of featured concepts, which the dataset has images of)."""
    cs = services.concepts()
    pairs = featured_pairs(services)[:3]
    names = [(cs[a].name, cs[b].name) for a, b in pairs]
    with_images = featured_pairs(services)
    if services.has_dataset:  # e.g. the default dataset shows only some of the catalog's concepts
        present = set(services.image_pairs())
        with_images = [p for p in with_images if p in present]
    concepts = [c for p in with_images[:3] for c in p]
    queries = []
    for c in concepts[:4]:
        q = cs[c].prompt.removeprefix("a photo of ").rstrip(".")
        if q and q not in queries:
            queries.append(q)
    return {
        "pairs": names,
        "intro": ", ".join(f"{a} vs {b}" for a, b in names),
        "labels": ", ".join(names[0]) if names else "",
        "queries": queries,
    }
