"""synth.run planning: stages and fingerprints come from the config alone, whichever --stages are run."""
from __future__ import annotations

import json

import pytest

from tests.fake_llm import caption_answer, chat_server


@pytest.fixture
def chat_url():
    """A fake OpenAI-compatible server answering valid captions for whatever concept it is asked about."""
    with chat_server(lambda body, calls: (200, caption_answer(body))) as srv:
        yield srv.url


def test_later_stages_after_an_openai_captions_run(tmp_path, chat_url):
    """The bug: without `captions` in --stages the caption stage was planned with the template backend, so
    images/filter/export expected another fingerprint than the openai captions run made, and refused."""
    from cultureclip.data import read_manifest
    from synth.run import run
    from synth.testing import smoke_config
    cfg = smoke_config(tmp_path / "r", "llm.backend=openai", "llm.model=served-model", f"llm.base_url={chat_url}",
                       "llm.timeout=5", "catalog.limit=1")
    s1 = run(cfg, ["captions"])
    assert s1["captions"].records > 0
    s2 = run(cfg, ["images", "filter", "export"])  # a second job, on other machines: no LLM needed
    assert s2["images"].records == s1["captions"].records and "captions" not in s2
    df = read_manifest(tmp_path / "r" / "dataset").frame
    assert len(df) == s1["captions"].records and df["caption"].str.contains("seen in scene").all()
    card = (tmp_path / "r" / "dataset" / "README.md").read_text()
    assert '"backend": "openai"' in card and '"model": "served-model"' in card  # the card names the real backend


def test_plan_is_data_from_the_config(tmp_path):
    from synth.run import plan_caption_chain, select_concepts
    from synth.testing import smoke_config
    cfg = smoke_config(tmp_path / "r", "llm.backend=openai", "llm.model=m", "llm.base_url=http://127.0.0.1:9/v1")
    before = json.dumps(cfg.__dict__, default=str, sort_keys=True)
    concepts = select_concepts(cfg)
    full = plan_caption_chain(cfg, concepts)
    assert [p.name for p in full] == ["captions", "images", "filter", "export"]
    assert [p.upstream for p in full] == [None, "captions", "images", "filter"]
    # the plan does not depend on which stages will run; planning changes nothing and runs nothing
    key = [(p.name, p.fingerprint, p.upstream_fingerprint) for p in full]
    assert [(p.name, p.fingerprint, p.upstream_fingerprint) for p in plan_caption_chain(cfg, concepts, last="images")] == key[:2]
    assert not (tmp_path / "r").exists() and json.dumps(cfg.__dict__, default=str, sort_keys=True) == before
    n = len(full[0].stage.plan(None))
    assert n > 1 and all(p.stage.n_shards == n for p in full[1:])  # set at construction
    assert full[0].stage.settings()["backend"]["backend"] == "openai"
    # a changed upstream setting changes every fingerprint downstream of it
    other = plan_caption_chain(smoke_config(tmp_path / "r", "llm.backend=openai", "llm.model=m2",
                                            "llm.base_url=http://127.0.0.1:9/v1"), concepts)
    assert all(a.fingerprint != b.fingerprint for a, b in zip(full, other))
