"""Images stage with a tiny random Stable Diffusion pipeline loaded from a folder like a hub id; filter
stage with a tiny local open_clip as the reference CLIP."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from synth.testing import smoke_config as smoke_cfg


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    import torch
    from synth.testing import build_tiny_sd_pipeline
    torch.set_num_threads(1)
    return build_tiny_sd_pipeline(tmp_path_factory.mktemp("tiny_sd") / "pipe")


def test_diffusers_generator_seeded_and_batch_equals_single(tiny_sd):
    from synth.generators import DiffusersGenerator, ImageRequest, create_generator
    gen = create_generator({"kind": "diffusers", "model": str(tiny_sd), "steps": 2, "guidance": 3.0,
                            "batch_size": 3, "device": "cpu"})
    assert isinstance(gen, DiffusersGenerator)
    reqs = [ImageRequest(f"id{i}", "c", f"a photo of hanbok {i}", seed=100 + i, negative_prompt="blurry",
                         width=64, height=64) for i in range(3)]
    batch = gen.generate(reqs)
    assert [im.size for im in batch] == [(64, 64)] * 3
    single = gen.generate([reqs[1]])[0]
    assert np.abs(np.asarray(batch[1], dtype=int) - np.asarray(single, dtype=int)).max() <= 2
    other_seed = gen.generate([ImageRequest("x", "c", reqs[1].prompt, seed=7, width=64, height=64)])[0]
    assert np.abs(np.asarray(other_seed, dtype=int) - np.asarray(single, dtype=int)).mean() > 1


def test_images_stage_with_tiny_sd_and_clip_filter(tiny_sd, tmp_path):
    import torch
    from cultureclip.data import read_manifest
    from synth.run import run
    from cultureclip.testing import save_open_clip
    torch.set_num_threads(1)
    clip = save_open_clip(tmp_path / "clip", "tiny-64")
    cfg = smoke_cfg(tmp_path / "r", "generator.kind=diffusers", f"generator.model={tiny_sd}", "generator.steps=2",
                    "generator.guidance=3.0", "generator.device=cpu", "catalog.limit=1", "captions.n=3",
                    "images.negative_prompt=blurry, watermark", f"filter.clip_model={clip}", "filter.device=cpu",
                    "filter.min_clip_score=-1.0", "filter.min_twin_margin=-2.0", "filter.nsfw_threshold=0.99",
                    "filter.dedup_cosine=1.1")
    s = run(cfg, ["captions", "images", "filter", "export"])
    n = s["images"].records
    assert n == s["captions"].records > 0
    df = read_manifest(tmp_path / "r" / "dataset").frame
    assert len(df) + s["filter"].rejected == n
    sc = json.loads(df["scores"].iat[0])
    assert -1 <= sc["clip"] <= 1 and 0 <= sc["nsfw"] <= 1 and "twin_margin" in sc
    g = json.loads(df["generator"].iat[0])
    assert g["model"] == str(tiny_sd) and g["steps"] == 2 and g["negative_prompt"] == "blurry, watermark"

    # a strict twin margin rejects by reason, never silently
    cfg2 = smoke_cfg(tmp_path / "r", "generator.kind=diffusers", f"generator.model={tiny_sd}", "generator.steps=2",
                     "generator.guidance=3.0", "generator.device=cpu", "catalog.limit=1", "captions.n=3",
                     "images.negative_prompt=blurry, watermark", f"filter.clip_model={clip}", "filter.device=cpu",
                     "filter.min_clip_score=2.0", "filter.dedup_cosine=1.1")
    s2 = run(cfg2, ["filter"], overwrite=True)
    assert s2["filter"].records == 0 and s2["filter"].rejected == n
    from synth.engine import read_jsonl
    rej = [r for p in sorted((tmp_path / "r" / "filter").glob("*.rejected.jsonl")) for r in read_jsonl(p)]
    assert {r["check"] for r in rej} == {"clip"} and all("clip score" in r["reason"] for r in rej)


def test_filter_drops_near_duplicates_and_blank_images(tmp_path):
    from PIL import Image
    from cultureclip.steps import fingerprint, write_marker
    from synth.engine import StageContext, atomic_write_json, atomic_write_jsonl
    from synth.stages.filter import FilterConfig, FilterStage
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (64, 64, 3)).astype(np.uint8)
    imgs = {"a1": base, "a2": np.clip(base.astype(int) + 1, 0, 255).astype(np.uint8),
            "b1": base, "c1": np.zeros((64, 64, 3), np.uint8), "a3": rng.integers(0, 255, (64, 64, 3)).astype(np.uint8)}
    recs = []
    for iid, arr in imgs.items():
        p = tmp_path / "images" / f"{iid}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(p)
        recs.append({"image_id": iid, "image_file": f"images/{iid}.png", "concept_id": iid[0], "caption": "x",
                     "concept_prompt": "p", "twin_prompts": []})
    atomic_write_jsonl(tmp_path / "images" / "shard-00000.jsonl", recs)
    atomic_write_json(tmp_path / "images" / "fingerprint.json", {"fingerprint": "f"})
    write_marker(tmp_path / "images" / "shard-00000.done", "f")
    st = FilterStage(FilterConfig(clip_model=None))
    res = st.process_shard(0, [0], StageContext(tmp_path, "filter", fingerprint({})))
    kept = {r["image_id"] for r in res.records}
    why = {r["image_id"]: r["check"] for r in res.rejected}
    assert kept == {"a1", "a3", "b1"}  # the same picture under another concept is not a duplicate
    assert why == {"a2": "near_duplicate", "c1": "blank"}
