"""Gradio layout: `build_demo(services) -> gr.Blocks`, one function per tab, `api_name` on every event.

Handlers live in demo/handlers.py (plain functions); this module only wires components, turns
`DemoInputError`/`ServiceError` into `gr.Error` messages (never a traceback) and sets the serving
limits (`launch_kwargs`).
"""
from __future__ import annotations

import functools
import html
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from . import handlers as H
from .services import DemoServices, IndexNotReady, ServiceError, gpu, quantize_alpha
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
        return html.escape(scrub_paths(text), quote=False)
    return f"Something went wrong ({type(e).__name__}). Try another input."


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
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except Exception as e:  # noqa: BLE001
            if not block_fn.batch:
                raise
            return [BadInput(plain_error(e))] * len(block_fn.inputs)

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
            import base64
            import binascii

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
    choices = H.filter_choices(services)
    cfg = services.config
    with gr.Row():
        with gr.Column(scale=5):
            image = UploadImage(type="filepath", sources=["upload", "clipboard"], label="Image", height=300,
                                elem_id="input-image", elem_classes=["pixel-view"])
            truth = gr.Textbox(label="True concept (of the example picked)", interactive=False, elem_id="true-concept")
            examples = H.example_pairs(services, 8)
            if examples:
                gr.Examples(examples=[[p, t] for p, t in examples], inputs=[image, truth],
                            label="Examples: twin pairs from the dataset (with their true concept)",
                            examples_per_page=8, elem_id="examples")
        with gr.Column(scale=5):
            use_catalog = gr.Checkbox(value=True, label="Use catalog concepts as candidate labels")
            with gr.Row():
                category = gr.Dropdown(choices["category"], value=H.ALL, label="Category", min_width=120)
                region = gr.Dropdown(choices["region"], value=H.ALL, label="Region", min_width=120)
                culture = gr.Dropdown(choices["culture"], value=H.ALL, label="Culture", min_width=120)
            words = H.copy_examples(services)
            typed = gr.Textbox(label="Extra labels (comma separated)", lines=2,
                               placeholder=f"e.g. {words['labels']}" if words["labels"] else "e.g. two look-alike concepts")
            with gr.Row():
                wise_ok, wise_note = services.wise_available()
                alpha = gr.Slider(0, 1, value=1.0, step=0.1, label="WiSE-FT α (0 = base weights, 1 = CultureCLIP)",
                                  interactive=wise_ok, info=wise_note or None)
                top_k = gr.Slider(1, H.MAX_TOP_K, value=5, step=1, label="Top-k")
            run = gr.Button("Classify", variant="primary")
    message = gr.Markdown(latex_delimiters=[])  # shows typed labels: no maths, no links (handlers escape them)
    with gr.Row():
        with gr.Column(elem_classes="model-col"):
            out_base = gr.Label(label=cfg.base_name, num_top_classes=H.MAX_TOP_K)
        with gr.Column(elem_classes="model-col"):
            out_tuned = gr.Label(label=cfg.tuned_name, num_top_classes=H.MAX_TOP_K)

    @gpu
    def classify_batch(images, typeds, use_cats, cats, regs, culs, alphas, top_ks):
        # gradio batch=True: one list per input, one list per output
        n = len(images)
        cands: list[Any] = []
        errors: dict[int, str] = {}
        for i in range(n):
            bad = next((x for x in (images[i], typeds[i], alphas[i], top_ks[i]) if isinstance(x, BadInput)), None)
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
        bases, tuneds, msgs = [], [], []
        for i in range(n):
            if i in errors:
                bases.append(None)
                tuneds.append(None)
                msgs.append(errors[i])
            else:
                r = res[i]
                bases.append(r.base or None)
                tuneds.append(r.tuned or None)
                msgs.append(r.message)
        return [bases, tuneds, msgs]

    def tuned_title(a):
        """The right panel is titled by the model it shows: CultureCLIP, or the WiSE-FT blend."""
        q = quantize_alpha(a)
        return gr.Label(label=cfg.tuned_name if q >= 1.0 else f"WiSE-FT α={q:.1f} ({cfg.base_name} ↔ {cfg.tuned_name})")

    run.click(
        classify_batch,
        inputs=[image, typed, use_catalog, category, region, culture, alpha, top_k],
        outputs=[out_base, out_tuned, message],
        api_name="classify",
        batch=True,
        max_batch_size=MAX_BATCH,
        concurrency_limit=CONCURRENCY,
    ).then(tuned_title, [alpha], [out_tuned], api_name="tuned_title", queue=False)
    image.upload(lambda: "", None, [truth], api_name="clear_truth", queue=False)  # own upload: truth unknown


def twin_tab(services: DemoServices) -> None:
    if not services.has_dataset:
        gr.Markdown("ℹ️ No dataset is configured, so the twin explorer has no images. Start the app with `--dataset`.")
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
            gallery_a = gr.Gallery(label="Side A", columns=4, height=260, object_fit="contain", elem_classes=["pixel-view"])
            gallery_b = gr.Gallery(label="Side B", columns=4, height=260, object_fit="contain", elem_classes=["pixel-view"])
        with gr.Column(scale=2):
            info = gr.Markdown()
    similarity = gr.Plot(label="Similarity matrices")
    with gr.Row():
        with gr.Column(scale=3):
            confusion_note = gr.Markdown()
            confusion = gr.Gallery(label="Confusion gallery: images the base model gives to the twin", columns=3, height=300,
                                   object_fit="contain", elem_classes=["pixel-view", "wrap-captions"], elem_id="confusion-gallery")
        with gr.Column(scale=2):
            scatter = gr.Plot(label="Own vs twin similarity")
    gr.Markdown("### Confusion map across the catalog")
    map_btn = gr.Button("Compute the confusion map (embeds every dataset image once)")
    map_plot = gr.Plot(label="Pairs the base model confuses most")
    map_table = gr.Dataframe(label="All pairs", max_height=320, interactive=False)

    @_safe
    def find_pairs(q, cat, cul):
        found = H.search_pairs(services, q, cat, cul)
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

    @gpu
    @_safe
    def show_map():
        return H.confusion_map(services)

    @gpu
    @_safe
    def browse_map():
        try:
            return H.confusion_map(services)
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


def benchmarks_tab(services: DemoServices) -> None:
    choices = H.benchmark_choices(services)
    with gr.Row():
        benchmarks = gr.Dropdown(choices["benchmark"], multiselect=True, label="Benchmarks (all when empty)")
        models = gr.Dropdown(choices["model"], multiselect=True, label="Models")
        regions = gr.Dropdown(choices["region"], multiselect=True, label="Regions")
        categories = gr.Dropdown(choices["category"], multiselect=True, label="Categories")
    with gr.Row():
        main_only = gr.Checkbox(value=True, label="Main metric only")
        refresh = gr.Button("Update", variant="primary")
        download = gr.DownloadButton("Download CSV", visible=False)
    with gr.Row(visible=services.has_dataset):
        evaluate_btn = gr.Button("Evaluate the loaded models on the dataset's test split", scale=1)
        eval_status = gr.Markdown(H.evaluation_status(services)[0] if services.has_dataset else "")
    message = gr.Markdown()
    table = gr.Dataframe(label="Results (%)", max_height=380, interactive=False, show_search="search")
    with gr.Row():
        bars = gr.Plot(label="Main metric by benchmark")
        heat = gr.Plot(label="CultureCLIP − base by region × category")

    @_safe
    def update(b, m, r, c, main):
        v = H.benchmark_view(services, b, m, r, c, bool(main))
        dl = gr.DownloadButton("Download CSV", value=v.csv_path, visible=v.csv_path is not None)
        return v.message, v.table, v.bars, v.heatmap, dl, H.evaluation_status(services)[0]

    def evaluate(b, m, r, c, main, progress=gr.Progress()):
        """Start (or join) the background evaluation, show its progress, then the refreshed dashboard."""
        try:
            yield from _evaluate(b, m, r, c, main, progress)
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
            yield [text] + [gr.skip()] * 9
            time.sleep(0.5)
        v = H.benchmark_view(services, b, m, r, c, bool(main))
        ch = H.benchmark_choices(services)
        dl = gr.DownloadButton("Download CSV", value=v.csv_path, visible=v.csv_path is not None)
        yield [H.evaluation_status(services)[0], v.message, v.table, v.bars, v.heatmap, dl,
               gr.Dropdown(choices=ch["benchmark"]), gr.Dropdown(choices=ch["model"]),
               gr.Dropdown(choices=ch["region"]), gr.Dropdown(choices=ch["category"])]

    inputs = [benchmarks, models, regions, categories, main_only]
    outputs = [message, table, bars, heat, download, eval_status]
    refresh.click(update, inputs, outputs, api_name="benchmarks")
    evaluate_btn.click(evaluate, inputs, [eval_status, message, table, bars, heat, download,
                                          benchmarks, models, regions, categories],
                       api_name="evaluate", concurrency_limit=CONCURRENCY)
    return update, inputs, outputs


def atlas_tab(services: DemoServices) -> None:
    gr.Markdown(
        "### Cultural confusion atlas\n"
        "For every twin pair of the catalog: how close each model puts the two concepts' prompts and names "
        "(text-text cosine; no images needed). Pairs whose texts nearly coincide are ones a model can hardly "
        "tell apart. The same atlas for any CLIP: `python -m eval_suite.confusions --models SPEC [SPEC] --out DIR`.")
    with gr.Row():
        metric = gr.Dropdown(list(H.ATLAS_METRICS), value="prompt cosine", label="Value in the figures", scale=1)
        query = gr.Textbox(label="Filter pairs", placeholder="name, culture, region or category", scale=2)
        top = gr.Slider(10, 400, value=100, step=10, label="Rows", scale=1)
        go = gr.Button("Compute the atlas", variant="primary", scale=1)
    message = gr.Markdown()
    table = gr.Dataframe(label="Twin pairs, most confusable for the base model first", max_height=380,
                         interactive=False)
    with gr.Row():
        heat = gr.Plot(label="Region × category")
        world = gr.Plot(label="World map by culture")

    @gpu
    @_safe
    def show(m, q, k):
        v = H.atlas_view(services, m, q, int(k))
        return v.message, v.table, v.heatmap, v.world

    go.click(show, [metric, query, top], [message, table, heat, world], api_name="atlas", concurrency_limit=1)
    query.submit(show, [metric, query, top], [message, table, heat, world], api_name="atlas_filter",
                 concurrency_limit=1)


def search_tab(services: DemoServices) -> None:
    if not services.has_dataset:
        gr.Markdown("ℹ️ No dataset is configured, so there is nothing to search. Start the app with `--dataset`.")
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
        g_base = gr.Gallery(label=services.config.base_name, columns=4, height=420, object_fit="contain", elem_classes=["pixel-view"])
        g_tuned = gr.Gallery(label=services.config.tuned_name, columns=4, height=420, object_fit="contain", elem_classes=["pixel-view"])

    def answer(q, n):
        r = H.search(services, q, n)
        return r.message, r.base, r.tuned

    @gpu
    @_safe
    def run(q, n):
        return answer(q, n)

    @gpu
    @_safe
    def browse(q, n):
        try:
            return answer(q, n)
        except IndexNotReady as e:  # the progress as the message, not Error panels
            return f"{H.INDEX_PENDING}{e}", [], []

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

    from .background import GateMiddleware

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
