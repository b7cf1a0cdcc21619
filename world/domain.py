"""The world study's second test domain (`world.build` step ``domain``): the world's concepts and its
general probe drawn another way (`synth.world.shift`: painted, printed on an object, far away in
clutter, another colour pipeline). No training step and no choice reads it; the study reads it once per
reported row, next to the rendered test split.

Layout under the step's folder, each a CulTwin-format set (manifest.parquet + images/):
``twins/``  preset.domain_images renders per concept, split "test", twin ids from the catalog;
``probe/``  preset.domain_probe culture-free designs (concept = their appearance caption).
Styles take turns (image i: STYLES[i % 3]); the style is in each row's ``generator`` field.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from synth.world import shift
from world.rows import manifest_row, world_concepts, write_manifest

SEED_OFFSET = 3 * 10**9  # the probe's seeds: disjoint from the pretraining data, attribute test and probe


def build_domain(out: Path, preset, seed: int) -> Path:
    concepts = world_concepts(preset)
    twins, probe = Path(out) / "twins", Path(out) / "probe"
    (twins / "images").mkdir(parents=True, exist_ok=True)
    (probe / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 23])
    rows, i = [], 0
    for cid in sorted(concepts):
        c = concepts[cid]
        for k in range(preset.domain_images):
            style = shift.STYLES[i % len(shift.STYLES)]
            s = int(rng.integers(2**31))
            rel = f"images/{cid}_{k:03d}.png"
            shift.draw_concept(cid, s, preset.size, preset.size, style).save(twins / rel)
            row = manifest_row(f"{cid}-shift-{k}", rel, cid, c.name, c.name, "test", twins,  # scored with the study's phrasings
                       {"model": "shift", "style": style, "seed": s, "version": shift.SHIFT_VERSION},
                       name=c.name, culture=c.culture, region=c.region, category=c.category)
            row["twin_concept_ids"] = sorted(t for t in c.twin_ids if t in concepts)
            rows.append(row)
            i += 1
    write_manifest(rows, twins)
    rows = []
    for j in range(preset.domain_probe):
        style = shift.STYLES[j % len(shift.STYLES)]
        img, cap = shift.draw_generic(SEED_OFFSET + seed * 1_000_003 + j, preset.size, preset.size, style)
        rel = f"images/probe_{j:05d}.png"
        img.save(probe / rel)
        cid = "cap_" + hashlib.sha1(cap.encode()).hexdigest()[:12]
        rows.append(manifest_row(f"p{j}", rel, cid, cap, cap, "test", probe,
                         {"model": "shift", "style": style, "seed": j, "version": shift.SHIFT_VERSION}, name=cap))
    write_manifest(rows, probe)
    (Path(out) / "domain.json").write_text(json.dumps({"styles": list(shift.STYLES), "version": shift.SHIFT_VERSION}))
    return Path(out)
