"""Where the Benchmarks tab's published results come from: a local folder (`--results`) and a Hugging Face
dataset repo (`--results-repo owner/name[@revision][/folder]`), beside the live evaluation of the loaded models.

A leaderboard Space renders results its owner publishes after a GPU run (`python -m eval_suite.run ... --out
results/`, then `huggingface-cli upload owner/name results/ results --repo-type dataset`): the app reads the
repo's result JSONs with `huggingface_hub.snapshot_download(repo_type="dataset")` when the hub is reachable,
and from the local Hugging Face cache (the same snapshot, `local_files_only=True`) when it is not, so a Space
with persistent storage still shows them while the hub is down.

Problems are for the owner: they go to the log (and `DemoServices.check`'s notes); visitors see plain states.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cultureclip.backbone import hub_reachable
from eval_suite.results import read_results
from eval_suite.tables import frame_from_results

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

logger = logging.getLogger(__name__)

_REPO = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+?)(?:@(?P<rev>[\w./-]+?))?(?:/(?P<folder>[^@]+?))?/?$")


class ResultsSourceError(RuntimeError):
    """A configured results source cannot be read; the message says which and how to fix it."""


@dataclass(frozen=True)
class RepoSpec:
    """`owner/name[@revision][/folder]`: a dataset repo, an optional revision, the folder of result JSONs."""

    repo_id: str
    revision: str | None = None
    folder: str = ""

    @classmethod
    def parse(cls, spec: str) -> "RepoSpec":
        m = _REPO.match(str(spec).strip())
        if not m or ".." in str(spec):
            raise ResultsSourceError(f"results repo {spec!r} is not of the form owner/name[@revision][/folder] "
                                     "(a Hugging Face dataset repo, e.g. lukahh/cultureclip-results/results)")
        return cls(m["repo"], m["rev"] or None, (m["folder"] or "").strip("/"))

    def __str__(self) -> str:
        return self.repo_id + (f"@{self.revision}" if self.revision else "") + (f"/{self.folder}" if self.folder else "")


def fetch_results_repo(spec: str, online: bool | None = None) -> Path:
    """The folder of result JSONs of a dataset repo: downloaded (only `*.json` of the folder) when the hub is
    reachable, else the snapshot already in the local Hugging Face cache.

    online: whether to contact the hub (None: `cultureclip.backbone.hub_reachable()`, False with HF_HUB_OFFLINE=1)."""
    from huggingface_hub import snapshot_download

    rs = RepoSpec.parse(spec)
    if online is None:
        online = hub_reachable()
    patterns = [f"{rs.folder}/*.json"] if rs.folder else ["*.json"]
    kw = dict(repo_id=rs.repo_id, repo_type="dataset", revision=rs.revision, allow_patterns=patterns)
    path = None
    errors: list[str] = []
    for local_only in ((False, True) if online else (True,)):
        try:
            path = snapshot_download(local_files_only=local_only, **kw)
            break
        except Exception as e:  # noqa: BLE001 - hub errors, offline, not cached: said once below
            errors.append(f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
    if path is None:
        where = "from the hub or the local Hugging Face cache" if online else \
            "from the local Hugging Face cache (the hub is not reachable)"
        raise ResultsSourceError(f"results repo {rs} could not be read {where}: {'; '.join(errors)}. Check the "
                                 "repo id (a dataset repo) or run once with the hub reachable so it is cached.")
    folder = Path(path) / rs.folder if rs.folder else Path(path)
    if not folder.is_dir() or not any(folder.glob("*.json")):
        raise ResultsSourceError(f"results repo {rs} has no result JSONs in {rs.folder or 'its top folder'}; "
                                 "publish the folder `python -m eval_suite.run --out` wrote")
    logger.info("results repo %s: %d result files (%s)", rs, len(list(folder.glob("*.json"))),
                "downloaded or refreshed" if online else "from the local Hugging Face cache")
    return folder


@dataclass
class Published:
    """The published results: one tidy frame (None when there are none), the folders read, the problems met
    (owner text, for the log)."""

    frame: "pd.DataFrame | None"
    folders: list[Path]
    problems: list[str]


def load_published(local: Path | None, repo: str | None) -> Published:
    """Every published result: the local folder's and the repo's (a model/benchmark in both keeps its newest)."""
    results, problems = [], []
    sources: list[tuple[str, Path | None]] = []
    if local is not None:
        sources.append((f"results folder {local}", Path(local)))
    if repo:
        try:
            sources.append((f"results repo {repo}", fetch_results_repo(repo)))
        except ResultsSourceError as e:
            problems.append(str(e))
    folders = []
    for name, folder in sources:
        try:
            found = read_results(folder, strict=False)
            folders.append(folder)
        except Exception as e:  # noqa: BLE001 - a bad source must not hide the others
            problems.append(f"cannot read the {name}: {type(e).__name__}: {e}")
            continue
        if not found:
            problems.append(f"the {name} has no readable result JSONs (write them with `python -m eval_suite.run --out`)")
        results += found
    for p in problems:
        logger.warning("Benchmarks: %s", p)
    if not results:
        return Published(None, folders, problems)
    try:
        return Published(frame_from_results(results), folders, problems)
    except Exception as e:  # noqa: BLE001
        problems.append(f"cannot tabulate the published results: {type(e).__name__}: {e}")
        logger.warning("Benchmarks: %s", problems[-1])
        return Published(None, folders, problems)
