"""A local Hugging Face hub cache with the app's default models at REAL size (random weights).

`build_hub_cache(hf_home)` writes, under `<hf_home>/hub/`, the layout huggingface_hub itself writes
(`models--org--name/refs/main` + `snapshots/<commit>/<files>`), so with `HF_HOME=<hf_home>` and
`HF_HUB_OFFLINE=1` the hub ids load through exactly the code path a Space with a filled cache uses:

    openai/clip-vit-base-patch32                 transformers CLIPModel, CLIPConfig defaults (= ViT-B/32:
    lukahh/cultureclip_lora_0315_100k_32_07_03   projection 512, vision 768 x 12 layers, patch 32, 224 px;
                                                 text 512 x 12 layers), tokenizer from open_clip's BPE,
                                                 preprocessor_config.json
    timm/vit_base_patch32_clip_224.openai        open_clip_model.safetensors: what open_clip's
                                                 `ViT-B-32@openai` tag downloads (QuickGELU ViT-B-32)

The models come from the one test/bench model builder (`cultureclip.testing`, size "ViT-B-32"); this
module owns only the cache layout. About 1.8 GB; built in ~15 s on 2 cores. `cached_hub_home()` keeps one
copy per machine (a marker written last says it is complete) so test sessions after the first reuse it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

HF_BASE_ID = "openai/clip-vit-base-patch32"
HF_TUNED_ID = "lukahh/cultureclip_lora_0315_100k_32_07_03"
OPEN_CLIP_OPENAI_REPO = "timm/vit_base_patch32_clip_224.openai"  # open_clip's pretrained.py, ViT-B-32 'openai'
VERSION = "1"
MARKER = f".cultureclip_hubcache_v{VERSION}"


def _snapshot(hub: Path, repo_id: str, repo_type: str = "model") -> Path:
    """Create <type>s--org--name/refs/main and the snapshot folder it names; return the folder."""
    repo = hub / (f"{repo_type}s--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(f"cultureclip-test:{repo_id}".encode()).hexdigest()
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    return snap


def build_hub_cache(hf_home: str | Path) -> Path:
    """Write the three default models into `<hf_home>/hub`; return hf_home."""
    from cultureclip.testing import save_hf_clip, save_open_clip

    hf_home = Path(hf_home)
    hub = hf_home / "hub"
    save_hf_clip(_snapshot(hub, HF_BASE_ID), "ViT-B-32", seed=0)
    save_hf_clip(_snapshot(hub, HF_TUNED_ID), "ViT-B-32", seed=1)
    # the weights file alone: what open_clip's `ViT-B-32@openai` tag downloads from this repo
    save_open_clip(_snapshot(hub, OPEN_CLIP_OPENAI_REPO), "ViT-B-32", seed=2, quick_gelu=True, with_config=False)
    (hf_home / MARKER).write_text(json.dumps({"repos": [HF_BASE_ID, HF_TUNED_ID, OPEN_CLIP_OPENAI_REPO]}))
    return hf_home


def add_dataset_repo(hf_home: str | Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """A dataset repo in `<hf_home>/hub` as `snapshot_download(repo_type="dataset")` leaves it (e.g. a results
    folder an owner published); files: {path in the repo: content}. Returns the snapshot folder."""
    snap = _snapshot(Path(hf_home) / "hub", repo_id, "dataset")
    for rel, data in files.items():
        (snap / rel).parent.mkdir(parents=True, exist_ok=True)
        (snap / rel).write_bytes(data)
    return snap


def cached_hub_home(root: str | Path) -> Path:
    """`<root>/hf_home`, built once (into a temp folder renamed into place, so concurrent runs are safe)."""
    root = Path(root)
    final = root / f"hf_home_v{VERSION}"
    if (final / MARKER).is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    if final.exists():  # left incomplete by an interrupted build
        shutil.rmtree(final, ignore_errors=True)
    tmp = root / f"hf_home_v{VERSION}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    build_hub_cache(tmp)
    try:
        os.replace(tmp, final)
    except OSError:  # another process finished first: use its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def hub_env(hf_home: str | Path, **extra: str) -> dict[str, str]:
    """The environment of a process that must see only this cache (offline, like a Space with no network)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "CULTURECLIP_"))}
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
               GRADIO_ANALYTICS_ENABLED="False", TOKENIZERS_PARALLELISM="false", **extra)
    return env
