"""Checks of a Hugging Face hub id before any model loads: cached here, or on a hub we reach.

`llmserve serve` runs them at start, so a typo or a missing download is one line in a second,
not a traceback from transformers after torch loaded. Only huggingface_hub is imported here.
"""

from __future__ import annotations

from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id  # type: ignore[attr-defined]

from llmserve.models.source import ModelLoadError

HUB_TIMEOUT_S = 5.0
CONFIG_FILE = "config.json"


def check_hub_model(repo_id: str, revision: str | None) -> None:
    """Raise ModelLoadError unless transformers will find `repo_id` in the cache or on the hub."""
    check_repo_id(repo_id)
    if isinstance(try_to_load_from_cache(repo_id, CONFIG_FILE, revision=revision), str):
        return  # cached: it loads even when the hub is out of reach
    if constants.HF_HUB_OFFLINE:
        raise ModelLoadError(
            f"model {repo_id} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and "
            f"HF_HUB_OFFLINE is set: download it first (hf download {repo_id}), unset "
            "HF_HUB_OFFLINE, or give a local model folder"
        )
    check_on_hub(repo_id, revision)


def check_repo_id(repo_id: str) -> None:
    """A hub id is `name` or `org/name`; anything else was meant as a folder."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise ModelLoadError(
            f"model {repo_id} is neither a folder here nor a Hugging Face hub id (org/name): "
            "check the path"
        ) from None


def check_on_hub(repo_id: str, revision: str | None) -> None:
    """Ask the hub for the model's config.json (one HEAD request); explain a clear refusal."""
    url = hf_hub_url(repo_id, CONFIG_FILE, revision=revision)
    try:
        get_hf_file_metadata(url, timeout=HUB_TIMEOUT_S)
    except HfHubHTTPError as exc:
        problem = hub_refusal(repo_id, revision, exc)
        if problem is not None:
            raise ModelLoadError(problem) from None
    except Exception as exc:  # the transport's own errors: DNS, refused, timeout, TLS
        raise ModelLoadError(
            f"cannot reach the Hugging Face hub at {constants.ENDPOINT} to download {repo_id} "
            f"({type(exc).__name__}: {exc}): check the network or HF_ENDPOINT, or download the "
            "model elsewhere into HF_HOME and set HF_HUB_OFFLINE=1"
        ) from None


def hub_refusal(repo_id: str, revision: str | None, exc: HfHubHTTPError) -> str | None:
    """What to tell the user about the hub's answer; None when transformers may still succeed."""
    if isinstance(exc, GatedRepoError):
        return (
            f"model {repo_id} is gated on the Hugging Face hub: accept its terms on its page "
            "and set HF_TOKEN"
        )
    if isinstance(exc, RepositoryNotFoundError):
        return (
            f"no model {repo_id} on the Hugging Face hub ({constants.ENDPOINT}): check the name "
            "(a private model needs HF_TOKEN)"
        )
    if isinstance(exc, RevisionNotFoundError):
        return f"model {repo_id} has no revision {revision} on the Hugging Face hub"
    if isinstance(exc, RemoteEntryNotFoundError):
        return (
            f"model {repo_id} on the Hugging Face hub has no {CONFIG_FILE}, so it is not a "
            "transformers model"
        )
    return None  # rate limits, server errors: transformers retries and reports them
