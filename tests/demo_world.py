"""The demo tests' helpers: a tiny twin world (two tiny open_clip models, a CulTwin dataset, a catalog,
results), services over it, the launched app, and crafted inputs.

Plain functions; tests/conftest.py builds the world once (`demo_world`, session) and launches the app
once per module (`demo_app`)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import struct
import zlib
from pathlib import Path
from typing import Iterator

CONCEPTS = [
    # id, name, culture, culture_name, region, subregion, category, twin, colour
    ("gyoza", "gyoza", "JP", "Japan", "Asia", "Eastern Asia", "cuisine", "jiaozi", (200, 160, 90)),
    ("jiaozi", "jiaozi", "CN", "China", "Asia", "Eastern Asia", "cuisine", "gyoza", (230, 220, 200)),
    ("tamale", "tamale", "MX", "Mexico", "Americas", "Central America", "cuisine", "humita", (90, 140, 60)),
    ("humita", "humita", "AR", "Argentina", "Americas", "South America", "cuisine", "tamale", (220, 200, 80)),
    ("flag_chad", "flag of Chad", "TD", "Chad", "Africa", "Middle Africa", "symbol", "flag_romania", (0, 40, 120)),
    ("flag_romania", "flag of Romania", "RO", "Romania", "Europe", "Eastern Europe", "symbol", "flag_chad", (250, 210, 0)),
]
IMAGES_PER_CONCEPT = 4
# like the offline world (artifacts/world): flags and tartans only, with names that share long prefixes
WORLD_LIKE_CONCEPTS = [
    ("flag_chad", "flag of Chad", "TD", "Chad", "Africa", "Middle Africa", "symbol", "flag_romania", (0, 40, 120)),
    ("flag_romania", "flag of Romania", "RO", "Romania", "Europe", "Eastern Europe", "symbol", "flag_chad", (0, 60, 160)),
    ("flag_slovakia", "flag of Slovakia", "SK", "Slovakia", "Europe", "Eastern Europe", "symbol", "flag_slovenia", (230, 230, 240)),
    ("flag_slovenia", "flag of Slovenia", "SI", "Slovenia", "Europe", "Southern Europe", "symbol", "flag_slovakia", (220, 225, 245)),
    ("tartan_black_watch", "Black Watch tartan", "black_watch_regiment", "the Black Watch regiment", "Europe", "Northern Europe", "art",
     "tartan_campbell", (20, 50, 30)),
    ("tartan_campbell", "Campbell tartan", "clan_campbell", "Clan Campbell", "Europe", "Northern Europe", "art", "tartan_black_watch",
     (25, 60, 45)),
]


def make_models(root: Path) -> tuple[Path, Path]:
    from cultureclip.testing import save_open_clip

    return save_open_clip(root / "base", "tiny", seed=0), save_open_clip(root / "tuned", "tiny", seed=1)


def make_dataset(root: Path, concepts: list | None = None) -> Path:
    """manifest.parquet + images/ + catalog/ (valid curated YAML) in `root` (48x64 images, like the world's)."""
    concepts = CONCEPTS if concepts is None else concepts
    import numpy as np
    import pandas as pd
    import yaml
    from PIL import Image

    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for k, (cid, name, culture, cname, region, sub, cat, twin, colour) in enumerate(concepts):
        for i in range(IMAGES_PER_CONCEPT):
            rng = np.random.default_rng(k * 100 + i)
            arr = np.clip(np.array(colour)[None, None, :] + rng.normal(0, 25, (48, 64, 3)), 0, 255).astype("uint8")
            arr[:, : 16 + 4 * i] = 255 - arr[:, : 16 + 4 * i]
            rel = f"images/{cid}/{cid}_{i}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(root / rel)
            sha = hashlib.sha256((root / rel).read_bytes()).hexdigest()
            rows.append({
                "image_id": f"{cid}_{i}", "image_path": rel, "concept_id": cid, "concept_name": name,
                "culture": culture, "region": region, "category": cat,
                "caption": f"{name} number {i} on a table", "concept_prompt": f"a photo of {name}, from {cname}",
                "twin_concept_ids": [twin], "split": "test" if i == 0 else "train",
                "generator": json.dumps({"model": "procedural", "seed": i}),
                "scores": json.dumps({"clip": 0.3}), "sha256": sha,
            })
    pd.DataFrame(rows).to_parquet(root / "manifest.parquet")
    (root / "README.md").write_text("# tiny CulTwin test dataset\n")
    cat_dir = root / "catalog"
    cat_dir.mkdir(exist_ok=True)
    by_cat: dict[str, list] = {}
    for cid, name, culture, cname, region, sub, cat, twin, _ in concepts:
        by_cat.setdefault(cat, []).append({
            "id": cid, "name": name, "aliases": [], "culture": culture, "culture_name": cname, "region": region,
            "subregion": sub, "category": cat,
            "context": f"A well known {cat} item from {cname}, shown here in a tiny synthetic test world for the demo.",
            "features": [f"{name} feature one", f"{name} feature two"],
            "twins": [{"id": twin, "distinguishing": f"{name} differs from {twin} in its colour"}],
            "sources": ["test fixture"], "generated": False,
        })
    for cat, items in by_cat.items():
        (cat_dir / f"{cat}.yaml").write_text(yaml.safe_dump(items, allow_unicode=True, sort_keys=False))
    return root


def make_results(root: Path, base_spec: str, tuned_spec: str) -> Path:
    """Two benchmarks x two models, with region x category groups, written with eval_suite's writer."""
    from eval_suite.results import make_result, result_filename, write_result

    root.mkdir(parents=True, exist_ok=True)
    for bench, task, metric in (("cultwin", "twin_choice", "twin_acc"), ("globalrg", "zeroshot_classification", "acc1")):
        for spec, tag, base_val in ((base_spec, "base", 0.55), (tuned_spec, "cultureclip", 0.70)):
            groups = [{"fields": {"region": region, "category": cat}, "n": 10, "metrics": {metric: base_val + 0.05 * j}}
                      for j, (region, cat) in enumerate((("Asia", "cuisine"), ("Europe", "symbol"), ("Africa", "symbol")))]
            res = make_result(bench, task, spec, {metric: base_val, "n_correct": base_val * 30}, n_samples=30,
                              groups=groups, tag=tag, main_metric=metric, ci={metric: [base_val - 0.05, base_val + 0.05]})
            write_result(root / result_filename(bench, tag), res)
    return root


def make_world(root: Path, concepts: list | None = None) -> dict[str, Path]:
    base, tuned = make_models(root / "models")
    dataset = make_dataset(root / "dataset", concepts)
    results = make_results(root / "results", str(base), str(tuned))
    return {"base": base, "tuned": tuned, "dataset": dataset, "results": results}


def make_services(world: dict[str, Path], **kw):
    from demo.services import DemoConfig, DemoServices

    cfg = DemoConfig(base=str(world["base"]), tuned=str(world["tuned"]), dataset=world["dataset"],
                     results=world["results"], device="cpu", **kw)
    return DemoServices(cfg)


def launch(services, **kw):
    """Launch the demo for `services` on a free loopback port: returns (url, blocks); call blocks.close()."""
    import socket

    from demo.ui import build_demo, launch_kwargs

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo = build_demo(services)
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True,
                **launch_kwargs(services), **kw)
    return f"http://127.0.0.1:{port}/", demo


@contextlib.contextmanager
def running_app(world: dict[str, Path], cache_dir: Path | None = None) -> Iterator[dict]:
    """The app over `world` as `python app.py` serves the offline world, launched and its dataset index
    built: yields {"url", "services", "demo"}. Its own `cache_dir` keeps one module's live evaluations out
    of another's benchmark view."""
    services = make_services(world, offline_world=True, cache_dir=cache_dir)
    services.check()
    url, demo = launch(services)
    try:
        assert services.wait_index(120), "the dataset index was not built in 2 minutes"
        services.blends.wait(120)  # the WiSE-FT blends' banks too: no background work left at exit
        yield {"url": url, "services": services, "demo": demo}
    finally:
        demo.close()


def png_header(w: int, h: int) -> bytes:
    """A valid PNG of ~80 bytes that declares w x h pixels (a decompression bomb when large)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b""))


def api_call(url: str, name: str, data: list) -> tuple[str, str]:
    """A raw HTTP API call (what any client can send): ("complete" | "error" | "http", payload text)."""
    import httpx

    r = httpx.post(url + f"gradio_api/call/{name}", content=json.dumps({"data": data}),
                   headers={"content-type": "application/json"}, timeout=60)
    if r.status_code != 200:
        return "http", f"{r.status_code} {r.text}"
    text = httpx.get(url + f"gradio_api/call/{name}/{r.json()['event_id']}", timeout=120).text
    return ("error" if "event: error" in text else "complete"), text
