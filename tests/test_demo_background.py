"""Visitors first (issue 17, item 5): background work pauses for requests, WiSE-FT blend banks are precomputed
and kept on disk by weights hash, and a blend that is not ready yet shows its progress instead of a silent wait.

Each test failed before its fix: the index build ran on through requests, a blend's label bank was embedded
again on every new alpha (and after every restart), and a request at a new alpha waited silently."""
from __future__ import annotations

import threading
import time

import pytest
import torch

LABELS = [f"a photo of cultural concept number {i}" for i in range(40)]  # over SMALL_BANK: precomputed per alpha


@pytest.fixture()
def services(demo_world, tmp_path):
    from tests.demo_world import make_services

    s = make_services(demo_world, cache_dir=tmp_path / "cache")
    s.check(load_models=False)
    s.base.get(), s.tuned.get()  # the app loads both models at startup
    return s


@pytest.fixture()
def text_calls(monkeypatch):
    """Every text forward of any model (the expensive part of a label bank), as the number of texts embedded."""
    from cultureclip.inference import Embedder

    calls: list[int] = []
    real = Embedder.embed_texts

    def counted(self, texts):
        calls.append(len(texts))
        return real(self, texts)

    monkeypatch.setattr(Embedder, "embed_texts", counted)
    return calls


def test_the_index_build_pauses_while_a_request_is_active(services):
    """A visitor's request holds the gate: the background index makes no progress until it ends."""
    assert services.gate.install(services.base.get().backbone) == 0  # the holders installed the block hooks
    with services.gate.visitor():
        services.start_indexing()
        time.sleep(1.5)
        assert services.index.progress[0] == 0, "the index build ran while a request was active"
        assert services.gate.pauses >= 1 and not services.wait_index(0)
    assert services.wait_index(60) and services.index.progress[0] == services.index.progress[1] > 0


def test_a_background_forward_stops_between_transformer_blocks(services):
    """Within one forward: a background thread stops at the next block once a request is active."""
    from demo.background import background_thread

    emb = services.tuned.get()
    blocks: list[float] = []
    handles = [m.register_forward_pre_hook(lambda *_: blocks.append(time.perf_counter()))
               for m in emb.backbone.modules() if isinstance(m, torch.nn.ModuleList) for m in m]
    images = [torch.zeros(3, *((emb.backbone.image_size,) * 2 if isinstance(emb.backbone.image_size, int)
                                else emb.backbone.image_size))] * 2
    stop = threading.Event()

    def work():
        while not stop.is_set():
            emb.embed_images(images)

    t = background_thread(work, "test-forward")
    try:
        t.start()
        time.sleep(0.3)
        with services.gate.visitor():
            time.sleep(0.2)  # the block running when the request arrived finishes
            n = len(blocks)
            time.sleep(1.0)
            assert len(blocks) == n, "background blocks ran during the request"
            emb.embed_images(images)  # the visitor's own forward is not paused
            assert len(blocks) > n
        time.sleep(0.5)
        assert len(blocks) > n + 1, "the background forward did not resume"
    finally:
        stop.set()
        t.join(10)
        for h in handles:
            h.remove()


def test_a_new_alpha_after_the_precompute_embeds_nothing(services, text_calls):
    services.warm_start([LABELS])
    services.blends.start()
    assert services.blends.wait(120)
    text_calls.clear()
    for a in (0.3, 0.7, 0.1):
        emb = services.blended(a, LABELS)
        bank = emb.label_bank(LABELS)
        assert bank.shape[0] == len(LABELS) and bank.isfinite().all()
    assert text_calls == [], f"a precomputed alpha embedded {sum(text_calls)} texts"
    # typed labels added to the precomputed ones: only the typed label is embedded
    services.blended(0.3, LABELS + ["hanbok"]).label_bank(LABELS + ["hanbok"])
    assert text_calls == [1]


def test_blend_banks_are_read_from_disk_after_a_restart(services, demo_world, text_calls):
    from tests.demo_world import make_services

    services.warm_start([LABELS])
    services.blends.start()
    assert services.blends.wait(120)
    first = services.blended(0.4, LABELS).label_bank(LABELS)
    restarted = make_services(demo_world, cache_dir=services.config.cache_dir)
    restarted.check(load_models=False)
    restarted.warm_start([LABELS])  # the base and tuned banks: from disk too
    text_calls.clear()
    restarted.blends.start()
    assert restarted.blends.wait(60)
    again = restarted.blended(0.4, LABELS).label_bank(LABELS)
    assert text_calls == [], "the restarted app embedded blend banks again"
    assert torch.equal(again, first)
    # keyed by the weights: another tuned model gets other banks
    assert restarted.blends.key(0.4) == services.blends.key(0.4) != services.blends.key(0.5)


def test_a_blend_that_is_not_ready_shows_progress_and_the_base_answers(services, demo_world):
    from demo import handlers as H
    from demo.services import BlendNotReady

    services.warm_start([LABELS])
    cand = H.Candidates(display=list(LABELS), prompts=list(LABELS), concept_ids=[None] * len(LABELS))
    image = str(demo_world["dataset"] / "images/gyoza/gyoza_1.png")
    with services.gate.visitor():  # a request is active: the background precompute waits
        services.blends.start()
        t0 = time.perf_counter()
        with pytest.raises(BlendNotReady, match=r"Preparing the WiSE-FT blend at α=0\.3.*40 label embeddings"):
            services.blended(0.3, LABELS)
        r = H.classify_batch(services, [image], [cand], [0.3], [3])[0]
        assert time.perf_counter() - t0 < 10.0, "the request waited for the blend"
        assert "⏳" in r.message and "α=0.3" in r.message and len(r.base) == 3 and r.tuned == {}, r
        # typed labels alone are embedded on request: the blend answers at once
        few = H.Candidates(display=["gyoza", "jiaozi"], prompts=["gyoza", "jiaozi"], concept_ids=[None, None])
        r = H.classify_batch(services, [image], [few], [0.3], [2])[0]
        assert r.ok and len(r.tuned) == 2 and "WiSE-FT α=0.3" in r.message, r
        assert services.blends.wanted_alphas()[:1] == [0.3]  # the alpha a visitor asked for goes first
    assert services.blends.wait(120)
    r = H.classify_batch(services, [image], [cand], [0.3], [3])[0]
    assert r.ok and len(r.tuned) == 3 and "WiSE-FT α=0.3" in r.message, r


def test_blend_copy_equals_wise_ft_and_shares_no_weights(services):
    from demo.blends import blend_copy, blend_state_dicts

    base, tuned = services.base.get().backbone, services.tuned.get().backbone
    bb = blend_copy(base, tuned, 0.3)
    ref = blend_state_dicts(base.state_dict(), tuned.state_dict(), 0.3)
    got = bb.state_dict()
    assert set(got) == set(ref) and all(torch.equal(got[k], ref[k]) for k in ref)
    for (name, mine), (_, theirs) in zip(bb.named_buffers(), tuned.named_buffers()):  # incl. non-persistent ones
        assert torch.equal(mine, theirs) or name in ref, name
    image = torch.zeros(1, 3, *((bb.image_size,) * 2 if isinstance(bb.image_size, int) else bb.image_size))
    assert bb.encode_image(image).isfinite().all() and bb.encode_text(bb.tokenize(["gyoza"])).isfinite().all()
    tuned_ptrs = {t.data_ptr() for t in tuned.state_dict().values()}
    assert not any(t.data_ptr() in tuned_ptrs for t in got.values() if t.is_floating_point())


def test_the_starting_page_answers_while_the_app_loads(monkeypatch, caplog):
    """`python app.py` serves a page with the startup's progress at once, API calls get 503 with words, and the
    port is free for the app afterwards (before: the connection was refused until everything was loaded)."""
    import json
    import logging
    import socket
    import urllib.error
    import urllib.request

    import demo.app_config as app_config
    from demo import cli
    from demo.starting import MARKER

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    loading = threading.Event()
    release = threading.Event()

    def slow_build(args, hub=None):
        logging.getLogger("demo.services").info("loading base model /srv/secret/models/base on cpu")
        loading.set()
        release.wait(60)
        raise app_config.ConfigError("stopped by the test")

    monkeypatch.setattr(app_config, "build_services", slow_build)
    caplog.set_level(logging.INFO)  # as app.py's logging.basicConfig does (pytest's root logger is at WARNING)
    rc: list[int] = []
    t = threading.Thread(target=lambda: rc.append(cli.main(["--host", "127.0.0.1", "--port", str(port)])), daemon=True)
    t.start()
    try:
        assert loading.wait(30)
        url = f"http://127.0.0.1:{port}/"
        with urllib.request.urlopen(url, timeout=10) as r:
            page = r.read().decode()
        assert MARKER in page and "loading base model" in page and "/srv/secret" not in page, page[-600:]
        with urllib.request.urlopen(url + "?status=1", timeout=10) as r:
            status = json.loads(r.read())
        assert status["now"].startswith("loading base model") and "secret" not in status["now"], status
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(urllib.request.Request(url + "gradio_api/call/classify", data=b"{}"), timeout=10)
        assert e.value.code == 503 and "starting" in json.loads(e.value.read())["error"]
    finally:
        release.set()
        t.join(30)
    assert rc == [2]
    with socket.socket() as sock:  # the app can take the port
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


def test_cold_start_embeds_a_first_bank_renders_alone_then_embeds_the_catalog(demo_world, tmp_path, monkeypatch):
    """Cold start: the first, small label bank before the default dataset's render, the render alone on the CPU
    (torch at the same time slowed it ~2x on 2 cores), the full catalog banks after it, in the background."""
    import demo.dataset as wd  # where the demo calls synth.world.dataset.ensure_world_dataset from
    from demo.app_config import build_services, parse_args
    from demo.background import is_background
    from demo.models import Models

    order: list[str] = []
    real_render, real_first, real_all = wd.ensure_world_dataset, Models.warm_first, Models._warm_all

    full_started = threading.Event()

    def render(*a, **kw):
        order.append("render")
        full_started.wait(3)  # before the fix the full banks began here, during the render
        out = real_render(*a, **kw)
        order.append("render done")
        return out

    def first(self, *a, **kw):
        order.append("first bank")
        return real_first(self, *a, **kw)

    def full(self, *a, **kw):
        order.append("full banks (background)" if is_background() else "full banks (foreground)")
        full_started.set()
        return real_all(self, *a, **kw)

    monkeypatch.setattr(wd, "ensure_world_dataset", render)
    monkeypatch.setattr(Models, "warm_first", first)
    monkeypatch.setattr(Models, "_warm_all", full)
    s = build_services(parse_args(["--base", str(demo_world["base"]), "--tuned", str(demo_world["tuned"]),
                                   "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]))
    assert s.wait_warm(120)
    assert order == ["first bank", "render", "render done", "first bank", "full banks (background)"], order
    assert s.is_default_dataset and len(s.manifest()) > 0 and s.models.warm_labels


def test_every_request_of_the_served_app_holds_the_visitor_gate(demo_world, tmp_path):
    """DemoBlocks brackets each event with the gate: background work pauses while it runs."""
    from contextlib import contextmanager

    from gradio_client import Client

    from tests.demo_world import running_app

    with running_app(demo_world, cache_dir=tmp_path / "cache") as app:
        gate = app["services"].gate
        seen: list[int] = []
        real = gate.visitor

        @contextmanager
        def visitor():
            with real():
                seen.append(gate.active)
                yield

        gate.visitor = visitor
        client = Client(app["url"], verbose=False)
        client.predict("gyoza", "All", "All", api_name="/find_pairs_query")
        assert seen and seen[0] >= 1, "a request ran without holding the visitor gate"
        n = len(seen)
        import urllib.request

        with urllib.request.urlopen(app["url"], timeout=30) as r:  # a page load holds it too
            assert r.status == 200
        assert len(seen) > n
        assert gate.active == 0


def test_stopping_the_background_work_leaves_requests_to_build_blends(services):
    services.warm_start([LABELS])
    services.blends.start()
    services.stop_background(60)
    assert not services.blends.started
    emb = services.blended(0.3, LABELS)  # built on request now, never "not ready"
    assert emb.label_bank(LABELS).shape[0] == len(LABELS)


def test_the_first_answer_comes_before_the_full_catalog_bank(services, monkeypatch):
    """Cold start (issue 17, item 5): the app answers from a small first bank while the full catalog label banks
    embed in the background, says over how many catalog labels it ranked, and the full bank replaces it after.
    Before: warm_start embedded every catalog label before the app served (a first answer after 43 s+)."""
    from PIL import Image

    from cultureclip.inference import Embedder
    from demo.app_config import first_label_set
    from demo.background import is_background
    from demo.handlers import build_candidates, classify, concept_of_label, example_pairs

    release = threading.Event()
    blocked: list[int] = []
    real = Embedder.embed_texts

    def gated(self, texts):  # the background's text forwards wait until the test lets them go: no wall clock
        if is_background():
            blocked.append(len(texts))
            assert release.wait(60)
        return real(self, texts)

    monkeypatch.setattr(Embedder, "embed_texts", gated)
    full = build_candidates(services, "", True)
    n = len(full.prompts)
    cs = services.concepts()
    truth = next(c for c in sorted(cs) if cs[c].twins)
    twin = sorted(cs[truth].twins)[0]
    first = [cs[truth].prompt, cs[twin].prompt]
    assert n > len(first)
    services.warm_start([full.prompts], first=first)  # returns with the first bank; the rest in the background
    assert services.starter_prompts() == frozenset(first)
    image = Image.new("RGB", (40, 30), (10, 120, 40))
    r = classify(services, image, "a bowl of soup", True, top_k=5)
    assert r.ok, r.message
    assert f"Ranked over 2 of the catalog's {n:,} labels" in r.message and f"other {n - 2:,} are still loading" in r.message
    assert "candidate labels." not in r.message  # one count, not two (the note says what was ranked)
    assert "and your 1 own label;" in r.notes  # the two first-bank concepts + the visitor's own label
    assert set(r.base) <= {full.display[full.concept_ids.index(truth)], full.display[full.concept_ids.index(twin)],
                           "a bowl of soup"}
    assert {p.concept_id for p in r.picks} <= {truth, twin, None}
    assert not services.wait_warm(0)  # the full banks are still waiting for the gate
    release.set()
    assert services.wait_warm(120) and blocked
    after = classify(services, image, "", True, top_k=5)
    assert after.ok and f"{n:,} candidate labels." in after.message and "Ranked over" not in after.message
    assert services.starter_prompts() is None
    # the app's first bank holds every example's true concept and its twins (a picked example's verdict is right)
    prompts = set(first_label_set(services))
    for _, label in example_pairs(services, 8):
        c = concept_of_label(services, label)
        assert c.prompt in prompts and all(cs[t].prompt in prompts for t in c.twins)


def test_a_request_waiting_on_background_work_releases_its_hold():
    """The Evaluate button's progress loop waits for the live evaluation inside a request: while it waits
    (gate.away) the evaluation must not pause for it (before: each evaluation step waited for the request that
    waited on it; the endpoint took 240 s on the tiny test world)."""
    import threading

    from demo.background import VisitorGate, background_thread

    gate = VisitorGate(max_pause_s=5.0)
    waited: list[float] = []
    with gate.visitor():
        with gate.away():
            assert gate.active == 0
            t = background_thread(lambda: waited.append(gate.pause()), "test-away")
            t.start()
            t.join(timeout=10)
        assert gate.active == 1
    assert waited == [0.0]
    # without away(), the background thread waits for the request
    done = threading.Event()
    with gate.visitor():
        t = background_thread(lambda: (waited.append(gate.pause()), done.set()), "test-held")
        t.start()
        assert not done.wait(0.3)
    t.join(timeout=10)
    assert done.is_set() and waited[-1] > 0.2


def test_an_api_client_waiting_for_a_result_does_not_hold_the_gate():
    """The REST API's result stream (GET /gradio_api/call/<name>/<event_id>) only waits for the event, which
    holds the gate itself while it runs. Before, it held the gate for the whole wait, so the live evaluation
    behind `/evaluate` paused for the client waiting on it at every block (240 s on the tiny test world)."""
    import asyncio

    from demo.background import GateMiddleware, VisitorGate

    gate = VisitorGate()
    seen: list[int] = []

    async def app(scope, receive, send):
        seen.append(gate.active)

    mw = GateMiddleware(app, gate)
    for method, path, held in [("GET", "/gradio_api/call/evaluate/3f2a9c", 0),
                               ("GET", "/gradio_api/queue/data", 0),
                               ("POST", "/gradio_api/call/evaluate", 1),  # starting the event: short
                               ("GET", "/", 1), ("GET", "/gradio_api/info", 1),
                               ("GET", "/gradio_api/file=abc/call/x", 1)]:
        seen.clear()
        asyncio.run(mw({"type": "http", "method": method, "path": path}, None, None))
        assert seen == [held], (method, path, seen)
    assert gate.active == 0


def test_the_entry_point_loads_nothing_heavy_before_the_starting_page():
    """`python app.py` must show its starting page within seconds: importing the entry point (demo.cli, app.py)
    loads neither torch nor gradio (with every import at module top, demo.cli pulled both in first and the first
    page came after ~4 s on 2 idle cores instead of 0.3 s)."""
    import subprocess
    import sys

    code = ("import sys, demo.cli, demo.starting; heavy = [m for m in ('torch', 'gradio', 'transformers', 'open_clip')"
            " if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parent.parent))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout
