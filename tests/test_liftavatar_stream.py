"""Streaming training data: liftdata datasets and capture folders, split by rank, never held whole."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from liftdata.lifters.liftavatar.pixel import PixelSpaceAutoencoder
from liftdata.lifters.liftavatar.stream import StreamingData, list_units, rank_units, read_groups
from liftdata.lifters.liftavatar.training import TrainConfig

SIZE = 32


def capture_samples(seed: int, n: int = 6):
    """Samples (with shading/normal maps) of a synthetic capture, keys `synthetic-{seed}/000000/{i:03d}`."""
    from liftdata.io.schema import Sample, make_key, make_meta
    from liftdata.lifters.base import render_conditions
    from liftdata.synthetic import make_capture

    cap = make_capture(seed, n, size=SIZE)
    cond = render_conditions(cap.head_model, cap.identity, cap.kinematics, cap.camera)
    for i in range(n):
        key = make_key(cap.capture_id, 0, i)
        yield Sample.from_arrays(key, np.asarray(cap.frames[i]), cap.kinematics[[i]], cap.camera,
                                 make_meta(key, cap.kinematics[[i]]), shading=cond.maps["shading"][i].numpy(),
                                 normal=cond.maps["normal"][i].numpy(), mask=cond.maps["mask"][i].numpy())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """4 subjects x 6 frames as a WebDataset of 4 shards (one subject each)."""
    from liftdata.io.webdataset import write_webdataset

    out = tmp_path_factory.mktemp("stream") / "wds"
    samples = [s for seed in range(4) for s in capture_samples(7000 + seed)]
    write_webdataset(samples, out, max_count=6, progress=False)
    return out


def test_units_split_disjointly_across_ranks(dataset):
    units = list_units([str(dataset)])
    assert len(units) == 4 and all(u.kind == "webdataset" for u in units)
    parts = [rank_units(units, r, 3) for r in range(3)]
    paths = [u.path for p in parts for u in p]
    assert sorted(paths) == sorted(u.path for u in units) and len(set(paths)) == len(paths)
    with pytest.raises(ValueError, match="cannot feed 5 processes"):
        rank_units(units, 0, 5)
    with pytest.raises(FileNotFoundError, match="neither"):
        list_units([str(dataset / "missing")])


def test_groups_hold_one_subject_in_key_order_and_bounded(dataset):
    unit = list_units([str(dataset)])[0]
    groups = list(read_groups(unit, buffer_frames=4))
    assert [len(g.images) for g in groups] == [4, 2]
    assert len({g.subject for g in groups}) == 1
    first = next(iter(capture_samples(7000)))  # the independent reference: the sample as written
    assert np.array_equal(groups[0].images[0], first.to_arrays()["image"])
    assert groups[0].maps[0].shape == (4, SIZE, SIZE) and groups[0].maps[0].max() <= 1


def test_stream_batches_take_references_from_other_frames_of_the_same_subject(dataset):
    vae = PixelSpaceAutoencoder(patch=4)
    data = StreamingData([str(dataset)], vae, size=SIZE, buffer_frames=6, items_per_group=2)
    cfg = TrainConfig(output_dir="unused", num_frames=1, batch_size=2, max_references=3, dropout_references=0,
                      dropout_shading=0, dropout_coefficients=0)
    for step in range(6):
        batch = data.batch(cfg, np.random.default_rng(step))
        assert batch["x0"].shape == (2, 48, 1, 8, 8)
        for b in range(2):  # the target latents are not among the references
            refs = batch["reference_latents"][b].permute(1, 0, 2, 3)
            assert not any(torch.equal(r, batch["x0"][b, :, 0]) for r in refs)
    assert 1 <= len(data.consumed) <= 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_on_disjoint_shards(dataset, tmp_path):
    model = dict(in_channels=48, out_channels=48, num_attention_heads=2, attention_head_dim=8, ffn_dim=32,
                 num_layers=1, text_dim=8, freq_dim=16, text_length=4, rope_max_seq_len=32, coefficient_dim=51,
                 shading_hidden=8, shading_channels=4, temporal_compression=1, spatial_compression=4)
    cfg = dict(output_dir=str(tmp_path / "run"), autoencoder="pixel", vae={"patch": 4}, model=model,
               stream=[str(dataset)], stream_buffer=6, size=SIZE, num_frames=1, max_references=2, steps=3,
               checkpoint_every=0, log_every=0, save_final=False)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    logs = tmp_path / "rank-logs"  # each rank's own stdout/stderr, whole (torchrun's summary alone says little)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "--log-dir", str(logs), "--redirects", "3",
           "-m", "liftdata.cli", "train-lifter", str(tmp_path / "cfg.yaml")]
    ranks = lambda: "".join(f"\n--- {f.relative_to(logs)}\n{f.read_text()[-4000:]}"  # noqa: E731
                            for f in sorted(logs.rglob("std*.log")))
    try:
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"torchrun did not finish in {e.timeout} s" + ranks()) from None
    assert run.returncode == 0, run.stderr[-2000:] + ranks()
    read = [set(json.loads((tmp_path / "run" / f"stream-rank{r}.json").read_text())) for r in range(2)]
    assert read[0] and read[1] and not read[0] & read[1]
    assert read[0] | read[1] <= {u.path for u in list_units([str(dataset)])}
