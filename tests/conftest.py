import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the demo's cache (default dataset, live evaluations) goes to a per-session temp folder, never ~/.cache
if "CULTURECLIP_CACHE" not in os.environ:
    import tempfile

    os.environ["CULTURECLIP_CACHE"] = tempfile.mkdtemp(prefix="cultureclip_test_cache_")
# gradio's uploads/cache of this session in its own folder: tests that check what the app wrote there are
# not confused by another process's gradio files in the shared /tmp/gradio
if "GRADIO_TEMP_DIR" not in os.environ:
    import tempfile

    os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="cultureclip_test_gradio_")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_open_clip_dir(tmp_path_factory):
    from cultureclip.testing import save_open_clip

    return save_open_clip(tmp_path_factory.mktemp("tiny_open_clip"), "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_hf_clip_dir(tmp_path_factory):
    from cultureclip.testing import save_hf_clip

    return save_hf_clip(tmp_path_factory.mktemp("tiny_hf_clip"), "tiny", seed=0)


@pytest.fixture(scope="session")
def demo_world(tmp_path_factory):
    """The demo tests' tiny twin world (models, dataset, catalog, results), built once per session."""
    import torch

    torch.set_num_threads(1)
    from tests.demo_world import make_world

    return make_world(tmp_path_factory.mktemp("demo_world"))


@pytest.fixture(scope="module")
def demo_app(demo_world, tmp_path_factory):
    """The app launched over `demo_world` (offline-world mode, index built), once per test module, with
    its own cache folder: {"url", "services", "demo"}."""
    from tests.demo_world import running_app

    with running_app(demo_world, cache_dir=tmp_path_factory.mktemp("demo_app_cache")) as app:
        yield app


@pytest.fixture(scope="session")
def hub_home(tmp_path_factory):
    """HF_HOME of a local hub cache with the app's default models at real size (tests/hubcache.py).

    Kept beside pytest's temp folders, so later sessions reuse it (~1.8 GB, ~15 s to build)."""
    from tests.hubcache import cached_hub_home

    return cached_hub_home(tmp_path_factory.getbasetemp().parent / "cultureclip_hubcache")
