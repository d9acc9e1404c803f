"""Publishing to the Hugging Face Hub, up to the network call.

`huggingface_hub.HfApi` (the external service) is replaced by a recording stand-in that "uploads"
by copying the files huggingface_hub's own filter would send; the copy must load with `datasets`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import datasets
import huggingface_hub
import pytest
from huggingface_hub.utils import filter_repo_objects

from liftdata.cli import main
from liftdata.dataset import LiftDataset
from liftdata.io import read_parquet, write_parquet
from liftdata.io.hub import HubError, push_folder
from liftdata.samplers import mine_extremes
from liftdata.synthetic import make_capture

T, N = 4, 6


class RecordingHfApi:
    """Stands in for `huggingface_hub.HfApi`: records calls, copies the folder to `remote`."""

    instances: list[RecordingHfApi] = []
    remote: Path

    def __init__(self, token=None, **kwargs):
        self.token, self.calls = token, []
        RecordingHfApi.instances.append(self)

    def whoami(self):
        self.calls.append(("whoami", {}))
        return {"name": "me"}

    def create_repo(self, repo_id, *, repo_type=None, private=None, exist_ok=False, **kwargs):
        self.calls.append(("create_repo", dict(repo_id=repo_id, repo_type=repo_type, private=private,
                                               exist_ok=exist_ok)))

    def upload_folder(self, *, folder_path, repo_id, repo_type=None, commit_message=None, allow_patterns=None,
                      ignore_patterns=None, **kwargs):
        self.calls.append(("upload_folder", dict(folder_path=Path(folder_path).resolve(), repo_id=repo_id,
                                                 repo_type=repo_type)))
        root = Path(folder_path)
        files = [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()]
        for rel in filter_repo_objects(files, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns):
            (self.remote / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, self.remote / rel)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    RecordingHfApi.instances = []
    RecordingHfApi.remote = tmp_path / "remote"
    RecordingHfApi.remote.mkdir()
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingHfApi)
    return RecordingHfApi


@pytest.fixture(scope="module")
def expansion():
    return LiftDataset(make_capture(0, n_frames=T, size=64)).expand(N, mine_extremes(clip_length=3))


def test_push_to_hub_uploads_a_loadable_dataset(tmp_path, hub, expansion, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = expansion.push_to_hub("someone/faces", private=True, token="hf_secret", progress=False, max_count=4)
    assert url == "https://huggingface.co/datasets/someone/faces"
    local = tmp_path / "someone__faces-parquet"  # the default local folder
    (api,) = hub.instances
    assert api.token == "hf_secret"
    assert api.calls == [
        ("whoami", {}),  # token and connection checked before anything is staged
        ("create_repo", dict(repo_id="someone/faces", repo_type="dataset", private=True, exist_ok=True)),
        ("upload_folder", dict(folder_path=local, repo_id="someone/faces", repo_type="dataset"))]
    uploaded = sorted(str(p.relative_to(hub.remote)) for p in hub.remote.rglob("*") if p.is_file())
    assert uploaded == ["LICENSE.md", "README.md", "identity.npy", "manifest.json", "train/synthetic-0-000000.parquet",
                        "train/synthetic-0-000001.parquet", "train/synthetic-0-000002.parquet"]
    # what a user of the Hub gets: the dataset card's configs, and the plain parquet loader
    by_card = datasets.load_dataset(str(hub.remote), cache_dir=str(tmp_path / "hf1"))["train"]
    plain = datasets.load_dataset("parquet", data_dir=str(hub.remote / "train"), cache_dir=str(tmp_path / "hf2"))
    keys = [s.key for s in read_parquet(local)]
    assert len(keys) == T + N and by_card["key"] == keys and plain["train"]["key"] == keys
    assert by_card[T]["image"].size == (64, 64)


def test_cli_push(tmp_path, hub, expansion, capsys):
    out = tmp_path / "ds"
    expansion.write_parquet(out, progress=False)
    assert main(["push", str(out), "me/public-set", "--public", "--token", "tok"]) == 0
    assert capsys.readouterr().out.strip() == "https://huggingface.co/datasets/me/public-set"
    (api,) = hub.instances
    assert api.token == "tok" and api.calls[0] == ("whoami", {}) and api.calls[1][1]["private"] is False
    assert api.calls[2][1] == dict(folder_path=out, repo_id="me/public-set", repo_type="dataset")
    assert datasets.load_dataset(str(hub.remote), cache_dir=str(tmp_path / "hf"))["train"].num_rows == T + N


def test_incomplete_folders_are_refused(tmp_path, hub, expansion, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HubError, match=f"{empty}: not a complete liftdata dataset \\(no manifest.json\\)"):
        push_folder(empty, "me/x")
    partial = tmp_path / "partial"  # an interrupted write: complete shards, no manifest yet
    with pytest.raises(RuntimeError, match="interrupted"):
        write_parquet(interrupted(expansion.samples(), after=5), partial, name="synthetic-0", max_count=2,
                      progress=False)
    assert len(list(partial.rglob("*.parquet"))) == 2 and not (partial / "manifest.json").exists()
    with pytest.raises(HubError, match=f"{partial}: not a complete liftdata dataset"):
        push_folder(partial, "me/x")
    assert main(["push", str(partial), "me/x"]) == 2  # one line, no traceback
    assert f"liftdata push: error: {partial}: not a complete" in capsys.readouterr().err
    done = tmp_path / "done"
    expansion.write_parquet(done, progress=False)
    with pytest.raises(HubError, match="repo_id must look like 'user/name', got 'noslash'"):
        push_folder(done, "noslash")
    assert hub.instances == []  # nothing reached the Hub client


def interrupted(samples, after):
    for i, sample in enumerate(samples):
        if i == after:
            raise RuntimeError("interrupted")
        yield sample


def test_push_offline_is_one_line_before_staging(tmp_path, expansion, capsys, monkeypatch):
    """The real client against a closed port (no network needed): one line, exit 2, nothing staged."""
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(HubError, match=r"cannot reach the Hugging Face Hub at http://127.0.0.1:9 \("):
        expansion.push_to_hub("me/faces", token="hf_x", progress=False)
    assert list(tmp_path.iterdir()) == []  # no staging folder
    out = tmp_path / "ds"
    expansion.write_parquet(out, progress=False)
    assert main(["push", str(out), "me/faces", "--token", "hf_x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("liftdata push: error: cannot reach the Hugging Face Hub") and err.count("\n") == 1


def test_push_without_a_token_is_one_line(tmp_path, expansion, capsys, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no cached login
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    out = tmp_path / "ds"
    expansion.write_parquet(out, progress=False)
    assert main(["push", str(out), "me/faces"]) == 2
    err = capsys.readouterr().err
    assert err == ("liftdata push: error: no valid Hugging Face token: log in (`hf auth login`), set HF_TOKEN or "
                   "pass --token (LocalTokenNotFoundError)\n")


def test_pushed_webdataset_loads_from_the_hub_copy(tmp_path, hub, expansion):
    """The folder `liftdata push` uploads is what the Hub viewer / `load_dataset(repo)` read: its card's
    configs and features, captured and lifted samples alike (issue 19)."""
    from test_io_writers import write_v1_dataset

    out = tmp_path / "wds"
    expansion.write_webdataset(out, progress=False, max_count=4)
    push_folder(out, "me/faces-wds")
    by_card = datasets.load_dataset(str(hub.remote), cache_dir=str(tmp_path / "hf"))["train"]
    assert by_card["__key__"] == [s.key for s in expansion]
    assert [r["json"]["meta"]["source"] for r in by_card] == ["captured"] * T + ["lifted"] * N
    old = tmp_path / "v1"  # a schema-v1 WebDataset cannot be loaded: refused before any upload
    write_v1_dataset("webdataset", old, list(expansion))
    with pytest.raises(HubError, match=f"^{old}: a schema-v1 WebDataset, which the Hub viewer .* rewrite it as v2"):
        push_folder(old, "me/old")
    assert len(hub.instances) == 1
