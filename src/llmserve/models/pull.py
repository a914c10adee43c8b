"""Models in the Hugging Face cache: download one (`llmserve pull`), list them (`llmserve models`).

huggingface_hub does the work, so HF_HOME, HF_HUB_CACHE, HF_ENDPOINT, HF_TOKEN and
HF_HUB_OFFLINE mean what they mean everywhere else; a model pulled here is what
`llmserve serve --model ORG/NAME` (and transformers) load, also with HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class PullError(Exception):
    """The model could not be brought into the cache; the message is one line saying why."""


@dataclass(frozen=True)
class CachedModel:
    """One model repository in the cache."""

    repo_id: str
    refs: tuple[str, ...]  # branch and tag names pointing at cached snapshots
    size_bytes: int
    path: Path


def hub_cache() -> Path:
    """The cache folder huggingface_hub uses (from HF_HUB_CACHE or HF_HOME)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def is_offline() -> bool:
    """True when HF_HUB_OFFLINE is set."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def not_cached_message(repo_id: str, revision: str | None, reason: str) -> str:
    """The one line for a model that is not cached and cannot be downloaded now."""
    name = f"{repo_id}@{revision}" if revision else repo_id
    return (
        f"model {name} is not in the Hugging Face cache ({hub_cache()}) and {reason}; "
        f"bring it with `llmserve pull {repo_id}` where the hub is reachable and copy that "
        "cache here (set HF_HOME to it), or serve a local folder with `llmserve serve --model "
        "./folder`"
    )


def pull_model(repo_id: str, revision: str | None = None, token: str | None = None) -> Path:
    """Download every file of `repo_id` at `revision` into the cache, with progress bars on
    stderr; the snapshot folder. Already cached files are not downloaded again."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = constants.ENDPOINT
    try:
        return Path(snapshot_download(repo_id, revision=revision, token=token))
    except LocalEntryNotFoundError:
        reason = (
            "HF_HUB_OFFLINE=1 forbids downloads"
            if is_offline()
            else f"the hub at {endpoint} cannot be reached"
        )
        raise PullError(not_cached_message(repo_id, revision, reason)) from None
    except RevisionNotFoundError:
        raise PullError(f"{repo_id} has no revision {revision!r} on {endpoint}") from None
    except (RepositoryNotFoundError, GatedRepoError):
        raise PullError(
            f"no model {repo_id} on {endpoint} that this token may read "
            "(check the name; private and gated models need HF_TOKEN)"
        ) from None
    except HfHubHTTPError as exc:
        raise PullError(f"the hub at {endpoint} refused {repo_id}: {exc}") from None


def cached_models() -> list[CachedModel]:
    """The model repositories in the cache, largest first."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(hub_cache())
    except CacheNotFound:
        return []
    models = [
        CachedModel(
            repo.repo_id,
            tuple(sorted(ref for rev in repo.revisions for ref in rev.refs)),
            repo.size_on_disk,
            repo.repo_path,
        )
        for repo in info.repos
        if repo.repo_type == "model"
    ]
    return sorted(models, key=lambda m: m.size_bytes, reverse=True)


def folder_size(path: Path) -> int:
    """Bytes of every file under `path`."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def human_size(num_bytes: float) -> str:
    """`12.3 MB`, as `hf cache scan` writes sizes."""
    for unit in ("B", "kB", "MB", "GB"):
        if num_bytes < 1000:
            return f"{num_bytes:.1f} {unit}" if unit != "B" else f"{num_bytes:.0f} B"
        num_bytes /= 1000
    return f"{num_bytes:.1f} TB"
