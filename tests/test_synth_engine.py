"""Synthesis engine + template/LLM backends + export, on the smoke preset (no models, CPU, seconds)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from cultureclip.steps import read_marker

from tests.fake_llm import caption_answer, caption_request, chat_server

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "synth" / "smoke.yaml"


def smoke_cfg(out: Path, *overrides: str):
    from synth.testing import smoke_config
    return smoke_config(out, *overrides)


def tree_bytes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


ALL = ["captions", "images", "filter", "export"]


def test_ids_and_seeds_are_content_hashes():
    from synth.engine import content_id, seed_from_id
    assert content_id("a", 1) == content_id("a", 1) != content_id("a", 2)
    assert seed_from_id("abc") == int.from_bytes(hashlib.sha256(b"abc").digest()[:4], "big")
    assert 0 <= seed_from_id("x") < 2 ** 32


def test_validate_captions_rejects_bad_output():
    from synth.llm import parse_json, validate_captions
    names = ["gyoza", "餃子"]
    good = 'Sure! ```json\n["gyoza on a plate", "a painting of 餃子 at dusk"]\n```'
    assert validate_captions(good, names, 2, 15) == (["gyoza on a plate", "a painting of 餃子 at dusk"], None)
    assert "no JSON list" in validate_captions("gyoza gyoza", names, 2, 15)[1]
    assert "words" in validate_captions(json.dumps(["gyoza " * 15, "gyoza b"]), names, 2, 15)[1]
    assert "does not name" in validate_captions('["a dumpling", "gyoza"]', names, 2, 15)[1]
    assert "repeats" in validate_captions('["gyoza x", "Gyoza  x"]', names, 2, 15)[1]
    assert "need 3" in validate_captions('["gyoza x", "gyoza y"]', names, 3, 15)[1]
    assert "cultural context" in validate_captions('["gyoza x"]', names, 1, 15, ["Japanese", "Japan"])[1]
    assert parse_json('text {"a": [1]} more', dict) == ({"a": [1]}, None)


def test_template_captions_pass_validation_for_whole_catalog():
    from synth.catalog import load_catalog
    from synth.llm import template_captions, validate_captions
    cat = load_catalog()
    for c in cat:
        caps = template_captions(c.to_dict(), 10, 15)
        ok, err = validate_captions(json.dumps(caps), [c.name, *c.aliases], 10, 15,
                                    [t for t in (c.demonym, c.culture_name) if t])
        assert ok is not None, (c.id, err)
        assert len({x.split(",")[0] for x in caps}) == 10  # ten different styles


def test_smoke_end_to_end_rerun_and_one_shard(tmp_path):
    from cultureclip.data import read_manifest
    from synth.run import run
    cfg = smoke_cfg(tmp_path / "run")
    s1 = run(cfg, ALL)
    assert s1["captions"].computed == s1["captions"].shards >= 3
    m = read_manifest(tmp_path / "run" / "dataset")
    df = m.frame
    n_concepts = df["concept_id"].nunique()
    assert len(df) == 4 * n_concepts and df["image_id"].is_unique
    assert set(df["split"]) <= {"train", "val", "test"}
    # no caption straddles splits
    assert df.groupby("caption")["split"].nunique().max() == 1
    gen = json.loads(df["generator"].iat[0])
    from synth.engine import seed_from_id
    assert gen["seed"] == seed_from_id(df["image_id"].iat[0]) and gen["model"] == "pattern"
    card = (tmp_path / "run" / "dataset" / "README.md").read_text()
    assert "## Images per region" in card and f"images: **{len(df)}**" in card

    before = tree_bytes(tmp_path / "run")
    s2 = run(cfg, ALL)
    assert all(s.computed == 0 for s in s2.values())
    assert tree_bytes(tmp_path / "run") == before  # rerun: no work, no bytes changed

    (tmp_path / "run" / "images" / "shard-00001.done").unlink()
    s3 = run(cfg, ALL)
    assert {k: v.computed for k, v in s3.items()} == {"captions": 0, "images": 1, "filter": 0, "export": 0}
    after = tree_bytes(tmp_path / "run")
    changed = {k for k in before if before[k] != after.get(k)} | (set(after) - set(before))
    assert changed == {"images/shard-00001.done"}  # its timing/counters; every output byte is the same
    done = read_marker(tmp_path / "run" / "images" / "shard-00001.done").produced
    assert done["stats"]["generated"] == 0 and done["stats"]["reused"] > 0  # item cache: nothing re-rendered


def test_fingerprint_refuses_mixed_settings(tmp_path):
    from synth.engine import FingerprintMismatchError
    from synth.run import run
    run(smoke_cfg(tmp_path / "r"), ["captions"])
    with pytest.raises(FingerprintMismatchError, match="captions.n|n: 4 -> 3"):
        run(smoke_cfg(tmp_path / "r", "captions.n=3"), ["captions"])
    s = run(smoke_cfg(tmp_path / "r", "captions.n=3"), ["captions"], overwrite=True)
    assert s["captions"].computed == s["captions"].shards and s["captions"].records % 3 == 0
    # downstream stages see the new captions fingerprint as a mismatch too
    with pytest.raises(Exception, match="captions"):
        run(smoke_cfg(tmp_path / "r2"), ["images"])


def test_export_holdout_twin_pairs_and_concept_grouping(tmp_path):
    from synth.stages.export import assign_splits
    rows = [{"image_id": f"{c}{k}", "caption_id": f"{c}-cap{k // 2}", "concept_id": c,
             "twin_concept_ids": [t] if t else []}
            for c, t in [("a", "b"), ("b", "a"), ("c", "d"), ("d", "c"), ("e", None)] for k in range(40)]
    sp = assign_splits(rows, 0.2, 0.2, "caption", holdout_twin_pairs=1.0)
    assert all(sp[r["image_id"]] == "test" for r in rows if r["concept_id"] in "abcd")
    sp = assign_splits(rows, 0.2, 0.2, "concept")
    for c in "abcde":
        assert len({sp[r["image_id"]] for r in rows if r["concept_id"] == c}) == 1
    sp = assign_splits(rows, 0.25, 0.25, "caption")
    by_cap: dict = {}
    for r in rows:
        by_cap.setdefault(r["caption_id"], set()).add(sp[r["image_id"]])
    assert all(len(v) == 1 for v in by_cap.values()) and len(set(sp.values())) == 3


def _flaky(body: dict, calls: list) -> tuple[int, str | None]:
    """503 on the very first call; then the first answer for each concept is garbage (validation must reject
    it and retry), later ones are valid."""
    if len(calls) == 1:
        return 503, None
    name, _ = caption_request(body)
    seen = sum(1 for c in calls if name in c["messages"][1]["content"])
    return 200, ("I cannot" if seen == 2 else caption_answer(body, "{name} scene {i}"))


def test_openai_backend_retries_http_and_validation(tmp_path):
    from synth.run import run
    with chat_server(_flaky) as srv:
        cfg = smoke_cfg(tmp_path / "r", "llm.backend=openai", "llm.model=test-model", "catalog.limit=1",
                        f"llm.base_url={srv.url}", "llm.timeout=5", "llm.concurrency=1", "captions.max_attempts=2")
        s = run(cfg, ["captions"])
    n = len({r["concept_id"] for r in _read(tmp_path / "r" / "captions")})
    assert s["captions"].quarantined == 0 and s["captions"].records == 4 * n
    assert srv.calls[0]["model"] == "test-model" and "seed" in srv.calls[0]


def _read(folder: Path) -> list[dict]:
    from synth.engine import read_jsonl
    return [r for p in sorted(folder.glob("shard-*[0-9].jsonl")) for r in read_jsonl(p)]


def test_tiny_causal_lm_garbage_is_quarantined_and_cached(tmp_path):
    import torch
    from synth.run import run
    from synth.testing import build_tiny_causal_lm
    torch.set_num_threads(1)
    lm = build_tiny_causal_lm(tmp_path / "lm")
    cfg = smoke_cfg(tmp_path / "r", "llm.backend=transformers", f"llm.model={lm}", "llm.max_new_tokens=12",
                    "llm.device=cpu", "catalog.limit=1", "catalog.with_twins=false", "captions.max_attempts=2")
    s = run(cfg, ["captions"])
    assert s["captions"].records == 0 and s["captions"].quarantined == 1
    q = _read_q(tmp_path / "r" / "captions")
    assert len(q) == 1 and q[0]["attempts"] == 2 and len(q[0]["errors"]) == 2 and q[0]["reason"]
    cache = list((tmp_path / "r" / "captions" / "work").rglob("*.json"))
    assert len(cache) == 1 and len(json.loads(cache[0].read_text())["responses"]) == 2
    # resume after losing the done-marker: the cached responses are replayed, the model is not called
    (tmp_path / "r" / "captions" / "shard-00000.done").unlink()
    s2 = run(cfg, ["captions"])
    assert s2["captions"].computed == 1 and s2["captions"].stats["model_calls"] == 0


def _read_q(folder: Path) -> list[dict]:
    from synth.engine import read_jsonl
    return [r for p in sorted(folder.glob("shard-*.quarantine.jsonl")) for r in read_jsonl(p)]


class _FakeLLM:
    """Returns schema-valid concept/twin JSON (and one invalid answer) to drive the concepts/twins stages."""

    name = "fake-llm"

    def settings(self):
        return {"backend": "fake"}

    def respond(self, reqs):
        from synth.llm import TemplateBackend
        out = []
        for r in reqs:
            f = r.facts
            if r.task == "captions":
                out += TemplateBackend().respond([r])
            elif r.task == "concepts":
                body = {"name": f"test bread {f['culture']}", "aliases": [], "kind": "bread",
                        "context": "A flat bread baked daily in clay ovens by families and shared at every meal and holiday.",
                        "features": ["round flat loaf", "charred blisters"]}
                out.append(json.dumps(body) if f["culture"] != "FR" else '{"name": 5}')
            else:
                body = {"name": f"twin of {f['name']}", "culture": "PE" if f["culture"] != "PE" else "CL",
                        "aliases": [], "context": "A similar flat bread from elsewhere, eaten with soups and stews at family meals.",
                        "features": ["oval loaf", "sesame on top"], "distinguishing": "oval and topped with sesame seeds",
                        "source_distinguishing": "round with charred blisters instead of seeds"}
                out.append(json.dumps(body))
        return out


def test_concepts_and_twins_stages_write_generated_catalog(tmp_path):
    import yaml
    from synth.catalog import load_catalog
    from synth.run import run
    cfg = smoke_cfg(tmp_path / "r", "concepts.cultures=[JP, FR, NG]", "concepts.categories=[cuisine]",
                    "concepts.max_attempts=2", "catalog.include_generated=true")
    s = run(cfg, ["concepts", "twins", "captions"], backend=_FakeLLM())
    assert s["concepts"].records == 2 and s["concepts"].quarantined == 1  # FR answered garbage twice
    assert s["twins"].records == 2
    gen_file = tmp_path / "r" / "generated" / "catalog.yaml"
    gen = yaml.safe_load(gen_file.read_text())
    assert all(g["generated"] is True for g in gen) and len(gen) == 4
    cat = load_catalog([gen_file], include_generated=True)  # valid catalog format, symmetric links
    assert len(cat.twin_pairs()) == 2
    assert "test_bread_jp_jp" not in load_catalog().concepts  # curated catalog untouched
    caps = _read(tmp_path / "r" / "captions")
    assert {"test_bread_jp_jp", "twin_of_test_bread_jp_pe"} <= {r["concept_id"] for r in caps}
