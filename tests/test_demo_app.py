"""The launched app driven by gradio_client: every api_name, bad inputs, fail-fast startup, a load test."""
from __future__ import annotations

import json
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.demo_world import png_header

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

pytest.importorskip("gradio_client")

API_NAMES = {
    "/classify", "/find_pairs_query", "/find_pairs_category", "/find_pairs_culture", "/twin_pair",
    "/confusion_map", "/benchmarks", "/search", "/search_submit", "/twin_tab_open", "/benchmarks_tab_open",
}


@pytest.fixture(scope="module")
def client(demo_app):
    from gradio_client import Client

    return Client(demo_app["url"], verbose=False)


def _png(path: Path, size=(40, 30), colour=(200, 30, 30)) -> str:
    from PIL import Image

    Image.new("RGB", size, colour).save(path)
    return str(path)


def _classify(client, image, typed="", use_catalog=True, alpha=1.0, top_k=3):
    from gradio_client import handle_file

    return client.predict(handle_file(image), typed, use_catalog, "All", "All", "All", alpha, top_k, api_name="/classify")


def test_every_event_has_a_documented_api_name(client):
    api = client.view_api(return_format="dict", print_info=False)
    names = set(api["named_endpoints"])
    assert API_NAMES <= names, f"missing endpoints: {API_NAMES - names}"


def test_classify_endpoint(client, demo_world):
    base, tuned, msg = _classify(client, str(demo_world["dataset"] / "images/gyoza/gyoza_0.png"))
    assert len(base["confidences"]) == 3 and len(tuned["confidences"]) == 3
    probs = [c["confidence"] for c in base["confidences"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
    assert "6 candidate labels" in msg


def test_twin_and_search_endpoints(client):
    found = client.predict("gyoza", "All", "All", api_name="/find_pairs_query")
    assert found["value"] == "gyoza|jiaozi"
    assert [c[1] for c in found["choices"]] == ["gyoza|jiaozi"]
    found = client.predict("", "symbol", "All", api_name="/find_pairs_category")
    assert found["value"] == "flag_chad|flag_romania"
    found = client.predict("", "All", "Argentina", api_name="/find_pairs_culture")
    assert found["value"] == "humita|tamale"
    info, ga, gb, sim, note, conf, scatter = client.predict("gyoza|jiaozi", api_name="/twin_pair")
    assert "How to tell it from jiaozi" in info and len(ga) == 4 and len(gb) == 4
    assert sim is not None and "images of this pair" in note
    out = client.predict("gyoza|jiaozi", api_name="/twin_tab_open")
    assert out[0] == info
    plot, table = client.predict(api_name="/confusion_map")
    assert len(table["data"]) == 3
    msg, g_base, g_tuned = client.predict("a flag of Chad", 5, api_name="/search")
    assert len(g_base) == 5 and len(g_tuned) == 5 and "a flag of Chad" in msg
    msg2, *_ = client.predict("a flag of Chad", 5, api_name="/search_submit")
    assert msg2 == msg


def test_benchmark_endpoints_and_csv(client, demo_world):
    msg, comparison, table, bars, heat, dl, status, models = client.predict([], [], [], [], True, api_name="/benchmarks")
    assert "16 rows" in msg and len(table["data"]) == 16 and bars is not None and heat is not None
    assert comparison["headers"][:3] == ["benchmark", "metric", "group"] and "Base CLIP" in models
    csv_path = dl["value"] if isinstance(dl, dict) and "value" in dl else dl
    text = Path(csv_path if isinstance(csv_path, str) else csv_path["path"]).read_text()
    assert text.splitlines()[0].startswith("benchmark,metric,group,model,value %")
    assert str(demo_world["base"]) not in text and str(demo_world["base"].parent) not in text  # no server paths
    assert len(text.splitlines()) == 17
    msg, _, table, *_ = client.predict(["cultwin"], ["cultureclip"], ["Asia"], [], True, api_name="/benchmarks")
    assert len(table["data"]) == 1 and table["data"][0][-4] == 70.0
    out = client.predict([], [], [], [], True, api_name="/benchmarks_tab_open")
    assert "16 rows" in out[0]


def test_bad_inputs_give_messages_and_the_app_keeps_serving(client, demo_world, tmp_path):
    txt = tmp_path / "notes.png"
    txt.write_text("this is not an image")
    assert "not an image" in _classify(client, str(txt))[2]
    good = Path(_png(tmp_path / "good.png", (64, 64)))
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(good.read_bytes()[:60])
    assert "corrupt or truncated" in _classify(client, str(trunc))[2] or "Could not read" in _classify(client, str(trunc))[2]
    # a PNG whose header declares 10000 x 10000 pixels (a decompression bomb), 100 bytes on disk
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(10000, 10000))
    msg = _classify(client, str(bomb))[2]
    assert "refused" in msg and "megapixels" in msg.lower() or "too many pixels" in msg
    huge = _png(tmp_path / "huge.png", (3000, 2000))
    base, tuned, msg = _classify(client, huge)
    assert base["label"] and "candidate labels" in msg
    assert "No candidate labels" in _classify(client, huge, typed=" , ,, ", use_catalog=False)[2]
    many = ", ".join(f"label {i}" for i in range(10_000))
    msg = _classify(client, huge, typed=many, use_catalog=False)[2]
    assert "10,000 labels given" in msg and "1,000 candidate labels" in msg
    msg = _classify(client, huge, typed="餃子, 🥟 dumpling, ñandú, ../../etc/passwd, 餃子", use_catalog=False)[2]
    assert "4 candidate labels" in msg and "duplicate" in msg
    with pytest.raises(Exception, match="query is empty"):
        client.predict("   ", 5, api_name="/search")
    with pytest.raises(Exception, match="Pick a twin pair|Unknown twin pair"):
        client.predict("../../etc/passwd", api_name="/twin_pair")
    base, tuned, msg = _classify(client, str(demo_world["dataset"] / "images/tamale/tamale_1.png"))
    assert base["label"] and tuned["label"]


def test_files_outside_the_dataset_are_not_served(demo_app):
    import urllib.error
    import urllib.request

    for path in ("/etc/passwd", str(Path(__file__).resolve())):
        try:
            with urllib.request.urlopen(demo_app["url"] + "gradio_api/file=" + path, timeout=10) as r:
                status = r.status
        except urllib.error.HTTPError as e:
            status = e.code
        assert status in (403, 404), f"{path} was served"
    img = demo_app["services"].manifest()["abs_path"].iloc[0]
    with urllib.request.urlopen(demo_app["url"] + "gradio_api/file=" + img, timeout=10) as r:
        assert r.status == 200


def test_load_32_clients_x_10_requests(demo_app, demo_world, capsys):
    from gradio_client import Client, handle_file

    image = str(demo_world["dataset"] / "images/jiaozi/jiaozi_2.png")
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    clients = [Client(demo_app["url"], verbose=False, download_files=False, httpx_kwargs={"timeout": 120})
               for _ in range(32)]  # connecting is not part of the measured requests

    def user(i: int) -> None:
        c = clients[i]
        for _ in range(10):
            t0 = time.perf_counter()
            try:
                base, tuned, msg = c.predict(handle_file(image), "", True, "All", "All", "All", 1.0, 3, api_name="/classify")
                assert base["label"] and "candidate labels" in msg, msg
            except Exception as e:  # noqa: BLE001
                with lock:
                    errors.append(repr(e))
            with lock:
                lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(user, range(32)))
    wall = time.perf_counter() - t0
    assert not errors, errors[:3]
    assert len(lat) == 320
    lat.sort()
    p50, p95 = statistics.median(lat), lat[int(0.95 * len(lat)) - 1]
    report = {"requests": len(lat), "errors": len(errors), "p50_s": round(p50, 3), "p95_s": round(p95, 3),
              "max_s": round(lat[-1], 3), "throughput_rps": round(len(lat) / wall, 1)}
    with capsys.disabled():
        print(f"\nload test (32 clients x 10 /classify on loopback): {json.dumps(report)}")
    assert p95 < 30.0


def test_startup_fails_fast_with_a_clear_message(demo_world, tmp_path, capsys):
    import app as app_module

    rc = app_module.main(["--base", str(tmp_path / "nope"), "--tuned", str(demo_world["tuned"]), "--no-preload"])
    assert rc == 2
    rc = app_module.main(["--base", str(tmp_path / "nope"), "--tuned", str(demo_world["tuned"])])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot load the base model" in err and "does not exist" in err
    rc = app_module.main(["--base", str(demo_world["base"]), "--tuned", str(demo_world["tuned"]), "--dataset", str(tmp_path / "nodata")])
    assert rc == 2 and "dataset folder" in capsys.readouterr().err
    rc = app_module.main(["--world", str(tmp_path / "noworld"), "--no-preload"])
    assert rc == 2 and "make offline-world" in capsys.readouterr().err


def test_env_vars_and_offline_world_defaults(demo_world, monkeypatch, tmp_path):
    from demo.app_config import parse_args, resolve_config

    monkeypatch.setenv("CULTURECLIP_BASE", str(demo_world["base"]))
    monkeypatch.setenv("CULTURECLIP_TUNED", str(demo_world["tuned"]))
    monkeypatch.setenv("CULTURECLIP_DATASET", str(demo_world["dataset"]))
    cfg = resolve_config(parse_args([]), hub=False)
    assert cfg.base == str(demo_world["base"]) and cfg.dataset == demo_world["dataset"] and not cfg.offline_world
    for k in ("CULTURECLIP_BASE", "CULTURECLIP_TUNED", "CULTURECLIP_DATASET"):
        monkeypatch.delenv(k)
    cfg = resolve_config(parse_args([]), hub=True)
    assert cfg.base == "hf:openai/clip-vit-base-patch32" and cfg.tuned == "hf:lukahh/cultureclip_lora_0315_100k_32_07_03"
    assert cfg.wise_base is None  # base and tuned are both HF CLIPModels: WiSE-FT blends the two loaded models
    wdir = tmp_path / "world"
    for sub in ("models/base", "models/cultureclip", "dataset", "results"):
        (wdir / sub).mkdir(parents=True)
    cfg = resolve_config(parse_args(["--world", str(wdir)]), hub=False)
    assert cfg.offline_world and cfg.base == str(wdir / "models/base") and cfg.results == wdir / "results"
