"""The app's HTTP API as a stranger uses it: parameter names that say what they are, a bad value answered
with a plain message naming the parameter, and an unknown endpoint answered 404 without a traceback."""
from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.demo_world import api_call

OLD_NAMES = {"images", "typeds", "use_cats", "cats", "regs", "culs", "alphas", "top_ks", "q", "cat", "cul", "b", "m",
             "r", "c", "main", "a", "n", "k"}


@pytest.fixture(scope="module")
def api(demo_app):
    return httpx.get(demo_app["url"] + "gradio_api/info", timeout=30).json()["named_endpoints"]


_call = api_call


def _text(payload: str) -> str:
    """The message of an SSE answer: the error's text, or the last output of a completed call."""
    data = json.loads(payload.split("data: ", 1)[1].strip())
    return data["error"] if isinstance(data, dict) else data[-1]


def test_parameter_names_say_what_they_are(api):
    names = {ep: [p["parameter_name"] for p in info["parameters"]] for ep, info in api.items()}
    assert names["/classify"] == ["image", "labels", "use_catalog", "category", "region", "culture", "alpha", "top_k"]
    assert names["/search"] == ["query", "top_k"]
    assert names["/atlas"] == ["metric", "query", "rows"]
    assert names["/find_pairs_query"] == ["query", "category", "culture"]
    assert names["/benchmarks"] == ["benchmarks", "models", "regions", "categories", "main_only"]
    assert names["/tuned_title"] == ["alpha"]
    for ep, ps in names.items():
        assert not set(ps) & OLD_NAMES, (ep, ps)
        assert all(not p.startswith("param_") for p in ps), (ep, ps)
    assert api["/classify"]["description"].startswith("Classify an image")


def _image(demo_world) -> dict:
    raw = (demo_world["dataset"] / "images/gyoza/gyoza_1.png").read_bytes()
    return {"url": "data:image/png;base64," + base64.b64encode(raw).decode(), "meta": {"_type": "gradio.FileData"}}


@pytest.mark.parametrize("index,name,value", [(6, "alpha", "abc"), (7, "top_k", None), (7, "top_k", [3]),
                                              (6, "alpha", "0.5")])
def test_a_bad_number_gets_a_plain_message_naming_the_parameter(demo_app, demo_world, index, name, value):
    data = [_image(demo_world), "", True, "All", "All", "All", 1.0, 3]
    data[index] = value
    kind, text = _call(demo_app["url"], "classify", data)
    msg = _text(text)
    assert f"`{name}`" in msg and "expected a number" in msg, msg
    assert "ComponentProcessingError" not in msg and "&lt;" not in msg and "&gt;" not in msg, msg
    assert "Something went wrong" not in msg


@pytest.mark.parametrize("endpoint,data,name", [("search", ["flag", None], "top_k"),
                                                ("search", ["flag", "eight"], "top_k"),
                                                ("atlas", ["prompt cosine", "", "x"], "rows")])
def test_other_endpoints_name_the_bad_parameter_too(demo_app, endpoint, data, name):
    kind, text = _call(demo_app["url"], endpoint, data)
    msg = _text(text)
    assert kind == "error" and f"`{name}`" in msg and "expected a number" in msg, msg
    assert "ComponentProcessingError" not in msg and "&lt;" not in msg, msg


@pytest.mark.parametrize("data", [[5, [], [], [], True], [["nope"], [], [], [], True]])
def test_a_value_that_is_not_a_choice_names_its_parameter(demo_app, data):
    """gradio's own refusal reads "Value: 'nope' (type: <class 'str'>) is not in the list of choices", naming
    no input (and HTML-escaped by the page's error path): the answer names the parameter in plain words."""
    kind, text = _call(demo_app["url"], "benchmarks", data)
    msg = _text(text)
    assert kind == "error" and "`benchmarks`" in msg and "is not one of the choices" in msg, msg
    assert "class" not in msg and "&lt;" not in msg and "<" not in msg, msg


def test_an_unknown_endpoint_is_a_404_without_a_traceback(demo_app, capfd):
    capfd.readouterr()
    r = httpx.post(demo_app["url"] + "gradio_api/call/nonexistent", json={"data": [1]}, timeout=30)
    assert r.status_code == 404, (r.status_code, r.text)
    assert "No such API endpoint" in r.json()["error"]
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err and "FnIndexInferError" not in out + err
    # a known endpoint still answers
    assert httpx.post(demo_app["url"] + "gradio_api/call/search", json={"data": ["flag", 3]}, timeout=30).status_code == 200
