"""Publishing a written dataset folder to the Hugging Face Hub (the `hub` extra)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["push_folder", "HubError"]


class HubError(ValueError):
    """A folder or repo id that cannot be published; the message names it."""


def _hf_api(token: str | None):
    try:
        from huggingface_hub import HfApi
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("publishing needs huggingface_hub: pip install 'liftdata[hub]'") from e
    return HfApi(token=token)


def push_folder(folder: str | os.PathLike, repo_id: str, *, private: bool = True, token: str | None = None,
                commit_message: str = "Upload liftdata dataset") -> str:
    """Upload a complete liftdata dataset folder (shards, manifest, card) as a dataset repo.

    Refuses folders whose write did not finish (no `manifest.json`). Returns the repo URL.
    """
    folder = Path(folder)
    if not (folder / "manifest.json").is_file():
        raise HubError(f"{folder}: not a complete liftdata dataset (no manifest.json); finish the write first")
    if "/" not in repo_id:
        raise HubError(f"repo_id must look like 'user/name', got {repo_id!r}")
    api = _hf_api(token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="dataset",
                      commit_message=commit_message, ignore_patterns=[".*", "**/.*"])
    return f"https://huggingface.co/datasets/{repo_id}"
