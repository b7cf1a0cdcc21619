"""Latency of the demo as its users meet it, for full-size ViT-B/32 models (random weights) on this machine.

Part 1, the app (`demo.app_config.build_services`, as `python app.py` runs it, over the curated catalog):
  startup, cold      load both models + warm start (embed the catalog label banks, write them to disk)
  startup, restart   the same with the label banks already in the disk cache
  first query        the first Recognize query after startup (all catalog concepts as labels)
  warm query         the same query again (median)                         goal: first <= 2x warm
  first, no warm     the first query when banks are built on request (--no-warm-start), for comparison
  weights hashes     full passes over the weights (checkpoint_sha) per startup: goal one per model (the label-bank
                     cache and the live evaluation share it), with the time one pass takes

Part 3, visitors first (issue 17): the same app, the query of a visitor who arrives while background work runs
(through the visitor gate, as every request of the served app), in one run:
  warm query          nothing in the background (median)
  during index        a query that arrives while the dataset index is being built  goal: <= 1.3x warm
  new alpha           the first query at a WiSE-FT alpha the background precomputed (its banks on disk, blend
                      not in memory)                                                goal: <= 1 s
  alpha not ready     the answer for an alpha not precomputed yet (base answers, the blend's progress shown)
  cold start          `python app.py` with empty caches as a subprocess: first page (the starting page with
                      progress) goal <= 10 s; first answer (a Recognize query through the API) goal <= 30 s (ranked
                      over the first, small bank when the full catalog's is still embedding: it says so); then
                      the first answer over the full catalog

Part 2, one query against 1,000 labels, same model, medians over repeats:
  cached     the demo: validated image load -> one image forward -> cosine vs the cached label bank
  per-call   a typical Space: the 1,000 label prompts are encoded on every call, then the image
  bare       only the image forward pass (preprocess + encode_image), the floor
  lookup     the label-bank cache hit alone (weights check + copy), and the weights check alone
Goals: per-call / cached >= 20x, cached / bare <= 1.3x, lookup / bare <= 1%. Prints markdown tables (and --out
writes them).

    python bench/app_latency.py [--base SPEC --tuned SPEC] [--labels 1000] [--repeats 20] [--out FILE]
"""
from __future__ import annotations

import sys
from pathlib import Path

# runnable as a script (`python bench/app_latency.py`, `make bench`) and as a module
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402


def _median_s(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_vit_b32(folder: Path, seed: int) -> str:
    """A full-size ViT-B/32 transformers CLIPModel (CLIPConfig defaults, random weights) with a tokenizer
    from open_clip's BPE: the layout of openai/clip-vit-base-patch32 and the paper's checkpoint."""
    from cultureclip.testing import save_hf_clip

    return str(save_hf_clip(folder, "ViT-B-32", seed=seed))


def run_app(base: str, tuned: str, image: Path, repeats: int, device: str | None, cache: Path,
            compare_cold: bool = True) -> dict:
    """Startup (cold and with the disk cache), first and warm Recognize query over the whole catalog."""
    from demo.app_config import build_services, parse_args
    from demo.handlers import classify

    flags = ["--base", base, "--tuned", tuned] + (["--device", device] if device else [])
    os.environ["CULTURECLIP_CACHE"] = str(cache)

    import cultureclip.checkpoint as ck

    hashes: list[float] = []
    full_pass = ck._hash_weights

    def timed_pass(backbone):
        t0 = time.perf_counter()
        try:
            return full_pass(backbone)
        finally:
            hashes.append(time.perf_counter() - t0)

    def startup(extra=()):
        hashes.clear()
        t0 = time.perf_counter()
        ck._hash_weights = timed_pass
        try:
            services = build_services(parse_args(flags + ["--no-eval-on-start"] + list(extra)))
        finally:
            ck._hash_weights = full_pass
        serving = time.perf_counter() - t0
        services.wait_warm(1800)  # the full catalog banks (in the background once the app serves)
        r[f"banks_{len(extra)}_{'restart' if 'startup_cold_s' in r else 'cold'}_s"] = time.perf_counter() - t0
        return services, serving

    def query(services):
        t0 = time.perf_counter()
        r = classify(services, str(image), "", True, top_k=5)
        assert r.ok, r.message
        return time.perf_counter() - t0

    r: dict = {}
    services, cold = startup()
    r["startup_cold_s"] = cold
    r["labels"] = len(services.concepts())
    r["first_s"] = query(services)
    r["warm_s"] = _median_s(lambda: query(services), repeats)
    services.stop_background()
    del services
    services, r["startup_restart_s"] = startup()
    r["hashes_restart"], r["hash_s"] = len(hashes), statistics.median(hashes) if hashes else 0.0
    r["first_restart_s"] = query(services)
    services.stop_background()
    del services
    if compare_cold:
        os.environ["CULTURECLIP_CACHE"] = str(cache) + "_empty"
        services, r["startup_no_warm_s"] = startup(["--no-warm-start"])
        r["first_no_warm_s"] = query(services)
        services.stop_background()
        del services
    return r


def run_visitors(base: str, tuned: str, image: Path, repeats: int, device: str | None, cache: Path,
                 alphas: tuple[float, ...] = (0.5, 0.6), gap_s: float = 1.0, wait_s: float = 1800) -> dict:
    """Queries while the index builds vs warm ones; new WiSE-FT alphas once precomputed; one not yet ready."""
    from demo.app_config import build_services, parse_args
    from demo.handlers import classify

    flags = ["--base", base, "--tuned", tuned] + (["--device", device] if device else [])
    os.environ["CULTURECLIP_CACHE"] = str(cache)
    services = build_services(parse_args(flags))

    def query(alpha: float = 1.0):
        t0 = time.perf_counter()
        with services.gate.visitor():  # what DemoBlocks.process_api does around every request
            r = classify(services, str(image), "", True, alpha=alpha, top_k=5)
        assert r.ok or "⏳" in r.message, r.message
        return time.perf_counter() - t0, r

    query()
    query()
    # Interleaved while the index builds, so the machine's other load hits both alike: a query that arrives
    # while the background computes (during), and one after the background was parked by an earlier request
    # (warm: nothing of this app competes; the same as before the index started).
    services.start_indexing()  # as build_demo does: the index, then the blends' banks, in the background
    warm, during = [], []
    while len(during) < repeats and not services.wait_index(0):
        time.sleep(gap_s)  # the background runs
        t, _ = query()
        with services.gate.visitor():  # parks the background at its next block
            time.sleep(0.5)
            t_warm, _ = query()
        if not services.wait_index(0):  # it still ran when both answers came
            during.append(t)
            warm.append(t_warm)
    # an alpha the background has not reached yet: the base answers and the blend's progress is shown
    late = [a for a in services.blends.slider_alphas() if a not in services.blends.done_alphas()][-1]
    t_late, r_late = query(late)
    r: dict = {"warm_s": statistics.median(warm), "during_s": statistics.median(during) if during else float("nan"),
               "during_n": len(during), "index_images": services.index.progress[1] // 2,
               "late_alpha": late, "late_s": t_late, "late_msg": r_late.message[:160]}
    assert services.wait_index(wait_s), "the index was not built"
    deadline = time.time() + wait_s
    while not set(alphas) <= services.blends.done_alphas() and time.time() < deadline:
        time.sleep(1.0)
    kept, built = [], []
    for a in alphas:  # precomputed and kept in memory (the default when the memory budget holds them)
        time.sleep(gap_s)
        t, res = query(a)
        assert res.ok and res.tuned, res.message
        kept.append(t)
    for a in alphas:  # after a restart, or evicted: the blend is built, its banks read from disk
        services.blends.forget()
        time.sleep(gap_s)
        t, res = query(a)
        assert res.ok and res.tuned, res.message
        built.append(t)
    r.update(alpha_s=statistics.median(kept), alpha_max_s=max(kept), alpha_built_s=statistics.median(built),
             alpha_built_max_s=max(built), alphas=list(alphas), blend_s=services.blends.seconds_per_alpha,
             pauses=services.gate.pauses, kept=services.blends.cache_size)
    services.stop_background()  # nothing of this process may compete with the next measurements
    return r


def run_cold(base: str, tuned: str, image: Path, device: str | None, cache: Path, timeout_s: float = 900) -> dict:
    """`python app.py` with empty caches: seconds to the first page and to the first Recognize answer."""
    import socket
    import subprocess
    import urllib.request

    from gradio_client import Client, handle_file

    from demo.starting import MARKER

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    repo = Path(__file__).resolve().parent.parent
    env = dict(os.environ, CULTURECLIP_CACHE=str(cache), GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    log = cache.parent / "cold_app.log"
    cmd = [sys.executable, "app.py", "--base", base, "--tuned", tuned, "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}/"
    r: dict = {}
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd + (["--device", device] if device else []), cwd=repo, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        while "first_page_s" not in r:
            assert proc.poll() is None and time.perf_counter() - t0 < timeout_s, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    body = resp.read().decode(errors="replace")
                r["first_page_s"] = time.perf_counter() - t0
                r["first_page_progress"] = MARKER in body
            except OSError:
                time.sleep(0.2)
        while "first_answer_s" not in r:
            assert proc.poll() is None and time.perf_counter() - t0 < timeout_s, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    if MARKER in resp.read().decode(errors="replace"):
                        time.sleep(0.5)
                        continue
                client = Client(url, verbose=False)
                out = client.predict(handle_file(str(image)), "", True, "All", "All", "All", 1.0, 5, api_name="/classify")
                assert "candidate labels" in str(out[-1]) or "Ranked over" in str(out[-1]), out
                r["first_answer_s"] = time.perf_counter() - t0
                r["first_answer_note"] = _ranked_note(str(out[-1]))
            except OSError:
                time.sleep(0.5)
        while r["first_answer_note"] and "full_answer_s" not in r:  # until the full catalog bank answers
            assert proc.poll() is None and time.perf_counter() - t0 < timeout_s, log.read_text()[-3000:]
            time.sleep(2.0)  # each query pauses the background a moment: not too often
            out = client.predict(handle_file(str(image)), "", True, "All", "All", "All", 1.0, 5, api_name="/classify")
            if not _ranked_note(str(out[-1])):
                r["full_answer_s"] = time.perf_counter() - t0
                r["full_answer_labels"] = str(out[-1]).split("candidate labels")[0].split(">")[-1].strip()
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return r


def _ranked_note(message: str) -> str:
    """The answer's 'Ranked over N of the catalog's M labels' (a first answer before the full bank), or ''."""
    import re

    m = re.search(r"Ranked over [\d,]+ of the catalog.s [\d,]+ labels", message.replace("\\", ""))
    return m.group(0) if m else ""


def run_labels(model: str, image: Path, n_labels: int = 1000, repeats: int = 20, slow_repeats: int = 3,
               device: str | None = None) -> dict:
    """1,000 labels: cached bank vs encoding the labels per call vs a bare image forward."""
    import torch

    from cultureclip.backbone import create_backbone, default_device
    from cultureclip.inference import Embedder
    from demo.validation import load_image

    dev = device or default_device()
    emb = Embedder(create_backbone(model, device=dev))
    labels = [f"concept number {i}, a cultural item" for i in range(n_labels)]
    templates = ("a photo of {}.",)
    pil = load_image(image)

    def sync():
        if dev.startswith("cuda"):
            torch.cuda.synchronize()

    def cached():
        bank = emb.label_bank(labels, templates)
        emb.zero_shot(emb.embed_images([load_image(image)]), bank).topk(5)
        sync()

    def per_call():
        bank = torch.nn.functional.normalize(emb.embed_texts([templates[0].format(x) for x in labels]), dim=-1)
        emb.zero_shot(emb.embed_images([load_image(image)]), bank).topk(5)
        sync()

    def bare():
        emb.embed_images([pil])
        sync()

    emb.label_bank(labels, templates)  # the demo embeds each label set once (first query of a label set)
    for fn in (bare, cached):  # warm-up
        fn()
    tb, tc = [], []
    for _ in range(repeats):  # interleaved, so load from other processes hits both alike
        tb.append(_median_s(bare, 1))
        tc.append(_median_s(cached, 1))
    t_bare, t_cached = statistics.median(tb), statistics.median(tc)
    t_call = _median_s(per_call, slow_repeats)
    t_lookup = _median_s(lambda: emb.label_bank(labels, templates), 10 * repeats)
    t_check = _median_s(emb.weights_fingerprint, 10 * repeats)
    return {"model": model, "device": dev, "labels": n_labels, "threads": torch.get_num_threads(),
            "cached_s": t_cached, "per_call_s": t_call, "bare_s": t_bare,
            "speedup_vs_per_call": t_call / t_cached, "overhead_vs_bare": t_cached / t_bare,
            "lookup_s": t_lookup, "check_s": t_check}


def visitors_markdown(v: dict | None, cold: dict | None) -> list[str]:
    def ok(good: bool) -> str:
        return "✅" if good else "❌"

    lines: list[str] = []
    if v:
        ratio = v["during_s"] / v["warm_s"]
        lines += [
            "",
            "Visitors first (one run; background work pauses for requests; the warm and during-index queries "
            "alternate, so the machine's other load hits both alike):",
            "",
            "| step | seconds | vs goal |",
            "|---|---:|---|",
            f"| warm query, the background parked (median of {v['during_n']}) | {v['warm_s']:.2f} | |",
            f"| query while the dataset index builds ({v['index_images']} images x 2 models; median of "
            f"{v['during_n']}) | {v['during_s']:.2f} | {ratio:.2f}x warm (goal <= 1.3x {ok(ratio <= 1.3)}) |",
            f"| (background pauses for requests in this run) | {v['pauses']} | |",
            f"| new WiSE-FT alpha, precomputed ({', '.join(f'{a:.1f}' for a in v['alphas'])}; blends kept in memory: "
            f"{v['kept']}) | {v['alpha_s']:.2f} (max {v['alpha_max_s']:.2f}) | {v['alpha_max_s']:.2f} / 1 s "
            f"(goal <= 1 s {ok(v['alpha_max_s'] <= 1.0)}); {v['alpha_s'] / v['warm_s']:.2f}x the warm query |",
            f"| new WiSE-FT alpha after a restart or eviction (blend built in one pass, banks from disk) | "
            f"{v['alpha_built_s']:.2f} (max {v['alpha_built_max_s']:.2f}) | {v['alpha_built_max_s']:.2f} / 1 s "
            f"(goal <= 1 s {ok(v['alpha_built_max_s'] <= 1.0)}) |",
            f"| alpha {v['late_alpha']:.1f} before its precompute (base answers + the blend's progress) | "
            f"{v['late_s']:.2f} | shows progress {ok('⏳' in v['late_msg'])} |",
        ]
        if v.get("blend_s"):
            lines.append(f"| one alpha's label banks in the background (the old wait on a new alpha) | {v['blend_s']:.1f} | |")
    if cold:
        lines += [
            "",
            "Cold start, `python app.py` with empty caches (subprocess):",
            "",
            "| step | seconds | vs goal |",
            "|---|---:|---|",
            f"| first page ({'the starting page with progress' if cold['first_page_progress'] else 'the app'}) | "
            f"{cold['first_page_s']:.1f} | goal <= 10 s {ok(cold['first_page_s'] <= 10)} |",
            f"| first Recognize answer{' (' + cold['first_answer_note'] + ', the rest still loading)' if cold.get('first_answer_note') else ''} | "
            f"{cold['first_answer_s']:.1f} | goal <= 30 s {ok(cold['first_answer_s'] <= 30)} |",
        ]
        if cold.get("full_answer_s"):
            lines.append(f"| first answer over the full catalog ({cold['full_answer_labels']} candidate labels) | "
                         f"{cold['full_answer_s']:.1f} | |")
    return lines


def to_markdown(app: dict | None, r: dict | None, what: str, visitors: dict | None = None,
                cold: dict | None = None) -> str:
    import torch

    lines = [f"{what}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
             + (f", device {r['device']}." if r else ".")]
    try:
        lines[0] += f" Load average while measured: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores."
    except OSError:
        pass
    if app:
        ok = "✅" if app["first_s"] <= 2 * app["warm_s"] else "❌"
        lines += [
            "",
            f"The app over the catalog's {app['labels']} concepts (both models):",
            "",
            "| step | seconds |",
            "|---|---:|",
            f"| startup, first boot, until the app serves (load 2 models, a first bank of the examples' concepts, render the default dataset) | {app['startup_cold_s']:.1f} |",
            f"| startup, first boot, until both models' full banks of {app['labels']} labels are embedded and on disk (background) | {app['banks_0_cold_s']:.1f} |",
            f"| startup, restart, until the app serves (label banks read from the disk cache) | {app['startup_restart_s']:.1f} |",
            f"| startup, restart, until the full banks are loaded | {app['banks_0_restart_s']:.1f} |",
            f"| first query after startup | {app['first_s']:.2f} |",
            f"| first query after a restart | {app['first_restart_s']:.2f} |",
            f"| warm query (median) | {app['warm_s']:.2f} |",
            f"| first / warm | {app['first_s'] / app['warm_s']:.2f}x (goal <= 2x {ok}) |",
        ]
        if "hashes_restart" in app:
            ok_h = "✅" if app["hashes_restart"] <= 2 else "❌"
            lines.append(f"| full weights hashes during a restart (2 models; one pass: {app['hash_s']:.2f} s) | "
                         f"{app['hashes_restart']} (goal <= 2 {ok_h}) |")
        if "first_no_warm_s" in app:
            lines.append(f"| first query without warm start (banks built on request, the old behaviour) | {app['first_no_warm_s']:.1f} |")
    lines += visitors_markdown(visitors, cold)
    if r is None:
        return "\n".join(lines)
    ok1 = "✅" if r["speedup_vs_per_call"] >= 20 else "❌"
    ok2 = "✅" if r["overhead_vs_bare"] <= 1.3 else "❌"
    lines += [
        "",
        f"One query, {r['labels']:,} candidate labels, median per query:",
        "",
        "| path | latency (ms) | ratio | goal |",
        "|---|---:|---:|---|",
        f"| cached label bank (this demo) | {r['cached_s'] * 1e3:.1f} | 1.00x | |",
        f"| labels encoded on every call (typical Space) | {r['per_call_s'] * 1e3:.1f} | "
        f"{r['speedup_vs_per_call']:.1f}x slower | >= 20x {ok1} |",
        f"| bare image forward pass | {r['bare_s'] * 1e3:.1f} | cached = {r['overhead_vs_bare']:.2f}x of it | <= 1.3x {ok2} |",
    ]
    if "lookup_s" in r:
        ok3 = "✅" if r["lookup_s"] <= 0.01 * r["bare_s"] else "❌"
        lines += [
            f"| label-bank cache hit alone (weights check + copy) | {r['lookup_s'] * 1e3:.2f} | "
            f"{100 * r['lookup_s'] / r['bare_s']:.2f}% of the bare forward | <= 1% {ok3} |",
            f"| of which the weights check (version counters) | {r['check_s'] * 1e3:.2f} | "
            f"{100 * r['check_s'] / r['bare_s']:.2f}% of the bare forward | |",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    p = argparse.ArgumentParser(prog="python bench/app_latency.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default=None, help="base model spec (default: a full-size ViT-B/32 with random weights)")
    p.add_argument("--tuned", default=None, help="CultureCLIP model spec (default: another random ViT-B/32)")
    p.add_argument("--labels", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--app-repeats", type=int, default=5, help="repeats of the warm Recognize query")
    p.add_argument("--slow-repeats", type=int, default=3, help="repeats of the slow per-call path")
    p.add_argument("--skip-app", action="store_true", help="only part 2 (1,000 labels)")
    p.add_argument("--skip-labels", action="store_true", help="only part 1 (the app)")
    p.add_argument("--no-compare-cold", action="store_true", help="skip the first query without warm start")
    p.add_argument("--skip-visitors", action="store_true", help="skip part 3's in-process runs (index, alphas)")
    p.add_argument("--skip-cold", action="store_true", help="skip part 3's cold start of app.py")
    p.add_argument("--visitor-repeats", type=int, default=8, help="queries per condition in part 3")
    p.add_argument("--cache", type=Path, default=None, help="part 3's warm cache (label banks, default dataset), kept "
                   "between runs: the bench models are fixed by their seeds, so their banks are reused")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=None, help="also write the markdown tables here")
    args = p.parse_args(argv)
    import torch
    from PIL import Image

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="cultureclip_bench_") as tmp:
        tmp = Path(tmp)
        image = tmp / "query.jpg"
        Image.effect_noise((640, 480), 60).convert("RGB").save(image, quality=90)
        base = args.base or make_vit_b32(tmp / "base", seed=0)
        only_labels = args.skip_app and args.skip_visitors and args.skip_cold
        tuned = args.tuned or (base if only_labels else make_vit_b32(tmp / "tuned", seed=1))
        what = ("Full-size ViT-B/32 (transformers CLIPModel, random weights)" if not (args.base or args.tuned)
                else f"`{base}` vs `{tuned}`")
        app = None if args.skip_app else run_app(base, tuned, image, args.app_repeats, args.device, tmp / "cache",
                                                  compare_cold=not args.no_compare_cold)
        visitors = None if args.skip_visitors else run_visitors(base, tuned, image, args.visitor_repeats, args.device,
                                                                 args.cache or tmp / "cache")
        cold = None if args.skip_cold else run_cold(base, tuned, image, args.device, tmp / "cold_cache")
        r = None if args.skip_labels else run_labels(base, image, args.labels, args.repeats, args.slow_repeats, args.device)
    md = to_markdown(app, r, what, visitors, cold)
    print(md)
    if args.out:
        from cultureclip.fileio import atomic_write_text

        atomic_write_text(args.out, md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
