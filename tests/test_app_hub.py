"""`python app.py` with NO flags on a machine whose HF cache holds the default models (real-size ViT-B/32,
random weights; tests/hubcache.py), offline: it must pick the hub defaults and every endpoint must answer.

To cover a new tab, add an `Endpoint` to ENDPOINTS: its api_name, the arguments (a function of the
test's files) and a check of the result (non-empty content, not an error message).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

pytest.importorskip("gradio_client")

REPO = Path(__file__).resolve().parent.parent
from demo.starting import MARKER as STARTING_MARKER  # noqa: E402

STARTUP_TIMEOUT_S = 600  # two 151M-parameter models + 2 catalog label banks on 2 busy cores


@dataclass
class Endpoint:
    api_name: str
    args: Callable[[dict], tuple]  # files -> positional arguments
    check: Callable[[Any], None]  # raises AssertionError on an empty or error answer


def _classify_args(alpha: float, typed: str = "", use_catalog: bool = True):
    def args(files):
        from gradio_client import handle_file

        return (handle_file(files["image"]), typed, use_catalog, "All", "All", "All", alpha, 5)

    return args


def _catalog_size() -> str:
    from synth.catalog import load_catalog

    return f"{len(load_catalog()):,}"


def _label_count() -> str:
    """Recognize's default candidates without --dataset: the curated catalog + the default dataset's
    concepts (the bundled world's flags and tartans)."""
    from synth.catalog import load_catalog
    from synth.world import CATALOG_PATH

    return f"{len(load_catalog()) + len(load_catalog([CATALOG_PATH])):,}"


def _check_classify(n_labels: str | None, wise: bool = False):
    """n_labels: the candidate count the message must state (None: every curated catalog concept)."""
    def check(out):
        base, tuned, msg = out
        assert len(base["confidences"]) >= 3 and len(tuned["confidences"]) >= 3, out
        assert "❌" not in msg and f"{n_labels or _label_count()} candidate labels" in msg, msg
        if wise:
            assert "WiSE-FT α=0.5" in msg, msg  # base and tuned are both HF CLIPModels: blended, not refused
    return check


def _check_pairs(min_pairs: int):
    def check(out):
        choices = out.get("choices") or []
        assert len(choices) >= min_pairs and out.get("value"), out
    return check


def _check_twin_pair(out):
    info, gallery_a, gallery_b, similarity = out[:4]
    assert "flag of Chad" in info and gallery_a and gallery_b and similarity is not None, out


def _check_confusion_map(out):
    plot, table = out
    assert plot is not None and len(table["data"]) >= 60, out  # the default dataset's 64 pairs with images


def _check_search(out):
    msg, g_base, g_tuned = out
    assert len(g_base) == 4 and len(g_tuned) == 4 and "❌" not in msg, out


def _check_atlas(out):
    msg, table, heat, world, legend = out
    assert "twin pairs" in msg and len(table["data"]) == 50 and heat is not None and world is not None, msg


def _check_evaluate(out):
    assert "✅" in out[6] and len(out[1]["data"]) > 0, out[6]


def _check_benchmarks(out):
    msg, comparison, table = out[:3]
    assert len(table["data"]) > 0 and "cultwin_live" in str(table["data"]), msg
    assert len(comparison["data"]) > 0 and "Base CLIP %" in comparison["headers"], msg


# Without --dataset the app renders the bundled world's flags and tartans at the models' resolution (the
# default dataset), so every tab has content; the list of api_names every tab needs is also in
# tests/test_demo_tabs.py (TAB_APIS), checked there with tiny models.
ENDPOINTS: list[Endpoint] = [
    Endpoint("/classify", _classify_args(1.0), _check_classify(None)),
    Endpoint("/classify", _classify_args(0.5, "gyoza, jiaozi, momo", use_catalog=False), _check_classify("3", wise=True)),
    Endpoint("/find_pairs_query", lambda f: ("chad", "All", "All"), _check_pairs(2)),  # Chad/Romania, Chad/Andorra
    Endpoint("/find_pairs_category", lambda f: ("", "symbol", "All"), _check_pairs(40)),
    Endpoint("/find_pairs_culture", lambda f: ("", "All", "Chad"), _check_pairs(1)),
    Endpoint("/twin_pair", lambda f: ("flag_chad|flag_romania",), _check_twin_pair),
    Endpoint("/confusion_map", lambda f: (), _check_confusion_map),
    Endpoint("/search", lambda f: ("the flag of Chad", 4), _check_search),
    Endpoint("/atlas", lambda f: ("prompt cosine", "", 50), _check_atlas),
    Endpoint("/evaluate", lambda f: ([], [], [], [], True), _check_evaluate),
    Endpoint("/benchmarks", lambda f: ([], [], [], [], True), _check_benchmarks),
]
INDEX_WAIT_S = 900  # twin explorer, confusion map and search answer once the dataset images are embedded


def _predict(client, ep: Endpoint, files: dict):
    """client.predict, retried while the app says the dataset images are still being embedded."""
    t0 = time.time()
    while True:
        try:
            return client.predict(*ep.args(files), api_name=ep.api_name)
        except Exception as e:  # noqa: BLE001 - gradio_client raises its AppError with our message
            if "still being embedded" not in str(e) or time.time() - t0 > INDEX_WAIT_S:
                raise
            time.sleep(5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def hub_app(hub_home, tmp_path_factory):
    """The app started as `python app.py` (no flags), HF_HOME = the real-size cache, offline."""
    from tests.hubcache import hub_env

    tmp = tmp_path_factory.mktemp("hub_app")
    port = _free_port()
    # label banks are cached on disk keyed by the weights hash: kept beside the hub cache, so only the
    # first session embeds the catalog prompts (test_bankcache covers that path with tiny models)
    env = hub_env(hub_home, CULTURECLIP_CACHE=str(hub_home.parent / "cultureclip_cache"),
                  GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1")
    log = tmp / "app.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    t0 = time.time()
    first_page_s = None
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"app.py exited with {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
            if time.time() - t0 > STARTUP_TIMEOUT_S:
                pytest.fail(f"app.py not serving after {STARTUP_TIMEOUT_S} s:\n{log.read_text(errors='replace')[-4000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    starting = STARTING_MARKER in resp.read().decode(errors="replace")
                if first_page_s is None:
                    first_page_s = time.time() - t0
                if not starting:  # the app itself, not the starting page shown while it loads
                    break
                time.sleep(1)
            except OSError:
                time.sleep(1)
        startup_s = time.time() - t0
        yield {"url": url, "log": log, "startup_s": startup_s, "first_page_s": first_page_s,
               "files": {"image": _query_image(tmp)}}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _query_image(folder: Path) -> str:
    from PIL import Image

    path = folder / "query.png"
    Image.effect_noise((320, 240), 50).convert("RGB").save(path)
    return str(path)


@pytest.mark.slow
def test_app_without_flags_uses_the_cached_hub_defaults(hub_app):
    from gradio_client import Client

    log = hub_app["log"].read_text(errors="replace")
    assert "default models: HF_HUB_OFFLINE is set, but hf:openai/clip-vit-base-patch32 and " \
           "hf:lukahh/cultureclip_lora_0315_100k_32_07_03 are in the local Hugging Face cache" in log, log[-3000:]
    assert "warm start 4/4" in log and "warm start done" in log, log[-3000:]
    client = Client(hub_app["url"], verbose=False)
    names = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    failures = []
    first_query_log = None
    for ep in ENDPOINTS:
        assert ep.api_name in names, f"{ep.api_name} is not an endpoint ({sorted(names)})"
        t0 = time.time()
        out = _predict(client, ep, hub_app["files"])
        try:
            ep.check(out)
        except AssertionError as e:
            failures.append(f"{ep.api_name}: {e}")
        print(f"{ep.api_name}: {time.time() - t0:.2f} s")
        if first_query_log is None:  # the log right after the first Recognize query
            first_query_log = hub_app["log"].read_text(errors="replace")
    assert not failures, "\n".join(failures)
    # the first Recognize query after startup found both catalog banks ready: nothing embedded on request
    after = first_query_log.split("warm start done", 1)[1]
    assert f"{_label_count().replace(',', '')} labels x 1 templates" not in after, after[-2000:]
