"""Backbone loading without the hub and without global state; a model's own tokenizer/processor or a visible fallback.

Offline (the hub unreachable), every load resolves its files from the local Hugging Face cache itself:
no environment variable, huggingface_hub constant or socket default changes while it runs, so one
thread's load cannot switch another thread (e.g. a demo request) offline. The cached models here are
tiny models of the real classes in a hub-cache layout (tests/hubcache.py's `_snapshot`).
"""
from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cultureclip.backbone import BUNDLED_BPE_SOURCE, DEFAULT_PREPROCESS_SOURCE, BackboneError, create_backbone

REPO = Path(__file__).resolve().parent.parent
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")
TEXTS = ["a photo of hanbok", "jiaozi on a plate", "北京 餃子 🥟"]

# A pretrained tag registered in the child process only: its weights live in the hub cache, its
# normalization differs from OpenAI's and it uses QuickGELU, so the offline path must carry all three.
TAG_CFG = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
           "interpolation": "bicubic", "resize_mode": "shortest", "quick_gelu": True}

CHILD = r"""
import json, os, socket, sys, threading, time
import huggingface_hub.constants as hc
import open_clip, torch
from open_clip import pretrained as ocp
from cultureclip import backbone
from cultureclip.backbone import BackboneError, create_backbone, hub_reachable

setup = json.loads(sys.argv[1])
open_clip.add_model_config(setup["arch_dir"])
for arch in ("CultureCLIP-Tiny", "TinyBert-ViT"):
    ocp._PRETRAINED.setdefault(arch, {})["testtag"] = dict(setup["tag"], hf_hub=f"testorg/{arch.lower()}-tag/")
watched = lambda: (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"),
                   hc.HF_HUB_OFFLINE, socket.getdefaulttimeout())
start, seen, stop = watched(), set(), threading.Event()

def watch():
    while not stop.is_set():
        seen.add(watched())
        time.sleep(0.0005)

out = {"hub_reachable": hub_reachable(), "start": repr(start)}
t = threading.Thread(target=watch, daemon=True)
t.start()
models = {}
for spec in sys.argv[2:]:
    t0 = time.time()
    try:
        models[spec] = create_backbone(spec)
        out[spec] = {"ok": True, "s": round(time.time() - t0, 2), "info": {k: models[spec].info.get(k) for k in
                     ("tokenizer_source", "preprocess_source", "preprocess_cfg")}}
    except BackboneError as e:
        out[spec] = {"ok": False, "s": round(time.time() - t0, 2), "error": str(e)}
stop.set(); t.join()
out["seen"] = sorted(repr(s) for s in seen)
out["end"] = repr(watched())

# references, built the libraries' own way after the watched phase (this process may go offline now)
hc.HF_HUB_OFFLINE = True
cache = os.path.join(os.environ["HF_HOME"], "hub")
refs = {
    "hf:testorg/tiny-hf": create_backbone(str(backbone._cached_snapshot("testorg/tiny-hf"))),
    "open_clip:CultureCLIP-Tiny@testtag": open_clip.create_model("CultureCLIP-Tiny", pretrained="testtag", cache_dir=cache,
                                                                 force_quick_gelu=True),
    "open_clip:TinyBert-ViT@testtag": open_clip.create_model("TinyBert-ViT", pretrained="testtag", cache_dir=cache,
                                                             force_quick_gelu=True),
}
torch.manual_seed(0)
px, = torch.rand(1, 2, 3, 48, 48)
for spec, ref in refs.items():
    bb = models[spec]
    ref_model = getattr(ref, "model", ref)
    same = all(torch.equal(a, b) for a, b in zip(bb.model.state_dict().values(), ref_model.state_dict().values()))
    out[spec]["same_weights"] = same
    if spec.startswith("open_clip"):
        out[spec]["ref_preprocess"] = dict(ref.visual.preprocess_cfg)
        out[spec]["acts"] = sorted({type(m).__name__ for m in bb.modules() if "GELU" in type(m).__name__})
        arch = spec.split(":")[1].split("@")[0]
        out[spec]["same_tokens"] = torch.equal(bb.tokenize(["a cat", "hanbok"]), open_clip.get_tokenizer(arch)(["a cat", "hanbok"]))
print("RESULT" + json.dumps(out, default=str))
"""


TINY_BERT_ARCH = {  # an open_clip architecture whose text tower is a transformers model named by hub id
    "embed_dim": 16, "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"hf_model_name": "testorg/tiny-bert", "hf_tokenizer_name": "testorg/tiny-bert",
                 "hf_pooler_type": "cls_pooler", "hf_proj_type": "linear", "context_length": 16},
}


def _tiny_bert(snap: Path) -> Path:
    """A 1-layer BERT config + WordPiece tokenizer in a hub snapshot (the text tower of TinyBert-ViT)."""
    from transformers import BertConfig, BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "cat", "han", "##bok", "photo", "of"]
    (snap / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizer(str(snap / "vocab.txt"), model_max_length=16).save_pretrained(str(snap))
    BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
               max_position_embeddings=16).save_pretrained(str(snap))
    return snap


def _hub_cache(hf_home: Path, arch_dir: Path) -> Path:
    """A hub cache with a tiny HF CLIP, a tiny open_clip `hf-hub:` repo, and the weights of `testtag` for
    CultureCLIP-Tiny and for TinyBert-ViT (plus its BERT text tower's config and tokenizer)."""
    import open_clip

    from cultureclip.backbone import _register_project_archs
    from cultureclip.testing import save_hf_clip, save_open_clip
    from tests.hubcache import _snapshot

    hub = hf_home / "hub"
    save_hf_clip(_snapshot(hub, "testorg/tiny-hf"), "tiny")
    # weights only: no tokenizer/processor
    save_hf_clip(_snapshot(hub, "testorg/tiny-hf-bare"), "tiny", with_tokenizer=False, with_processor=False)
    save_open_clip(_snapshot(hub, "testorg/tiny-oc"), "tiny")
    _register_project_archs()
    # pretrained-tag repos hold the weights file alone, as open_clip downloads it
    save_open_clip(_snapshot(hub, "testorg/cultureclip-tiny-tag"), "CultureCLIP-Tiny", seed=3, quick_gelu=True,
                   with_config=False)
    bert = _tiny_bert(_snapshot(hub, "testorg/tiny-bert"))
    arch_dir.mkdir(parents=True, exist_ok=True)
    (arch_dir / "TinyBert-ViT.json").write_text(json.dumps(TINY_BERT_ARCH))
    open_clip.add_model_config(arch_dir)
    text_cfg = dict(TINY_BERT_ARCH["text_cfg"], hf_model_name=str(bert), hf_model_pretrained=False)
    save_open_clip(_snapshot(hub, "testorg/tinybert-vit-tag"), "TinyBert-ViT", seed=4, quick_gelu=True,
                   with_config=False, text_cfg=text_cfg)
    return hf_home


@pytest.mark.slow
def test_offline_loads_use_the_cache_and_change_no_global_state(tmp_path):
    """Hub unreachable (closed port, HF_HUB_OFFLINE unset): cached specs load, uncached ones fail fast and
    clearly, and a watcher thread sees no env var / huggingface_hub constant / socket default change."""
    from tests.hubcache import hub_env

    hf_home = _hub_cache(tmp_path / "hf_home", tmp_path / "archs")
    env = hub_env(hf_home, HF_ENDPOINT="http://127.0.0.1:9", OMP_NUM_THREADS="1")
    env.pop("HF_HUB_OFFLINE")
    cached = ["hf:testorg/tiny-hf", "open_clip:hf-hub:testorg/tiny-oc", "open_clip:CultureCLIP-Tiny@testtag",
              "open_clip:TinyBert-ViT@testtag", "hf:testorg/tiny-hf-bare"]
    uncached = ["hf:testorg/not-cached", "open_clip:ViT-B-32@openai", "open_clip:hf-hub:testorg/not-cached"]
    p = subprocess.run([sys.executable, "-c", CHILD, json.dumps({"tag": TAG_CFG, "arch_dir": str(tmp_path / "archs")}), *cached, *uncached], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    assert "RESULT" in p.stdout, p.stdout[-2000:] + p.stderr[-4000:]
    out = json.loads(p.stdout.split("RESULT", 1)[1])
    assert out["hub_reachable"] is False
    assert out["seen"] == [out["start"]] and out["end"] == out["start"], out  # nothing global moved
    assert out["start"].startswith("(None, None, False, None)")
    for spec in cached:
        assert out[spec]["ok"], (spec, out[spec])
    for spec in uncached:
        r = out[spec]
        assert not r["ok"] and r["s"] < 10, (spec, r)
        assert spec in r["error"] and "not reachable" in r["error"] and "local folder" in r["error"], r
    hf = out["hf:testorg/tiny-hf"]
    assert hf["same_weights"] and hf["info"]["tokenizer_source"].startswith("the model's own")
    bare = out["hf:testorg/tiny-hf-bare"]["info"]  # the fallback says it only saw the cache
    assert bare["tokenizer_source"] == "bundled CLIP BPE (no tokenizer files in the model's cached snapshot (the hub is not reachable))"
    assert bare["preprocess_source"].endswith("(no preprocessor files in the model's cached snapshot (the hub is not reachable))")
    tag = out["open_clip:CultureCLIP-Tiny@testtag"]
    assert tag["same_weights"] and tag["acts"] == ["QuickGELU"], tag
    # the tag's normalization, as open_clip itself sets it when it downloads the tag
    assert tag["info"]["preprocess_cfg"] == tag["ref_preprocess"], tag
    assert tag["info"]["preprocess_cfg"]["mean"] == [0.5, 0.5, 0.5] and tag["same_tokens"]
    bert = out["open_clip:TinyBert-ViT@testtag"]  # a transformers text tower + tokenizer, from the cache too
    assert bert["same_weights"] and bert["same_tokens"] and bert["info"]["preprocess_cfg"] == bert["ref_preprocess"], bert


def _copy(src: Path, dst: Path, drop=()) -> Path:
    shutil.copytree(src, dst)
    for name in drop:
        (dst / name).unlink()
    return dst


def test_model_without_tokenizer_or_processor_files_gets_a_visible_fallback(tiny_hf_clip_dir, tmp_path, caplog):
    """No tokenizer files at all: the bundled CLIP BPE (vocab 49408 fits), with a warning and recorded source.

    (transformers 5's AutoTokenizer "loads" such a folder as an empty-vocabulary tokenizer that maps every
    word to one id, so the fallback must be decided from the files, not from a load failure.)"""
    import torch

    own = create_backbone(str(tiny_hf_clip_dir))
    bare = _copy(tiny_hf_clip_dir, tmp_path / "bare", TOKENIZER_FILES + ("preprocessor_config.json",))
    with caplog.at_level(logging.WARNING, logger="cultureclip.backbone"):
        bb = create_backbone(str(bare))
    assert bb.info["tokenizer_source"] == BUNDLED_BPE_SOURCE
    assert bb.info["preprocess_source"] == DEFAULT_PREPROCESS_SOURCE
    from cultureclip.checkpoint import model_identity

    ident = model_identity(bb)  # what every result JSON carries
    assert ident["tokenizer_source"] == BUNDLED_BPE_SOURCE and ident["preprocess_source"] == DEFAULT_PREPROCESS_SOURCE
    assert own.info["tokenizer_source"].startswith("the model's own") and "vocab.json" in own.info["tokenizer_source"]
    assert own.info["preprocess_source"] == "the model's own (preprocessor_config.json)"
    msgs = " ".join(r.getMessage() for r in caplog.records)
    assert "no tokenizer files" in msgs and "bundled CLIP BPE" in msgs and "no preprocessor files" in msgs
    assert torch.equal(bb.tokenize(TEXTS), own.tokenize(TEXTS))  # the tiny model's files ARE the CLIP BPE
    assert len(set(bb.tokenize(TEXTS)[0].tolist())) > 3


@pytest.mark.parametrize("case", ["garbage_vocab", "no_vocab", "bad_processor"])
def test_broken_tokenizer_or_processor_files_are_a_clear_error(case, tiny_hf_clip_dir, tmp_path):
    d = _copy(tiny_hf_clip_dir, tmp_path / case)
    if case == "garbage_vocab":
        (d / "vocab.json").write_text("{not json")
        match = r"tokenizer \(merges.txt, special_tokens_map.json, tokenizer_config.json, vocab.json\) failed to load"
    elif case == "no_vocab":
        (d / "vocab.json").unlink()
        (d / "merges.txt").unlink()
        match = r"tokenizer files \(special_tokens_map.json, tokenizer_config.json\) but no vocabulary"
    else:
        (d / "preprocessor_config.json").write_text("{not json")
        match = r"image processor \(preprocessor_config.json\) failed to load"
    with pytest.raises(BackboneError, match=match) as e:
        create_backbone(str(d))
    assert str(d) in str(e.value) and "save_pretrained" in str(e.value)


def _tiny_hf_vocab(folder: Path, vocab_size: int) -> Path:
    """A tiny HF CLIP whose text tower has another vocabulary, saved without tokenizer or processor files."""
    from cultureclip.testing import save_hf_clip

    return save_hf_clip(folder, "tiny", image_size=16, with_tokenizer=False, with_processor=False,
                        text_config=dict(vocab_size=vocab_size, num_hidden_layers=1, max_position_embeddings=16,
                                         eos_token_id=vocab_size - 1, bos_token_id=vocab_size - 2,
                                         pad_token_id=vocab_size - 1),
                        vision_config=dict(num_hidden_layers=1))


def test_fallback_refused_when_the_vocabulary_does_not_match(tmp_path):
    """A text tower with another vocabulary gets no bundled tokenizer, and no other model's tokenizer."""
    from cultureclip.backbone import write_clip_tokenizer_files

    d = _tiny_hf_vocab(tmp_path / "v1000", 1000)
    with pytest.raises(BackboneError, match=r"no tokenizer files and its text tower \(vocab_size=1000"):
        create_backbone(str(d))
    write_clip_tokenizer_files(d, model_max_length=16)  # the CLIP BPE: 49408 tokens for a 1000-row embedding
    with pytest.raises(BackboneError, match="has 49408 tokens but the text tower has vocab_size=1000"):
        create_backbone(str(d))
