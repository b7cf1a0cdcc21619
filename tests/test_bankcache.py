"""Label banks on disk (cultureclip.bankcache) and the demo's warm start."""
from __future__ import annotations

import logging

import pytest
import torch

LABELS = [f"a photo of concept {i}" for i in range(20)]


@pytest.fixture(scope="module")
def backbone(tiny_hf_clip_dir):
    from cultureclip.backbone import create_backbone

    return create_backbone(str(tiny_hf_clip_dir))


def test_bank_is_written_once_and_read_back_by_a_new_embedder(backbone, tmp_path, caplog):
    from cultureclip.bankcache import BankCache, DiskCachedEmbedder
    from cultureclip.inference import Embedder

    cache = BankCache(tmp_path / "banks")
    ref = Embedder(backbone).label_bank(LABELS, ("{}",))
    first = DiskCachedEmbedder(backbone, cache).label_bank(LABELS, ("{}",))
    assert torch.allclose(first, ref, atol=1e-6)
    files = list((tmp_path / "banks").glob("*.safetensors"))
    assert len(files) == 1
    caplog.set_level(logging.INFO, logger="cultureclip.bankcache")
    second = DiskCachedEmbedder(backbone, cache).label_bank(LABELS, ("{}",))  # a restarted app
    assert torch.equal(second, first) and "disk cache" in caplog.text
    # small banks (a search query) stay in memory only
    DiskCachedEmbedder(backbone, cache).label_bank(["gyoza"], ("{}",))
    assert len(list((tmp_path / "banks").glob("*.safetensors"))) == 1
    # another label order is gathered from the rows in memory, and equals embedding it afresh
    emb = DiskCachedEmbedder(backbone, cache)
    emb.label_bank(LABELS, ("{}",))
    rev = emb.label_bank(LABELS[::-1], ("{}",))
    assert "rows of a cached bank" in caplog.text
    assert torch.allclose(rev, ref.flip(0), atol=1e-5)


def test_key_depends_on_weights_labels_and_templates(backbone, tiny_open_clip_dir, tmp_path):
    import copy

    from cultureclip.backbone import create_backbone
    from cultureclip.bankcache import BankCache, weights_hash

    h = weights_hash(backbone)
    assert h == weights_hash(copy.deepcopy(backbone))
    other = copy.deepcopy(backbone)
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)
    assert weights_hash(other) != h
    assert weights_hash(create_backbone(str(tiny_open_clip_dir))) != h
    k = BankCache.key(h, LABELS, ("{}",))
    assert k != BankCache.key(h, LABELS, ("a photo of {}.",)) and k != BankCache.key(h, LABELS[:-1], ("{}",))
    assert BankCache.key(h, ["a", "bc"], ("{}",)) != BankCache.key(h, ["ab", "c"], ("{}",))


def test_damaged_file_is_recomputed_and_folder_is_bounded(backbone, tmp_path):
    from cultureclip.bankcache import BankCache, DiskCachedEmbedder

    cache = BankCache(tmp_path / "banks", max_bytes=3000)  # a 20 x 16 float bank is ~1.4 kB on disk
    emb = DiskCachedEmbedder(backbone, cache)
    good = emb.label_bank(LABELS, ("{}",))
    (f,) = (tmp_path / "banks").glob("*.safetensors")
    f.write_bytes(b"not a safetensors file")
    again = DiskCachedEmbedder(backbone, cache).label_bank(LABELS, ("{}",))
    assert torch.allclose(again, good, atol=1e-6)
    for n in range(5):  # more banks than fit: the oldest are removed
        DiskCachedEmbedder(backbone, cache).label_bank([f"{x} {n}" for x in LABELS], ("{}",))
    total = sum(p.stat().st_size for p in (tmp_path / "banks").glob("*.safetensors"))
    assert 0 < total <= 3000
    assert not list((tmp_path / "banks").glob("*.tmp"))


def test_warm_start_fills_both_models_banks(tiny_hf_clip_dir, tmp_path, caplog, monkeypatch):
    """After build_services, a first Recognize query over the whole catalog embeds no label."""
    from demo.app_config import build_services, parse_args
    from demo.handlers import build_candidates, classify

    caplog.set_level(logging.INFO)
    # no launch evaluation: it embeds the benchmark's concept prompts through the same embedders in its own thread,
    # which this test's counter caught under CPU load (the "83 texts" it reported were the evaluation's, not a miss)
    args = parse_args(["--base", str(tiny_hf_clip_dir), "--tuned", str(tiny_hf_clip_dir), "--device", "cpu",
                       "--no-eval-on-start"])
    monkeypatch.setenv("CULTURECLIP_CACHE", str(tmp_path / "cache"))
    services = build_services(args)
    assert "first label banks ready" in caplog.text  # the app serves with these; the full banks follow
    assert services.wait_warm(600)
    assert "warm start 4/4" in caplog.text and "warm start done" in caplog.text
    n = len(services.concepts())
    assert n > 100  # the curated catalog
    # same weights for both: one file per label order (the full catalog's two orders + the first, small bank)
    assert len(list((tmp_path / "cache" / "label_banks").glob("*.safetensors"))) == 3
    calls, seen = [], []
    for which in ("base", "tuned"):
        emb = services.embedder(which)
        orig = emb.embed_texts
        emb.embed_texts = lambda texts, _o=orig: calls.append(len(texts)) or seen.extend(texts) or _o(texts)  # noqa: B023
    from PIL import Image

    r = classify(services, Image.new("RGB", (40, 30), (10, 120, 40)), "", True, top_k=3)
    assert r.ok and f"{n:,} candidate labels" in r.message  # the whole catalog (more than the typed-label cap)
    warm = services.models.warm_labels
    cand = build_candidates(services, "", True).prompts
    assert calls == [], ([len(w) for w in warm], cand == (warm[0] if warm else None), len(cand), seen[:3])


def _count_full_hashes(monkeypatch) -> dict[int, int]:
    """Patch the full weights pass behind checkpoint_sha; returns {id(backbone): times hashed}."""
    import cultureclip.checkpoint as ck

    counts: dict[int, int] = {}
    real = ck._hash_weights

    def counting(backbone):
        counts[id(backbone)] = counts.get(id(backbone), 0) + 1
        return real(backbone)

    monkeypatch.setattr(ck, "_hash_weights", counting)
    return counts


def test_checkpoint_sha_is_memoized_and_follows_the_weights(backbone, monkeypatch):
    import copy

    from cultureclip.checkpoint import checkpoint_sha

    bb = copy.deepcopy(backbone)
    counts = _count_full_hashes(monkeypatch)
    sha = checkpoint_sha(bb)
    assert checkpoint_sha(bb) == sha and counts == {id(bb): 1}  # memoized
    proj = bb.model.text_projection.weight
    with torch.no_grad():
        proj.add_(1e-3)  # in place: the version counter moves
    changed = checkpoint_sha(bb)
    assert changed != sha and counts[id(bb)] == 2
    proj.data.copy_(torch.randn_like(proj))  # through .data: a tracked parameter's .data shares its version counter
    assert checkpoint_sha(bb) not in (sha, changed) and counts[id(bb)] == 3
    other = copy.deepcopy(bb)  # a new object (a WiSE-FT blend is one) is hashed on its own
    assert checkpoint_sha(other) == checkpoint_sha(bb) and counts[id(other)] == 1 and counts[id(bb)] == 3


def test_disk_cached_embedder_follows_in_place_weight_changes(backbone, tmp_path):
    import copy

    from cultureclip.bankcache import BankCache, DiskCachedEmbedder
    from cultureclip.inference import Embedder

    bb = copy.deepcopy(backbone)
    emb = DiskCachedEmbedder(bb, BankCache(tmp_path / "banks"))
    first = emb.label_bank(LABELS, ("{}",))
    h = emb.weights_hash
    with torch.no_grad():
        bb.model.text_projection.weight.mul_(-1.0)
    assert emb.weights_hash != h
    flipped = emb.label_bank(LABELS, ("{}",))
    assert torch.allclose(flipped, Embedder(bb).label_bank(LABELS, ("{}",)), atol=1e-5)
    assert not torch.allclose(flipped, first, atol=1e-3)
    assert len(list((tmp_path / "banks").glob("*.safetensors"))) == 2
    flipped.zero_()  # a caller changing its bank in place does not change the cache's
    assert torch.allclose(emb.label_bank(LABELS, ("{}",)), Embedder(bb).label_bank(LABELS, ("{}",)), atol=1e-5)


def test_startup_hashes_each_models_weights_once(demo_world, tmp_path, monkeypatch):
    """The label-bank cache and the live evaluation both key on the weights hash: one full pass per model."""
    from PIL import Image

    from demo.app_config import warm_start
    from demo.handlers import classify
    from tests.demo_world import make_services

    counts = _count_full_hashes(monkeypatch)
    services = make_services(demo_world, cache_dir=tmp_path / "cache", default_dataset=False)
    services.check()  # loads both models; the live evaluator looks for cached results by weights hash
    warm_start(services)  # label banks of the catalog (this one is small: in memory only)
    for which in ("base", "tuned"):  # a catalog of >= 16 labels: banks on disk, keyed by weights hash
        services.embedder(which).label_bank(LABELS)
    r = classify(services, Image.new("RGB", (40, 30), (10, 120, 40)), "", True, top_k=3)
    assert r.ok, r.message
    services.evaluator.start()  # results keyed by the same weights hash
    assert services.evaluator.wait(120).status == "done"
    assert services.evaluator.load_cached()
    ids = {id(services.embedder(w).backbone) for w in ("base", "tuned")}
    assert len(ids) == 2 and counts == dict.fromkeys(ids, 1), counts
