"""Manifest validation, the twin-aware sampler and the dataset."""
import numpy as np
import pandas as pd
import pytest

from cultureclip.data import CulTwinDataset, ManifestError, TwinBatchSampler, collate, read_manifest
from tests.cultwin_fixture import make_tiny_cultwin


@pytest.fixture()
def ds_dir(tmp_path):
    return make_tiny_cultwin(tmp_path / "ds")


def _edit(ds_dir, fn):
    df = pd.read_parquet(ds_dir / "manifest.parquet")
    df = fn(df)
    df.to_parquet(ds_dir / "manifest.parquet", index=False)


def test_reads_valid_manifest(ds_dir):
    m = read_manifest(ds_dir)
    assert len(m) == 24 and m.frame["twin_concept_ids"].iat[0] == ["flag_romania"]
    assert len(m.split("train")) == 12 and m.fingerprint() == read_manifest(ds_dir).fingerprint()


def test_missing_columns(ds_dir):
    _edit(ds_dir, lambda df: df.drop(columns=["caption", "split"]))
    with pytest.raises(ManifestError, match=r"lacks required column\(s\) \['caption', 'split'\]"):
        read_manifest(ds_dir)


def test_missing_and_unreadable_images_listed_or_skipped(ds_dir):
    (ds_dir / "images" / "gyoza_1.png").unlink()
    (ds_dir / "images" / "jiaozi_2.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ManifestError) as e:
        read_manifest(ds_dir)
    msg = str(e.value)
    assert "2 row(s)" in msg and "gyoza-1" in msg and "missing file" in msg and "jiaozi-2" in msg and "unreadable" in msg
    assert "skip_bad_images" in msg
    m = read_manifest(ds_dir, skip_bad_images=True)
    assert len(m) == 22 and len(m.skipped) == 2


def test_unknown_twin_ids(ds_dir):
    _edit(ds_dir, lambda df: df.assign(twin_concept_ids=[["mandu"] if c == "gyoza" else t for c, t in zip(df.concept_id, df.twin_concept_ids)]))
    with pytest.raises(ManifestError, match="twin 'mandu' names no concept"):
        read_manifest(ds_dir)


def test_path_escape_rejected(ds_dir):
    _edit(ds_dir, lambda df: df.assign(image_path=["../../etc/passwd"] + list(df.image_path[1:])))
    with pytest.raises(ManifestError, match="outside the dataset folder"):
        read_manifest(ds_dir)


def _sampler_inputs(n_concepts=10, per=7, seed=0):
    rng = np.random.default_rng(seed)
    concepts, twins = [], []
    for i in range(n_concepts):
        k = per + int(rng.integers(0, 3))
        t = [f"c{i ^ 1}"] if i < n_concepts - 2 else []
        concepts += [f"c{i}"] * k
        twins += [t] * k
    return concepts, twins


def test_sampler_every_image_once_twins_together_deterministic():
    concepts, twins = _sampler_inputs()
    s = TwinBatchSampler(concepts, twins, batch_size=8, seed=3)
    batches = list(s)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(concepts)))  # every image exactly once
    assert all(len(b) <= 8 for b in batches)
    # both sides of a pair meet: every twin pair shares a batch at least min(n_a, n_b) times
    together = 0
    for b in batches:
        cs = {concepts[i] for i in b}
        together += sum(1 for c in cs if c != "c8" and c != "c9" and f"c{int(c[1:]) ^ 1}" in cs)
    assert together >= 8 * 5
    assert batches == list(TwinBatchSampler(concepts, twins, batch_size=8, seed=3))
    s.set_epoch(1)
    assert list(s) != batches


def test_sampler_twin_images_share_batch():
    concepts, twins = _sampler_inputs(per=4)
    for b in TwinBatchSampler(concepts, twins, batch_size=6, seed=0):
        pass
    # an image paired with its twin: count images whose batch contains an image of their twin
    batches = list(TwinBatchSampler(concepts, twins, batch_size=6, seed=0))
    with_twin = sum(1 for b in batches for i in b if twins[i] and any(concepts[j] == twins[i][0] for j in b))
    n_twinned = sum(1 for t in twins if t)
    assert with_twin / n_twinned > 0.9


def test_sampler_distributed_slices_are_the_global_batches():
    concepts, twins = _sampler_inputs()
    single = list(TwinBatchSampler(concepts, twins, batch_size=16, seed=5))
    r0 = list(TwinBatchSampler(concepts, twins, batch_size=8, seed=5, num_replicas=2, rank=0))
    r1 = list(TwinBatchSampler(concepts, twins, batch_size=8, seed=5, num_replicas=2, rank=1))
    assert len(r0) == len(r1)
    assert all(len(a) == 8 and len(b) == 8 for a, b in zip(r0, r1))
    for g, a, b in zip(single, r0, r1):
        assert (a + b)[: len(g)] == g  # padded only at the end of a short global batch
    covered = {i for a, b in zip(r0, r1) for i in a + b}
    assert covered == set(range(len(concepts)))


def test_dataset_items_and_collate(ds_dir):
    m = read_manifest(ds_dir).split("train")
    import torch

    ds = CulTwinDataset(m, lambda im: torch.zeros(3, 8, 8), seed=0)
    items = [ds[i] for i in range(len(ds))]
    chad = [it for it in items if it["caption"].startswith("a flag chad")][0]
    assert chad["has_twin"] and chad["twin_prompt"] == "a photo of flag romania" and "flag romania" in chad["twin_caption"]
    hanbok = [it for it in items if "hanbok" in it["caption"]][0]
    assert not hanbok["has_twin"] and hanbok["twin_concept_id"] == -1
    b = collate(items[:5] + [None])
    assert b.images.shape == (5, 3, 8, 8) and b.concept_ids.dtype == torch.long and len(b.twin_captions) == 5
    assert b.twin_concept_ids[~b.has_twin].eq(-1).all() and b.twin_concept_ids[b.has_twin].ne(b.concept_ids[b.has_twin]).all()
    assert collate([None, None]) is None  # every image skipped: no batch


def test_mix_replay(tmp_path):
    from cultureclip.data import mix_replay

    a = read_manifest(make_tiny_cultwin(tmp_path / "a")).split("train")
    b = read_manifest(make_tiny_cultwin(tmp_path / "b", seed=1))
    m = mix_replay(a, b, 0.5, seed=0)
    assert len(m) == len(a) + 6
    rep = m.frame[m.frame["concept_id"].str.startswith("replay:")]
    assert len(rep) == 6 and all(len(t) == 0 for t in rep["twin_concept_ids"])
    assert all((tmp_path / "b") in __import__("pathlib").Path(p).parents for p in rep["image_path"])
    assert m.image_path(len(m) - 1).is_file() and m.image_path(0).is_file()
    assert mix_replay(a, b, 0.5, seed=0).frame.equals(m.frame)


def test_a_concept_listing_itself_as_twin_is_refused(ds_dir):
    """The self-twin check: a twin must be a different concept (the row is named)."""
    _edit(ds_dir, lambda df: df.assign(twin_concept_ids=[[c, *t] if c == "kilt" else t
                                                         for c, t in zip(df.concept_id, df.twin_concept_ids)]))
    with pytest.raises(ManifestError, match=r"self-twins \(4 row\(s\)\):\n  row 20: concept 'kilt' lists itself as twin"):
        read_manifest(ds_dir)


def test_twin_pairs_are_sorted_present_and_never_self():
    from cultureclip.data import twin_pairs

    pairs = twin_pairs(["b", "a", "c", "a", "d"], [["a"], ["b", "zz"], ["c", "d"], "[]", "c"])
    assert pairs == [("a", "b"), ("c", "d")]  # 'zz' names no row, 'c' lists itself; each pair once, sorted


def test_an_empty_split_names_the_splits_present(ds_dir):
    m = read_manifest(ds_dir)
    assert len(m.split("val")) == 6
    with pytest.raises(ManifestError, match=r"split 'dev' is empty in .*; splits present: \['test', 'train', 'val'\]"):
        m.split("dev")


def test_an_unreadable_twin_image_loses_only_that_negative_when_skipping(ds_dir):
    import torch

    for k in range(4):  # every image of Romania, Chad's twin
        (ds_dir / "images" / f"flag_romania_{k}.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    m = read_manifest(ds_dir, check_images=False).split("train")
    chad = next(i for i, c in enumerate(m.frame["concept_id"]) if c == "flag_chad")
    strict = CulTwinDataset(m, lambda im: torch.zeros(3, 8, 8), twin_images=True)
    with pytest.raises(ManifestError, match=r"unreadable image .*flag_romania_\d\.png.*skip_bad_images"):
        strict[chad]
    item = CulTwinDataset(m, lambda im: torch.zeros(3, 8, 8), twin_images=True, skip_bad_images=True)[chad]
    assert item["has_twin"] and item["twin_prompt"] == "a photo of flag romania" and "twin_image" not in item


def test_local_negatives_pack_each_twin_pair_into_one_process_batch():
    """With `loss.negatives=local` a process's softmax sees only its own batch, so the sampler packs both
    sides of every pair there (the global packing splits pairs across processes' slices)."""
    from collections import Counter

    pairs = [(f"a{i}", f"b{i}") for i in range(7)]
    concepts = [c for a, b in pairs for c in (a, b)] + [f"solo{i}" for i in range(5)]  # 19 images
    twin_of = {a: b for a, b in pairs} | {b: a for a, b in pairs}
    twins = [[twin_of[c]] if c in twin_of else [] for c in concepts]

    def split_pairs(batches):
        """Images whose twin's image is not in their batch (padding repeats excluded)."""
        count = Counter(i for batch in batches for i in batch)
        return sum(1 for batch in batches for i in batch if count[i] == 1 and concepts[i] in twin_of
                   and twin_of[concepts[i]] not in {concepts[j] for j in batch})

    glob_split = 0
    for seed in range(6):
        ranks = [list(TwinBatchSampler(concepts, twins, batch_size=4, seed=seed, num_replicas=2, rank=r, local=True))
                 for r in range(2)]
        assert len(ranks[0]) == len(ranks[1]) == len(TwinBatchSampler(concepts, twins, 4, seed, num_replicas=2,
                                                                      local=True))
        assert all(len(b) == 4 for r in ranks for b in r)  # every process steps with a full batch
        assert split_pairs(ranks[0] + ranks[1]) == 0  # each image's twin is in its own process's batch
        assert set(i for r in ranks for b in r for i in b) == set(range(len(concepts)))  # every image, each epoch
        glob = [list(TwinBatchSampler(concepts, twins, batch_size=4, seed=seed, num_replicas=2, rank=r))
                for r in range(2)]
        glob_split += split_pairs(glob[0] + glob[1])
    assert glob_split > 0  # the global packing does put twins in different processes' slices
