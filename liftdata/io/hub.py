"""Publishing a written dataset folder to the Hugging Face Hub (the `hub` extra)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from liftdata.errors import LiftdataError

__all__ = ["push_folder", "check_hub_access", "HubError"]


class HubError(LiftdataError, ValueError):
    """A folder or repo id that cannot be published; the message names it."""


def _hf_api(token: str | None):
    try:
        from huggingface_hub import HfApi
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("publishing needs huggingface_hub: pip install 'liftdata[hub]'") from e
    return HfApi(token=token)


def check_hub_access(token: str | None = None) -> Any:
    """The `HfApi` client after checking that the Hub answers and accepts the token (one request);
    raises `HubError` with one line otherwise. Called before anything is staged or uploaded."""
    api = _hf_api(token)
    try:
        api.whoami()
    except Exception as e:  # huggingface_hub raises its own, httpx and OSError-based errors
        raise HubError(_failure(e, api)) from None
    return api


def _failure(error: Exception, api: Any) -> str:
    names = " ".join(c.__name__ for c in type(error).__mro__)
    text = str(error).splitlines()[0] if str(error) else ""
    if "TokenNotFound" in names or "401" in text or "Unauthorized" in text or "Invalid user token" in text:
        return ("no valid Hugging Face token: log in (`hf auth login`), set HF_TOKEN or pass --token "
                f"({type(error).__name__})")
    if any(k in names for k in ("ConnectError", "ConnectionError", "Timeout", "NetworkError", "OfflineMode")) or \
            isinstance(error, OSError):
        return f"cannot reach the Hugging Face Hub at {getattr(api, 'endpoint', '?')} ({type(error).__name__}); " \
               "check the network connection (HF_HUB_OFFLINE must be unset)"
    return f"the Hugging Face Hub refused the request ({type(error).__name__}: {text})"


def push_folder(folder: str | os.PathLike, repo_id: str, *, private: bool = True, token: str | None = None,
                commit_message: str = "Upload liftdata dataset", api: Any = None) -> str:
    """Upload a complete liftdata dataset folder (shards, manifest, card) as a dataset repo.

    Refuses folders whose write did not finish (no `manifest.json`) and schema-v1 WebDatasets
    (which `datasets` cannot load). Returns the repo URL.
    """
    folder = Path(folder)
    if not (folder / "manifest.json").is_file():
        raise HubError(f"{folder}: not a complete liftdata dataset (no manifest.json); finish the write first")
    manifest = json.loads((folder / "manifest.json").read_text())
    if manifest.get("format") == "webdataset" and manifest.get("schema_version") == "1":
        raise HubError(f"{folder}: a schema-v1 WebDataset, which the Hub viewer and `datasets` cannot read (its "
                       "samples' meta change shape); rewrite it as v2 first: liftdata.io.write_webdataset("
                       "liftdata.io.read_webdataset(OLD), NEW)")
    if "/" not in repo_id:
        raise HubError(f"repo_id must look like 'user/name', got {repo_id!r}")
    api = api or check_hub_access(token)  # api: a client already checked by `check_hub_access`
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="dataset",
                      commit_message=commit_message, ignore_patterns=[".*", "**/.*"])
    return f"https://huggingface.co/datasets/{repo_id}"
