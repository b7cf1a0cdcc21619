"""Gradio layout: `build_demo(services) -> gr.Blocks`, one function per tab, `api_name` on every event.

Handlers live in demo/handlers.py (plain functions); this module only wires components, turns
`DemoInputError`/`ServiceError` into `gr.Error` messages (never a traceback) and sets the serving
limits (`launch_kwargs`).
"""
from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from . import handlers as H
from .background import GateMiddleware
from .blends import quantize_alpha
from .config import IndexNotReady, ServiceError
from .services import DemoServices, gpu
from .validation import MAX_FILE_BYTES, DemoInputError, inside, scrub_paths

logger = logging.getLogger(__name__)

QUEUE_MAX_SIZE = 256
MAX_BATCH = 16
CONCURRENCY = 4
# gradio's cache (uploads, and copies of the images the app shows): every 10 minutes, delete what is older
# than an hour; everything goes when the server stops
DELETE_CACHE = (600, 3600)

CSS = """
.banner {border-radius: 10px; padding: 10px 16px !important; margin-bottom: 4px;}
.banner.offline {background: #fff4d6; border: 1px solid #f0c36d;}
.banner.offline * {color: #5b4300 !important;}
.banner.online {background: #eef4ff; border: 1px solid #b8cdf5;}
.model-col h3 {margin-bottom: 0;}
/* small images (the offline world's are 48 px) are shown large, upscaled nearest-neighbour */
.pixel-view img, #examples img {image-rendering: pixelated;}
#input-image img {object-fit: contain !important; width: 100% !important; height: 100% !important;}
.pixel-view .thumbnail-item img, .pixel-view .grid-wrap img {object-fit: contain !important;}
/* Recognize: the verdict cards (one per model) right under Classify */
#verdicts {display: flex; flex-direction: column; gap: 8px;}
#verdicts.empty {display: block; padding: 12px 14px; border: 1px dashed var(--border-color-primary); border-radius: 10px;
  color: var(--body-text-color-subdued);}
#verdicts .verdict-row {display: grid; grid-template-columns: 1fr 1fr; gap: 10px;}
#verdicts .verdict {border-radius: 10px; padding: 8px 12px; border: 2px solid; min-width: 0; color: #1d2330;}
#verdicts .verdict.right {background: #e6f6ea; border-color: #2f9e4f;}
#verdicts .verdict.wrong, #verdicts .verdict.twin {background: #fdebe9; border-color: #d64541;}
#verdicts .verdict.unknown {background: #f1f3f7; border-color: #b8c0cc;}
#verdicts .who {font-size: 0.85em; font-weight: 600; opacity: 0.8; cursor: help;}
#verdicts .answer {font-size: 1.15em; font-weight: 700; line-height: 1.3; overflow-wrap: anywhere;}
#verdicts .prob {font-weight: 400; font-size: 0.85em; opacity: 0.75;}
#verdicts .tag {font-weight: 600; margin-top: 2px;}
#verdicts .verdict.right .tag {color: #1d6b34;}
#verdicts .verdict.wrong .tag, #verdicts .verdict.twin .tag {color: #a32521;}
#verdicts .cues {background: #fff6dd; border: 1px solid #f0c36d; border-radius: 10px; padding: 8px 12px;
  color: #4a3800;}
#verdicts .cues ul {margin: 4px 0 0 18px; padding: 0;}
#verdicts .truth {font-size: 0.95em;}
@media (max-width: 520px) {#verdicts .verdict-row {grid-template-columns: 1fr;}}
/* compact labelled galleries (Recognize's examples, Search's hits): the caption under each thumbnail, whole */
.captions-below {height: auto !important; min-height: 0 !important;}
.captions-below .grid-wrap {overflow: visible !important; height: auto !important; max-height: none !important;
  min-height: 0 !important; padding-top: 38px !important;}
.captions-below .grid-container {grid-template-rows: none !important; grid-auto-rows: auto !important;
  grid-template-columns: repeat(4, minmax(0, 1fr)) !important; gap: 6px !important;}
.captions-below .thumbnail-item {aspect-ratio: auto !important; height: auto !important; display: flex !important;
  flex-direction: column !important; overflow: visible !important;}
.captions-below .thumbnail-item img {height: 64px !important; width: 100% !important; object-fit: cover !important;}
#search-base .thumbnail-item img, #search-tuned .thumbnail-item img, #pair-a .thumbnail-item img,
#pair-b .thumbnail-item img, #confusion-gallery .thumbnail-item img {height: 96px !important;}
#confusion-gallery .grid-container {grid-template-columns: repeat(3, minmax(0, 1fr)) !important;}
.captions-below .caption-label {position: static !important; max-width: 100% !important; white-space: normal !important;
  overflow: visible !important; border: none !important; border-radius: 0 !important; opacity: 1 !important;
  font-size: 12px !important; line-height: 1.25 !important; padding: 3px 4px 4px !important; text-align: left;
  background: transparent !important; color: var(--body-text-color) !important;}
/* phones: wide tables scroll inside their own frame (columns keep a readable width), never the page */
@media (max-width: 700px) {
  #bench-comparison table, #atlas-table table {width: auto !important;}
  #bench-comparison .virtual-row, #atlas-table .virtual-row {width: max-content !important;}
  #bench-comparison th, #bench-comparison .body-cell, #atlas-table th, #atlas-table .body-cell
    {width: 92px !important; min-width: 92px !important; max-width: 92px !important; flex: 0 0 92px !important;}
  #bench-comparison th:nth-child(3), #bench-comparison .body-cell[data-col="2"], #atlas-table th:nth-child(2),
  #atlas-table .body-cell[data-col="1"], #atlas-table th:nth-child(3), #atlas-table .body-cell[data-col="2"]
    {width: 150px !important; min-width: 150px !important; max-width: 150px !important; flex: 0 0 150px !important;}
}
/* gallery captions wrap instead of being cut off (the verdict must stay readable) */
.wrap-captions .caption-label {white-space: normal !important; max-width: 100% !important; opacity: 0.9;}
"""

def intro(services: DemoServices) -> str:
    """The page's opening words, with twin pairs from the loaded concepts (not hard-coded examples)."""
    pairs = H.copy_examples(services)["intro"]
    return (
        "# CultureCLIP — telling cultural twins apart\n"
        "Cultural *twins* are look-alike concepts from different cultures"
        + (f" (here: {H._md(pairs)})" if pairs else "") + ". CultureCLIP fine-tunes CLIP with a twin-aware "
        "contrastive loss ([arXiv 2507.06210](https://arxiv.org/abs/2507.06210)). Compare it with the base model below."
    )


def plain_error(e: BaseException) -> str:
    """The message a user sees for an error: plain words, never an absolute server path, and HTML-escaped
    (gradio renders error text as HTML). Applied once, by DemoBlocks, to every error an event raises."""
    text = e.message if isinstance(e, gr.Error) else str(e)
    if "was not uploaded by a user" in text or "not in the upload folder" in text:
        return ("That file was not uploaded to this server: upload it first (from the API, send files with "
                "gradio_client's handle_file).")
    if isinstance(e, (DemoInputError, ServiceError, gr.Error)):
        return no_tags(scrub_paths(text))
    return f"Something went wrong ({type(e).__name__}). Try another input."


def no_tags(text: str) -> str:
    """Error text that reads the same through the API (plain JSON) and in the page (whose notices render
    HTML): angle brackets become look-alike characters instead of `&lt;` entities, so nothing is a tag."""
    return text.replace("<", "‹").replace(">", "›")


def _param_name(fn: Any, index: int) -> str:
    """How the API names input `index` of an event (gradio takes it from the function's signature), with the
    component's label: e.g. "`top_k` (Top-k)"."""
    names = getattr(fn, "input_parameter_names", None) or []
    name = names[index] if index < len(names) and names[index] else f"input {index + 1}"
    label = getattr(fn.inputs[index], "label", None) if index < len(fn.inputs) else None
    return f"`{name}`" + (f" (“{label}”)" if label and str(label) != name else "")


def bad_input_message(fn: Any, inputs: Sequence[Any]) -> str | None:
    """A plain message naming the parameter when a value cannot be one of `fn`'s number inputs (a text, None,
    a list where a number belongs), else None."""
    for i, comp in enumerate(fn.inputs):
        if i >= len(inputs) or not isinstance(comp, (gr.Slider, gr.Number)):
            continue
        v = inputs[i]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            shown = repr(v) if len(repr(v)) <= 40 else repr(v)[:40] + "…"
            rng = ""
            if isinstance(comp, gr.Slider):
                rng = f" from {comp.minimum:g} to {comp.maximum:g}"
            return f"{_param_name(fn, i)}: expected a number{rng}, got {no_tags(shown)}."
    return None


def bad_choice_message(fn: Any, inputs: Sequence[Any], state: Any = None) -> str | None:
    """When gradio refuses a value that is not one of a dropdown's (or radio's) choices, which parameter it
    was, in plain words (gradio's own text names neither the input nor the parameter)."""
    for i, comp in enumerate(fn.inputs):
        if i >= len(inputs) or not isinstance(comp, (gr.Dropdown, gr.Radio, gr.CheckboxGroup)):
            continue
        try:
            if state is not None and comp._id in state:  # this session's choices (updated by an event)
                comp = state[comp._id]
            comp.preprocess(inputs[i])
        except Exception:  # noqa: BLE001 - this is the input gradio could not take
            values = [v for _, v in comp.choices]
            got = inputs[i] if isinstance(inputs[i], list) else [inputs[i]]
            bad = next((v for v in got if v not in values), inputs[i])
            shown = ", ".join(str(v) for v in values[:8]) + (", …" if len(values) > 8 else "")
            return no_tags(f"{_param_name(fn, i)}: {bad!r} is not one of the choices ({shown}).")
    return None


def _unprocessable_message(fn: Any, e: BaseException) -> str | None:
    """gradio's ComponentProcessingError says which input failed (by index): name it as the API does."""
    m = re.search(r"input component at index (\d+)", str(e))
    if not m or int(m.group(1)) >= len(fn.inputs):
        return None
    comp = fn.inputs[int(m.group(1))]
    return (f"The value sent for {_param_name(fn, int(m.group(1)))} could not be read as a "
            f"{type(comp).__name__.lower()} value; see the app's 'Use via API' page for what it takes.")


async def _unknown_endpoint(request: Any, exc: Exception):
    """`POST /gradio_api/call/<name>` for a name the app does not have: 404 with the list, no traceback."""
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": "No such API endpoint. The app's 'Use via API' page (or GET "
                                  "/gradio_api/info) lists them."}, status_code=404)


def _safe(fn: Callable) -> Callable:
    """Bad input -> gr.Error with our message; anything unexpected -> logged, short gr.Error."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (DemoInputError, ServiceError) as e:
            raise gr.Error(str(e), print_exception=False) from None  # DemoBlocks makes it plain
        except gr.Error:
            raise
        except Exception as e:  # noqa: BLE001 - keep serving; details go to the server log only
            logger.exception("handler %s failed", fn.__name__)
            raise gr.Error(f"Something went wrong ({type(e).__name__}). Try another input.", print_exception=False) from None

    return wrapper


def ui_and_api(trigger: Callable, browser_fn: Callable, api_fn: Callable, inputs: list, outputs: list,
               api_name: str, **kw: Any) -> None:
    """Wire `trigger` to `browser_fn` for the page (not an API endpoint) and keep `api_name` answering with
    `api_fn` (on a never-shown button): the page may show a softer answer than the API, e.g. the dataset
    index's progress as a message instead of an error that API clients retry on."""
    trigger(browser_fn, inputs, outputs, api_visibility="private", **kw)
    gr.Button(visible=False).click(api_fn, inputs, outputs, api_name=api_name, **kw)


@dataclass
class BadInput:
    """One request's input that gradio could not preprocess, inside a batch: only that request fails."""

    message: str


def _missing_inputs(fn: Any, got: int) -> str:
    names = ", ".join(str(getattr(c, "label", None) or type(c).__name__) for c in fn.inputs)
    return (f"This endpoint takes {len(fn.inputs)} input(s) ({names}); {got} were sent. Send every input "
            "(the app's 'Use via API' page lists them).")


class DemoBlocks(gr.Blocks):
    """gr.Blocks whose API errors are plain: a call with missing inputs, a file that was not uploaded, or
    anything gradio itself raises before or after our handlers gets a short message without server paths.

    In a batched event (classify) one request's bad input fails that request only: gradio zips the
    batch's inputs, so a short request is refused when it is submitted (`guard_batches`) and a request
    whose input cannot be preprocessed reaches the handler as a `BadInput`."""

    visitor_gate: Any = None  # demo.background.VisitorGate: background work pauses while a request runs

    async def process_api(self, block_fn, inputs, *args, **kwargs):  # type: ignore[override]
        fn = self.fns[block_fn] if isinstance(block_fn, int) else block_fn
        got = len(inputs) if isinstance(inputs, (list, tuple)) else 0
        if fn.fn is not None and got < len(fn.inputs):
            raise gr.Error(_missing_inputs(fn, got), print_exception=False)
        try:
            if self.visitor_gate is not None:
                with self.visitor_gate.visitor():
                    return await super().process_api(block_fn, inputs, *args, **kwargs)
            return await super().process_api(block_fn, inputs, *args, **kwargs)
        except gr.Error as e:
            raise gr.Error(plain_error(e), duration=e.duration, visible=e.visible, title=e.title,
                           print_exception=False) from None
        except Exception as e:  # noqa: BLE001 - gradio's own errors (preprocessing, batching, files)
            logger.warning("request to %s failed: %s: %s", fn.api_name, type(e).__name__, e)
            raise gr.Error(plain_error(e), print_exception=False) from None

    async def preprocess_data(self, block_fn, inputs, state, explicit_call=False):  # type: ignore[override]
        try:
            problem = bad_input_message(block_fn, inputs) if isinstance(inputs, (list, tuple)) else None
            if problem:
                raise DemoInputError(problem)
            try:
                return await super().preprocess_data(block_fn, inputs, state, explicit_call)
            except gr.Error:
                named = bad_choice_message(block_fn, inputs, state) if isinstance(inputs, (list, tuple)) else None
                if named is None:
                    raise
                raise DemoInputError(named) from None
            except Exception as e:  # noqa: BLE001 - a value gradio cannot read: say which parameter
                named = _unprocessable_message(block_fn, e)
                if named is None:
                    raise
                logger.info("request to %s: %s", block_fn.api_name, e)
                raise DemoInputError(named) from None
        except Exception as e:  # noqa: BLE001
            if not block_fn.batch:
                raise
            return [BadInput(plain_error(e))] * len(block_fn.inputs)

    def launch(self, *args: Any, **kwargs: Any):  # type: ignore[override]
        """gradio's launch, with a 404 (not a 500 and a logged traceback) for an unknown API endpoint."""
        from gradio.route_utils import FnIndexInferError

        app_kwargs = dict(kwargs.pop("app_kwargs", None) or {})
        handlers = dict(app_kwargs.get("exception_handlers") or {})
        handlers.setdefault(FnIndexInferError, _unknown_endpoint)
        app_kwargs["exception_handlers"] = handlers
        return super().launch(*args, app_kwargs=app_kwargs, **kwargs)

    def guard_batches(self) -> None:
        """Refuse, at submission, a request to a batched event that does not send every input."""
        from gradio import route_utils

        queue = self._queue
        push = queue.push

        async def push_checked(body, request, username):
            try:
                fn = route_utils.get_fn(self, None, body)
            except Exception:  # noqa: BLE001 - gradio answers unknown functions itself
                return await push(body, request, username)
            data = body.data if isinstance(body.data, list) else []
            if fn.batch and fn.fn is not None and len(data) != len(fn.inputs):
                return False, _missing_inputs(fn, len(data)), "error"
            return await push(body, request, username)

        queue.push = push_checked


DATA_URL_TOO_LARGE = "<data url too large>"


class UploadImage(gr.Image):
    """A gr.Image whose preprocess hands the raw upload to `demo.validation.load_image`.

    gradio's own preprocess opens the file with PIL first, so a non-image, a truncated file or a
    decompression bomb would surface as gradio's generic error instead of our message. An image sent
    inline as a data URL (paste, webcam, API) is decoded from memory: nothing is written to disk."""

    def get_block_name(self) -> str:
        return "image"

    def preprocess(self, payload):  # type: ignore[override]
        if payload is None:
            return None
        url = getattr(payload, "url", None)
        if url and url.startswith("data:"):
            head, _, data = url.partition(",")
            if len(data) > MAX_FILE_BYTES * 4 // 3 + 4:
                return DATA_URL_TOO_LARGE
            try:
                return base64.b64decode(data, validate=False) if ";base64" in head else data.encode()
            except (ValueError, binascii.Error):
                return b""  # load_image: "The image is empty"
        return str(payload.path) if payload.path else None


def _upload_ok(path: Any, services: DemoServices) -> bool:
    """Only gradio uploads (its cache folder) and the operator's dataset folder are read."""
    if isinstance(path, bytes):  # an inline image, decoded from memory
        return True
    if path is None or not isinstance(path, (str, os.PathLike)):
        return path is None
    from gradio.utils import get_upload_folder

    roots = [get_upload_folder()]
    if services.has_dataset and services.dataset_root is not None:
        roots.append(str(services.dataset_root))
    return any(inside(path, r) for r in roots)


# ------------------------------------------------------------------------------------------------
# Tabs
# ------------------------------------------------------------------------------------------------


def recognize_tab(services: DemoServices) -> None:
    """Image and examples on the left; Classify with both models' answers and verdicts right under it (in view
    at 1280x900 without scrolling), the top-k bars below them; the candidate labels and WiSE-FT in an accordion."""
    choices = H.filter_choices(services)
    cfg = services.config
    examples = H.example_pairs(services, 8)
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=280):
            image = UploadImage(type="filepath", sources=["upload", "clipboard"], label="Image", height=240,
                                elem_id="input-image", elem_classes=["pixel-view"])
            if examples:
                gallery = gr.Gallery(value=[(p, t) for p, t in examples], columns=4, rows=2, height="auto",
                                     allow_preview=False, object_fit="contain", show_label=True, buttons=[],
                                     interactive=False,
                                     label="Examples: cultural twins from the dataset (click one)",
                                     elem_id="examples", elem_classes=["pixel-view", "captions-below"])
            truth = gr.Textbox(label="True concept (of the example picked)", interactive=False,
                               elem_id="true-concept", max_lines=1)
        with gr.Column(scale=6, min_width=280):
            words = H.copy_examples(services)
            typed = gr.Textbox(label="Extra labels (comma separated)", lines=1, max_lines=3,
                               placeholder=f"e.g. {words['labels']}" if words["labels"] else "e.g. two look-alike concepts")
            run = gr.Button("Classify", variant="primary", elem_id="classify")
            verdicts = gr.HTML(VERDICT_PLACEHOLDER, elem_id="verdict-panel", padding=False)
            message = gr.Markdown(latex_delimiters=[], elem_id="classify-message")  # typed labels: no maths, no links
            with gr.Row(elem_classes=["answers"]):
                out_base = gr.Label(label=f"{cfg.base_name}: top answers", num_top_classes=H.MAX_TOP_K,
                                    elem_id="answer-base", min_width=200, show_heading=False)
                out_tuned = gr.Label(label=f"{cfg.tuned_name}: top answers", num_top_classes=H.MAX_TOP_K,
                                     elem_id="answer-tuned", min_width=200, show_heading=False)
            with gr.Accordion("Candidate labels, WiSE-FT blend, top-k", open=False, elem_id="options"):
                use_catalog = gr.Checkbox(value=True, label="Use catalog concepts as candidate labels")
                with gr.Row():
                    category = gr.Dropdown(choices["category"], value=H.ALL, label="Category", min_width=100)
                    region = gr.Dropdown(choices["region"], value=H.ALL, label="Region", min_width=100)
                    culture = gr.Dropdown(choices["culture"], value=H.ALL, label="Culture", min_width=100)
                with gr.Row():
                    wise_ok, wise_note = services.wise_available()
                    alpha = gr.Slider(0, 1, value=1.0, step=0.1, label="WiSE-FT α (0 = base weights, 1 = CultureCLIP)",
                                      interactive=wise_ok, info=wise_note or None, min_width=200)
                    top_k = gr.Slider(1, H.MAX_TOP_K, value=5, step=1, label="Top-k", min_width=160)

    def classify_core(images, typeds, use_cats, cats, regs, culs, alphas, top_ks) -> list[H.ClassifyResult]:
        """Both models' top-k for each request of a batch (gradio batch=True: one list per input)."""
        n = len(images)
        cands: list[Any] = []
        errors: dict[int, str] = {}
        for i in range(n):
            bad = next((x for x in (images[i], typeds[i], use_cats[i], cats[i], regs[i], culs[i], alphas[i], top_ks[i])
                        if isinstance(x, BadInput)), None)
            if bad is not None:
                errors[i] = f"❌ {bad.message}"
                cands.append(None)
                continue
            if isinstance(images[i], str) and images[i] == DATA_URL_TOO_LARGE:
                errors[i] = f"❌ The pasted image is larger than {MAX_FILE_BYTES // 2**20} MB."
                cands.append(None)
                continue
            if not _upload_ok(images[i], services):
                errors[i] = "❌ That image is not an upload; upload or paste a picture."
                cands.append(None)
                continue
            try:
                cands.append(H.build_candidates(services, typeds[i], bool(use_cats[i]), cats[i], regs[i], culs[i]))
            except DemoInputError as e:
                errors[i] = f"❌ {e}"
                cands.append(None)
        todo = [i for i in range(n) if i not in errors]
        res: dict[int, H.ClassifyResult] = {}
        if todo:
            try:
                out = H.classify_batch(services, [images[i] for i in todo], [cands[i] for i in todo],
                                       [alphas[i] for i in todo], [top_ks[i] for i in todo])
                res = dict(zip(todo, out))
            except (DemoInputError, ServiceError) as e:
                errors.update({i: f"❌ {e}" for i in todo})
            except Exception as e:  # noqa: BLE001
                logger.exception("classification failed")
                errors.update({i: f"❌ Classification failed ({type(e).__name__}); try another image." for i in todo})
        return [res.get(i) or H.ClassifyResult({}, {}, errors[i], ok=False) for i in range(n)]

    @gpu
    def classify(image, labels, use_catalog, category, region, culture, alpha, top_k):
        """Classify an image with the base model and CultureCLIP: each model's top-k labels with probabilities,
        and a message (which model says what, cultural-twin flags, notes). `labels`: extra comma-separated
        labels; `use_catalog`: add the catalog's concepts (filtered by `category`, `region`, `culture`, "All"
        for any); `alpha`: WiSE-FT blend of CultureCLIP with the base weights (0..1); `top_k`: 1..20."""
        rs = classify_core(image, labels, use_catalog, category, region, culture, alpha, top_k)
        return [[r.base or None for r in rs], [r.tuned or None for r in rs], [r.message for r in rs]]

    @gpu
    def classify_page(image, labels, use_catalog, category, region, culture, alpha, top_k, true_concept):
        """The page's view: the verdicts against the true concept (of a picked example) above the top-k bars."""
        rs = classify_core(image, labels, use_catalog, category, region, culture, alpha, top_k)
        panels = [H.verdicts_html(services, r, t if isinstance(t, str) else None) for r, t in zip(rs, true_concept)]
        return [panels, [r.base or None for r in rs], [r.tuned or None for r in rs],
                [r.notes if r.ok else r.message for r in rs]]

    def tuned_title(alpha):
        """The right panel is titled by the model it shows: CultureCLIP, or the WiSE-FT blend when one is possible."""
        return gr.Label(label=f"{H.tuned_panel_name(services, alpha)}: top answers")

    inputs = [image, typed, use_catalog, category, region, culture, alpha, top_k]
    batch = dict(batch=True, max_batch_size=MAX_BATCH, concurrency_limit=CONCURRENCY)
    # the API: the same models, without the page's verdict panel (never-shown buttons carry it)
    gr.Button(visible=False).click(classify, inputs, [out_base, out_tuned, message], api_name="classify", **batch)
    gr.Button(visible=False).click(tuned_title, [alpha], [out_tuned], api_name="tuned_title", queue=False)
    run.click(classify_page, inputs + [truth], [verdicts, out_base, out_tuned, message], api_visibility="private",
              **batch).then(tuned_title, [alpha], [out_tuned], api_visibility="private", queue=False).then(
        None, js=SCROLL_TO_VERDICTS)
    cleared = (VERDICT_PLACEHOLDER, None, None, "")
    image.upload(lambda: ("",) + cleared, None, [truth, verdicts, out_base, out_tuned, message],
                 api_name="clear_truth", queue=False)  # own upload: truth unknown, old answers gone
    if examples:
        def pick_example(evt: gr.SelectData):
            path, label = examples[evt.index]
            return (path, label) + cleared

        gallery.select(pick_example, None, [image, truth, verdicts, out_base, out_tuned, message],
                       api_visibility="private", queue=False)


VERDICT_PLACEHOLDER = ('<div id="verdicts" class="empty">Pick an example (or upload an image), then '
                       '<b>Classify</b>: each model\'s answer appears here, checked against the true concept.</div>')
# after Classify: bring the verdicts into view if they are not (a phone, a scrolled page); no jump otherwise
SCROLL_TO_VERDICTS = """() => { const el = document.querySelector('#verdicts');
  if (el) el.scrollIntoView({block: 'nearest', behavior: 'instant'}); }"""


def twin_tab(services: DemoServices) -> None:
    if not services.has_dataset:  # the owner's fix (--dataset) is in the log and the README
        gr.Markdown("ℹ️ This app has no image dataset loaded, so there are no twin images to browse here. The "
                    "Recognize tab works with your own images.")
        logger.info("twin explorer and search have no images: start the app with --dataset (env CULTURECLIP_DATASET)")
    choices = H.filter_choices(services) if services.has_dataset else {"category": [H.ALL], "culture": [H.ALL]}
    pairs = H.search_pairs(services) if services.has_dataset else []
    with gr.Row():
        query = gr.Textbox(label="Search pairs", placeholder="name, culture or category", scale=3)
        category = gr.Dropdown(choices["category"], value=H.ALL, label="Category", scale=1)
        culture = gr.Dropdown(choices["culture"], value=H.ALL, label="Culture", scale=1)
    pair = gr.Dropdown(pairs, value=pairs[0][1] if pairs else None, label=f"Twin pair ({len(pairs)} found)",
                       allow_custom_value=True)  # the handler validates the value itself
    with gr.Row():
        with gr.Column(scale=3):
            gallery_a = gr.Gallery(label="Side A", columns=4, height="auto", object_fit="contain",
                                   elem_classes=["pixel-view", "captions-below"], elem_id="pair-a", buttons=["fullscreen"])
            gallery_b = gr.Gallery(label="Side B", columns=4, height="auto", object_fit="contain",
                                   elem_classes=["pixel-view", "captions-below"], elem_id="pair-b", buttons=["fullscreen"])
        with gr.Column(scale=2):
            info = gr.Markdown()
    similarity = gr.Plot(label="Similarity matrices")
    with gr.Row():
        with gr.Column(scale=3):
            confusion_note = gr.Markdown()
            confusion = gr.Gallery(label="Confusion gallery: images the base model gives to the twin", columns=3,
                                   height="auto", object_fit="contain", elem_classes=["pixel-view", "captions-below"],
                                   elem_id="confusion-gallery", buttons=["fullscreen"])
        with gr.Column(scale=2):
            scatter = gr.Plot(label="Own vs twin similarity")
    gr.Markdown("### Confusion map across the catalog")
    map_btn = gr.Button("Compute the confusion map (embeds every dataset image once)")
    # shown once computed (an empty table would show placeholder headers "1 2 3")
    map_plot = gr.Plot(label="Pairs the base model confuses most", visible=False)
    map_table = gr.Dataframe(label="All pairs", max_height=320, interactive=False, visible=False, wrap=True)

    @_safe
    def find_pairs(query, category, culture):
        found = H.search_pairs(services, query, category, culture)
        return gr.Dropdown(choices=found, value=found[0][1] if found else None, label=f"Twin pair ({len(found)} found)")

    outputs = [info, gallery_a, gallery_b, similarity, confusion_note, confusion, scatter]
    # while the dataset images are still being embedded (minutes for ViT-B/32 on CPU), the browser shows the
    # pair's text and images with the progress, and this timer fills in the similarity panels once it is done
    refresh = gr.Timer(2.0, active=False)

    def _outputs(v):
        return v.info, v.gallery_a, v.gallery_b, v.similarity, v.confusion_note, v.confusion, v.scatter

    @gpu
    @_safe
    def show_pair(value):
        """The API's view (`/twin_pair`): an error with the progress while the index is built, so clients retry."""
        return _outputs(H.pair_view(services, value))

    @gpu
    @_safe
    def browse_pair(value):
        """The browser's view: never an error panel for a pair the page offered; a preview while indexing."""
        if not services.has_dataset:
            return [gr.skip()] * len(outputs) + [gr.Timer(active=False)]
        try:
            return [*_outputs(H.pair_view(services, value)), gr.Timer(active=False)]
        except IndexNotReady:  # still embedding (poll until done), or the build failed (the note says so)
            return [*_outputs(H.pair_preview(services, value)), gr.Timer(active=not services.wait_index(0))]

    def poll_index(value):
        if not services.wait_index(0):  # still embedding: keep the preview (its note has the progress)
            return [gr.skip()] * len(outputs) + [gr.Timer(active=True)]
        return browse_pair(value)

    def shown_map():
        fig, table = H.confusion_map(services)
        return gr.Plot(fig, visible=True), gr.Dataframe(table, visible=True)

    @gpu
    @_safe
    def show_map():  # the API: the figure and the table themselves
        return H.confusion_map(services)

    @gpu
    @_safe
    def browse_map():
        try:
            return shown_map()
        except IndexNotReady as e:  # a notice with the progress, not Error panels
            gr.Warning(str(e))
            return gr.skip(), gr.skip()

    for comp in (query, category, culture):
        ev = comp.submit if isinstance(comp, gr.Textbox) else comp.change
        ev(find_pairs, [query, category, culture], [pair], api_name=f"find_pairs_{'query' if comp is query else comp.label.lower()}")
    pair.change(browse_pair, [pair], outputs + [refresh], api_visibility="private", concurrency_limit=CONCURRENCY)
    refresh.tick(poll_index, [pair], outputs + [refresh], api_visibility="private", concurrency_limit=CONCURRENCY,
                 show_progress="hidden")
    # the API endpoints keep their strict answers (a never-shown button carries them)
    api_only = gr.Button(visible=False)
    api_only.click(show_pair, [pair], outputs, api_name="twin_pair", concurrency_limit=CONCURRENCY)
    api_only.click(show_pair, [pair], outputs, api_name="twin_tab_open", concurrency_limit=CONCURRENCY)
    ui_and_api(map_btn.click, browse_map, show_map, [], [map_plot, map_table], "confusion_map", concurrency_limit=1)
    return pair, browse_pair, outputs + [refresh]


def fixed_decimals(frame: Any, decimals: int) -> Any:
    """A results table shown with the same number of decimals in every float column (67.0 shows as "67.0",
    not "67", next to 67.4); the values stay numbers for sorting, the CSV and the API."""
    import pandas as pd

    if not isinstance(frame, pd.DataFrame) or frame.empty:
        return frame
    floats = [c for c in frame.columns if pd.api.types.is_float_dtype(frame[c])]
    return frame.style.format(f"{{:.{decimals}f}}", subset=floats, na_rep="—") if floats else frame


def _plot(fig: Any) -> Any:
    """A plotly figure for gr.Plot without plotly's toolbar, which covers the figure's title on a phone."""
    if fig is None:
        return None
    from gradio.components.plot import PlotData

    spec = json.loads(fig.to_json())
    spec["config"] = {"displayModeBar": False, "responsive": True}
    return PlotData(type="plotly", plot=json.dumps(spec))


def benchmarks_tab(services: DemoServices) -> None:
    cfg = services.config
    drop = H.benchmark_dropdowns(services)
    with gr.Row(equal_height=True):
        with gr.Column(scale=4, min_width=300):
            eval_status = gr.Markdown(H.evaluation_status(services)[0] if services.has_dataset else "",
                                      elem_id="eval-status")
        evaluate_btn = gr.Button("Evaluate the loaded models on the dataset's test split", size="sm", scale=0,
                                 min_width=200, visible=services.has_dataset)
    message = gr.Markdown(elem_id="bench-message")
    comparison = gr.Dataframe(H.empty_comparison(services), label=f"{cfg.base_name} vs {cfg.tuned_name} (values in %)", max_height=420,
                              interactive=False, wrap=True, elem_id="bench-comparison",
                              column_widths=["17%", "14%", "21%", "10%", "11%", "9%", "12%", "6%"])
    gr.Markdown(f"Higher is better. **Δ points** = {cfg.tuned_name} − {cfg.base_name}; its **95% interval** comes "
                "from a paired bootstrap over the items both models saw (an interval that excludes 0 is a difference "
                "beyond chance; — where the results keep no per-item values). Overall rows first, then by region and "
                "category.", elem_classes=["bench-help"])
    models_md = gr.Markdown(elem_id="bench-models")
    with gr.Row():
        bars = gr.Plot(show_label=False, elem_id="bench-bars", min_width=300)
        heat = gr.Plot(show_label=False, elem_id="bench-heat", min_width=300)
    with gr.Accordion("Every result: filters, all metrics, other models, CSV", open=False):
        with gr.Row():
            benchmarks = gr.Dropdown(drop["benchmark"], multiselect=True, label="Benchmarks (all when empty)", min_width=160)
            models = gr.Dropdown(drop["model"], multiselect=True, label="Models", min_width=160)
            regions = gr.Dropdown(drop["region"], multiselect=True, label="Regions", min_width=160)
            categories = gr.Dropdown(drop["category"], multiselect=True, label="Categories", min_width=160)
        with gr.Row():
            main_only = gr.Checkbox(value=True, label="Main metric only")
            refresh = gr.Button("Update", variant="primary")
            download = gr.DownloadButton("Download CSV", visible=False)
        table = gr.Dataframe(label="Results (%)", max_height=380, interactive=False, show_search="search", wrap=True,
                             elem_id="bench-table")
    # while the launch evaluation runs, its progress is shown and the tables fill in when it ends (no click)
    timer = gr.Timer(2.0, active=services.has_dataset and services.evaluator.state.status == "running")

    def _view(b, m, r, c, main):
        v = H.benchmark_view(services, b, m, r, c, bool(main))
        dl = gr.DownloadButton("Download CSV", value=v.csv_path, visible=v.csv_path is not None)
        return [v.message, fixed_decimals(v.comparison, 1), fixed_decimals(v.table, 2), _plot(v.bars), _plot(v.heatmap),
                dl, H.evaluation_status(services)[0],
                v.models]

    def _choices():
        ch = H.benchmark_dropdowns(services)
        return [gr.Dropdown(choices=ch["benchmark"]), gr.Dropdown(choices=ch["model"]),
                gr.Dropdown(choices=ch["region"]), gr.Dropdown(choices=ch["category"])]

    @_safe
    def update(benchmarks, models, regions, categories, main_only):
        return _view(benchmarks, models, regions, categories, main_only)

    @_safe
    def poll(b, m, r, c, main):
        text, running = H.evaluation_status(services)
        if running:
            return [H.empty_state(services) if services.results.dashboard_frame() is None else gr.skip()] + [gr.skip()] * 5 \
                + [text, gr.skip()] + [gr.skip()] * 4 + [gr.Timer(active=True)]
        return _view(b, m, r, c, main) + _choices() + [gr.Timer(active=False)]

    def evaluate(benchmarks, models, regions, categories, main_only, progress=gr.Progress()):
        """Start (or join) the background evaluation, show its progress, then the refreshed dashboard."""
        try:
            yield from _evaluate(benchmarks, models, regions, categories, main_only, progress)
        except (DemoInputError, ServiceError) as e:
            raise gr.Error(str(e), print_exception=False) from None
        except gr.Error:
            raise
        except Exception as e:  # noqa: BLE001 - details to the server log only
            logger.exception("evaluation handler failed")
            raise gr.Error(f"Something went wrong ({type(e).__name__}).", print_exception=False) from None

    def _evaluate(b, m, r, c, main, progress):
        H.start_evaluation(services)
        while True:
            text, running = H.evaluation_status(services)
            if not running:
                break
            progress(services.evaluator.state.progress, desc="evaluating")
            yield [gr.skip()] * 6 + [text] + [gr.skip()] * 5
            with services.gate.away():  # the evaluation must not pause for this request, which waits on it
                time.sleep(0.5)
        yield _view(b, m, r, c, main) + _choices()

    inputs = [benchmarks, models, regions, categories, main_only]
    outputs = [message, comparison, table, bars, heat, download, eval_status, models_md]
    dropdowns = [benchmarks, models, regions, categories]
    refresh.click(update, inputs, outputs, api_name="benchmarks")
    evaluate_btn.click(evaluate, inputs, outputs + dropdowns, api_name="evaluate", concurrency_limit=CONCURRENCY)
    timer.tick(poll, inputs, outputs + dropdowns + [timer], api_visibility="private", show_progress="hidden")
    return update, inputs, outputs


def atlas_tab(services: DemoServices) -> None:
    gr.Markdown(
        "### Cultural confusion atlas\n"
        "For every twin pair of the catalog: how close each model puts the two concepts' prompts and names "
        "(text against text; no images needed). Pairs whose texts nearly coincide are ones a model can hardly "
        "tell apart by text. The same atlas for any CLIP: `python -m eval_suite.confusions --models SPEC [SPEC] --out DIR`.")
    with gr.Row():
        metric = gr.Dropdown(list(H.ATLAS_METRICS), value="prompt cosine", label="Value in the table and figures",
                             scale=1, min_width=160)
        query = gr.Textbox(label="Filter pairs", placeholder="name, culture, region or category", scale=2, min_width=160)
        top = gr.Slider(10, 400, value=100, step=10, label="Rows", scale=1, min_width=160)
        go = gr.Button("Compute the atlas", variant="primary", scale=1, min_width=160)
    message = gr.Markdown(elem_id="atlas-message")
    legend = gr.Markdown(elem_id="atlas-legend")
    table = gr.Dataframe(label="Twin pairs, most confusable for the base model first", max_height=380,
                         interactive=False, wrap=True, elem_id="atlas-table",
                         column_widths=["7%", "27%", "22%", "12%", "10%", "12%", "10%"])
    with gr.Row():
        heat = gr.Plot(show_label=False, elem_id="atlas-heat", min_width=300)
        world = gr.Plot(show_label=False, elem_id="atlas-world", min_width=300)

    @gpu
    @_safe
    def show(metric, query, rows):
        v = H.atlas_view(services, metric, query, int(rows))
        return v.message, fixed_decimals(v.table, H.ATLAS_DIGITS), _plot(v.heatmap), _plot(v.world), v.legend

    outs = [message, table, heat, world, legend]
    go.click(show, [metric, query, top], outs, api_name="atlas", concurrency_limit=1)
    query.submit(show, [metric, query, top], outs, api_name="atlas_filter", concurrency_limit=1)


def search_tab(services: DemoServices) -> None:
    if not services.has_dataset:
        gr.Markdown("ℹ️ This app has no image dataset loaded, so there are no images to search here.")
    with gr.Row():
        words = H.copy_examples(services) if services.has_dataset else {"queries": []}
        query = gr.Textbox(label="Describe an image", scale=4,
                           placeholder=f"e.g. {words['queries'][0]}" if words["queries"] else "describe an image")
        k = gr.Slider(1, 24, value=8, step=1, label="Results", scale=1)
        go = gr.Button("Search", variant="primary", scale=1)
    examples = []
    if services.has_dataset:  # suggestions are concepts the dataset has images of
        examples = [[q] for q in words["queries"]]
    if examples:
        gr.Examples(examples, inputs=[query], label="Try")
    message = gr.Markdown(latex_delimiters=[], elem_id="search-message")  # echoes the query literally
    with gr.Row():
        g_base = gr.Gallery(label=services.config.base_name, columns=4, height="auto", object_fit="contain",
                            elem_classes=["pixel-view", "captions-below"], elem_id="search-base", min_width=160,
                            buttons=["fullscreen"])
        g_tuned = gr.Gallery(label=services.config.tuned_name, columns=4, height="auto", object_fit="contain",
                             elem_classes=["pixel-view", "captions-below"], elem_id="search-tuned", min_width=160,
                             buttons=["fullscreen"])

    @gpu
    @_safe
    def run(query, top_k):
        r = H.search(services, query, top_k)
        return r.message, r.base, r.tuned

    @gpu
    @_safe
    def browse(query, top_k):
        try:
            r = H.search(services, query, top_k)
        except IndexNotReady as e:  # the progress as the message, not Error panels
            return f"{H.INDEX_PENDING}{e}", [], []
        names = services.config.base_name, services.config.tuned_name
        if r.concept is None:
            return r.message, gr.Gallery(r.base, label=names[0]), gr.Gallery(r.tuned, label=names[1])
        what = services.concepts()[r.concept].name
        return (r.message,  # each panel says how well its model did
                gr.Gallery(r.base, label=f"{names[0]}: {r.counts['base']} of {len(r.base)} are {what}"),
                gr.Gallery(r.tuned, label=f"{names[1]}: {r.counts['tuned']} of {len(r.tuned)} are {what}"))

    io = ([query, k], [message, g_base, g_tuned])
    ui_and_api(go.click, browse, run, *io, "search", concurrency_limit=CONCURRENCY)
    ui_and_api(query.submit, browse, run, *io, "search_submit", concurrency_limit=CONCURRENCY)


# ------------------------------------------------------------------------------------------------
# Assembly
# ------------------------------------------------------------------------------------------------


def build_demo(services: DemoServices) -> gr.Blocks:
    """The whole app; nothing heavy happens here except reading the manifest/results (no model load)."""
    offline = services.config.offline_world
    with DemoBlocks(title="CultureCLIP demo", analytics_enabled=False, delete_cache=DELETE_CACHE) as demo:
        demo.visitor_gate = services.gate
        gr.Markdown(intro(services))
        gr.Markdown(services.banner(), elem_classes=["banner", "offline" if offline else "online"], elem_id="banner")
        with gr.Tabs():
            with gr.Tab("Recognize", id="recognize"):
                recognize_tab(services)
            with gr.Tab("Twin explorer", id="twins") as twins:
                pair, browse_pair, pair_outputs = twin_tab(services)
            with gr.Tab("Benchmarks", id="benchmarks") as bench:
                update, b_inputs, b_outputs = benchmarks_tab(services)
            with gr.Tab("Search", id="search"):
                search_tab(services)
            with gr.Tab("Confusion atlas", id="atlas"):
                atlas_tab(services)
        # fill the twin and benchmark tabs when they are first opened (no model work at startup)
        twins.select(browse_pair, [pair], pair_outputs, api_visibility="private", concurrency_limit=CONCURRENCY)
        bench.select(update, b_inputs, b_outputs, api_name="benchmarks_tab_open")
    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=CONCURRENCY)
    demo.guard_batches()
    services.start_indexing()  # embeds the dataset images in a background thread (requests never wait for it)
    return demo


def _gate_middleware(services: DemoServices):
    from starlette.middleware import Middleware

    return Middleware(GateMiddleware, gate=services.gate)


def launch_kwargs(services: DemoServices, **overrides: Any) -> dict[str, Any]:
    """Serving settings: upload size limit, only the dataset folder served, theme and CSS."""
    root = services.dataset_root if services.has_dataset else None  # the default dataset is built by now
    allowed = [str(root.resolve())] if root is not None else []
    kw: dict[str, Any] = dict(
        max_file_size=MAX_FILE_BYTES,
        allowed_paths=allowed,
        show_error=True,  # our gr.Error messages reach the user; unexpected errors are generic (see _safe)
        theme=gr.themes.Soft(primary_hue="orange", secondary_hue="blue"),
        css=CSS,
        footer_links=["api"],
        ssr_mode=False,
        app_kwargs={"middleware": [_gate_middleware(services)]},  # page loads go before background work too
    )
    kw.update(overrides)
    return kw
