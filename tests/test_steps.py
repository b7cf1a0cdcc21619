"""The one step mechanism: canonical settings bytes, the fingerprint, the done-marker (cultureclip.steps)."""
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from cultureclip.steps import (FORMAT, Marker, content_fingerprint, done, fingerprint, plain, read_marker,
                               settings_bytes, write_marker)


@dataclass
class Inner:
    lr: float = 1e-3
    names: tuple = ("a", "b")


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    out: Path = Path("runs/x")
    epochs: int = 3


def test_same_settings_give_the_same_bytes_whatever_the_order_and_container():
    a = {"b": [1, 2.5, "x"], "a": {"z": None, "y": True}, "p": Path("data/set")}
    b = {"p": "data/set", "a": {"y": True, "z": None}, "b": (1, 2.5, "x")}
    assert settings_bytes(a) == settings_bytes(b) == b'{"a":{"y":true,"z":null},"b":[1,2.5,"x"],"p":"data/set"}'
    assert fingerprint(a) == fingerprint(b) and len(fingerprint(a)) == 64 and fingerprint(a, 16) == fingerprint(a)[:16]
    # a dataclass is its fields; numpy scalars and arrays are plain numbers and lists; sets are sorted
    assert settings_bytes(Outer()) == settings_bytes({"epochs": 3, "inner": {"lr": 0.001, "names": ["a", "b"]},
                                                       "out": "runs/x"})
    assert plain({"n": np.int64(3), "v": np.array([0.5, 1.0]), "s": {"b", "a"}}) == {"n": 3, "v": [0.5, 1.0], "s": ["a", "b"]}
    assert settings_bytes({"name": "Côte d'Ivoire"}) == '{"name":"Côte d\'Ivoire"}'.encode()  # UTF-8, no \\u escapes


def test_a_changed_setting_gives_a_new_fingerprint():
    base = fingerprint(Outer())
    assert fingerprint(Outer(epochs=4)) != base
    assert fingerprint(Outer(inner=Inner(lr=1.0000001e-3))) != base
    assert fingerprint({"x": 1}) != fingerprint({"x": 1.0}) != fingerprint({"x": "1"})  # types are part of a setting
    assert fingerprint({"x": [1, 2]}) != fingerprint({"x": [2, 1]})  # list order is


def test_settings_that_are_not_plain_data_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        fingerprint({"lr": float("nan")})
    with pytest.raises(TypeError, match="type object .* is not plain data"):
        fingerprint({"model": object()})


def test_the_synthesis_fingerprints_and_result_labels_kept_their_values():
    """The bytes are the ones synth's stage fingerprints and eval's `config_hash` used before this module,
    so existing synthesis outputs and results files are still found (pinned values)."""
    settings = {"captions": {"n": 6, "max_words": 30, "backend": "template"}, "upstream": None}
    assert fingerprint(settings) == "331e2fc9fec76440212ef7b613c26e6d8b5409d2c5254d15fa02fbbfd42ebb8e"
    from eval_suite.results import hash_config
    assert hash_config({"benchmark": "cultwin", "task": "twin", "n_boot": 1000}) == "6fe27c065ad83a06"


def test_a_marker_is_done_only_for_its_fingerprint(tmp_path):
    m = tmp_path / "step" / "DONE.json"
    assert done(m, "f" * 64) is None and read_marker(m) is None  # nothing written yet
    write_marker(m, fingerprint({"a": 1}), {"result": "models/base", "records": 3}, {"a": 1})
    data = json.loads(m.read_text())
    assert data == {"format": FORMAT, "fingerprint": fingerprint({"a": 1}),
                    "produced": {"records": 3, "result": "models/base"}, "settings": {"a": 1}}
    assert done(m, fingerprint({"a": 1})).produced == {"records": 3, "result": "models/base"}
    assert done(m, fingerprint({"a": 2})) is None  # another step's marker
    assert sorted(p.name for p in m.parent.iterdir()) == ["DONE.json"]  # written atomically, no temp left


@pytest.mark.parametrize("text", ["", "{", '{"format": "cultureclip-step/1", "fingerprint": "ab"',
                                  '{"format": "cultureclip-step/1", "fingerprint": "ab", "produced": [1]}',
                                  '{"format": "cultureclip-step/2", "fingerprint": "ab", "produced": {}}',
                                  "[1, 2]", "\xff\xfe"])
def test_a_torn_or_foreign_marker_is_not_done(tmp_path, text):
    m = tmp_path / "DONE.json"
    m.write_bytes(text.encode("latin-1"))
    assert read_marker(m) is None and done(m, "ab") is None


def test_markers_written_before_the_module_are_read_and_upgraded(tmp_path):
    # a synthesis shard's marker: its fingerprint already used these settings bytes
    shard = tmp_path / "shard-00000.done"
    shard.write_text(json.dumps({"fingerprint": "ab" * 32, "records": 4, "rejected": 1, "quarantined": 0}))
    assert done(shard, "ab" * 32, upgrade=False).legacy and "format" not in json.loads(shard.read_text())
    got = done(shard, "ab" * 32)
    assert got.produced == {"records": 4, "rejected": 1, "quarantined": 0} and not got.legacy
    assert json.loads(shard.read_text())["format"] == FORMAT  # upgraded in place, once
    # a world build step's marker: an older hash of the settings it kept -> fingerprinted again from them
    settings = {"step": "base", "seed": 0, "preset": {"pretrain_lr": 0.002, "flags": ["a"]}, "deps": {"data": "e1"}}
    world = tmp_path / "DONE.json"
    world.write_text(json.dumps({"fingerprint": "a59cc54d2601b604", "result": "models/base", "seconds": 83.4,
                                 "settings": settings}))
    assert done(world, fingerprint({**settings, "seed": 1})) is None
    assert done(world, fingerprint(settings)).produced == {"result": "models/base", "seconds": 83.4}
    assert read_marker(world) == Marker(fingerprint(settings), {"result": "models/base", "seconds": 83.4}, settings)
    # a checkpoint's plain-text DONE: complete, settings unknown (never done for a fingerprint)
    ck = tmp_path / "DONE"
    ck.write_text("ok\n")
    assert read_marker(ck) == Marker(None, {}, None, legacy=True) and done(ck, "ab") is None


def test_content_fingerprint_follows_content_not_place_and_skips_markers(tmp_path):
    a, b = tmp_path / "a", tmp_path / "elsewhere" / "b"
    for d in (a, b):
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "x.bin").write_bytes(b"123")
    write_marker(a / "DONE.json", "f" * 64)
    (a / ".x.bin.123.tmp").write_bytes(b"half")
    assert content_fingerprint(a) == content_fingerprint(b)
    (b / "sub" / "x.bin").write_bytes(b"124")
    assert content_fingerprint(a) != content_fingerprint(b)
    with pytest.raises(FileNotFoundError, match="nothing to fingerprint"):
        content_fingerprint(tmp_path / "empty")
