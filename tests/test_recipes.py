"""Recipes: every `recipes/*.yaml` runs end to end through `liftdata build` on tiny inputs; spec errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from flame_fixtures import make_embedding_arrays, make_flame_arrays, write_npz

import liftdata
from liftdata.capture import Capture
from liftdata.cli import main
from liftdata.head import load_head_model
from liftdata.io import read_parquet, read_webdataset
from liftdata.io.vhap import export_vhap, import_vhap
from liftdata.recipes import RecipeError, apply_overrides, load_recipe, recipe_config, sampler_from_spec
from liftdata.samplers import interpolate, mine_extremes, mix, pose_sweep
from liftdata.synthetic import make_capture, write_video

RECIPES = Path(liftdata.__file__).resolve().parent.parent / "recipes"
VIDEO_FRAMES, N = 6, 8


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny synthetic selfie video, the astronaut photo, a tiny VHAP export + FLAME files."""
    from skimage import data

    d = tmp_path_factory.mktemp("inputs")
    write_video(make_capture(0, n_frames=8, size=128), d / "selfie.mp4")  # faces >= 64 px
    cv2.imwrite(str(d / "astronaut.png"), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    arrays = make_flame_arrays(n_shape=300, n_expression=100)  # FLAME's split, so the defaults load it
    flame_file = write_npz(d / "flame.npz", arrays)
    embedding = write_npz(d / "embedding.npz", make_embedding_arrays(len(arrays["f"])))
    flame = load_head_model("flame", model_path=flame_file, landmark_embedding=embedding)
    export_vhap(make_capture(1, n_frames=4, size=64, head_model=flame), d / "vhap_export")
    return {"video": d / "selfie.mp4", "photo": d / "astronaut.png", "flame": flame_file,
            "embedding": embedding, "vhap": d / "vhap_export", "flame_model": flame}


def build(recipe: str, out: Path, *overrides: str) -> None:
    sets = [f"expand.n={N}", f"output.dir={out}", *overrides]
    assert main(["build", str(RECIPES / recipe), *[a for s in sets for a in ("--set", s)]]) == 0


def assert_preview(out: Path) -> None:
    for name in ("preview.png", "coverage.png", "index.html"):
        assert (out / "preview" / name).stat().st_size > 500
    assert 'src="preview.png"' in (out / "preview" / "index.html").read_text()


def test_every_recipe_is_tested():
    assert sorted(p.name for p in RECIPES.glob("*.yaml")) == ["selfie-extremes.yaml", "single-photo.yaml",
                                                              "vhap-expand.yaml"]


def test_selfie_extremes(tmp_path, inputs, capsys, monkeypatch):
    out = tmp_path / "out"
    build("selfie-extremes.yaml", out, f"input.video={inputs['video']}", f"input.max_frames={VIDEO_FRAMES}",
          "expand.size=96", "output.shard_size=5")
    assert str(out / "webdataset") in capsys.readouterr().out
    manifest = json.loads((out / "webdataset" / "manifest.json").read_text())
    assert manifest["n_samples"] == VIDEO_FRAMES + N and [s["count"] for s in manifest["shards"]] == [5, 5, 4]
    samples = list(read_webdataset(out / "webdataset"))
    assert [s.meta["source"] for s in samples] == ["captured"] * VIDEO_FRAMES + ["lifted"] * N
    assert {s.meta["sampler"]["name"] for s in samples[VIDEO_FRAMES:]} <= {
        "extreme_expression_mining", "product", "expression_interpolation"}
    assert samples[-1].to_arrays()["image"].shape == (96, 96, 3)
    assert_preview(out)
    # the video was tracked once into output.dir/capture/; a rebuild reuses it instead of tracking again
    tracked = Capture.load(out / "capture")
    assert len(tracked) == VIDEO_FRAMES and tracked.extra["tracking"]["input"]["max_frames"] == VIDEO_FRAMES
    import liftdata.track

    def no_tracking(*args, **kwargs):
        raise AssertionError("tracked again")

    monkeypatch.setattr(liftdata.track, "track_video", no_tracking)
    build("selfie-extremes.yaml", out, f"input.video={inputs['video']}", f"input.max_frames={VIDEO_FRAMES}",
          "expand.size=96", "output.shard_size=5")
    assert json.loads((out / "webdataset" / "manifest.json").read_text())["shards"] == manifest["shards"]


def test_single_photo(tmp_path, inputs):
    out = tmp_path / "out"
    build("single-photo.yaml", out, f"input.images={inputs['photo']}", "expand.size=128")
    samples = list(read_parquet(out / "parquet"))
    assert len(samples) == 1 + N and samples[0].meta["source"] == "captured"
    assert samples[1].to_arrays()["image"].shape == (128, 128, 3)
    assert all(s.meta["reference_keys"] == [samples[0].key] for s in samples[1:])
    assert_preview(out)


def test_vhap_expand(tmp_path, inputs):
    out = tmp_path / "out"
    build("vhap-expand.yaml", out, f"input.tracked={inputs['vhap']}", f"input.flame.model={inputs['flame']}",
          f"input.flame.embedding={inputs['embedding']}")
    frames = json.loads((out / "vhap" / "transforms_train.json").read_text())["frames"]
    assert [f["synthetic"] for f in frames] == [False] * 4 + [True] * N
    assert len(import_vhap(out / "vhap", inputs["flame_model"])) == 4 + N
    assert_preview(out)


# ---------------------------------------------------------------------- recipe parsing
def test_recipe_samplers_equal_hand_built_ones():
    selfie = load_recipe(RECIPES / "selfie-extremes.yaml")
    assert sampler_from_spec(selfie["expand"]["sampler"]) == mix(
        [mine_extremes(strength=1.0), interpolate(extrapolation=0.2) * pose_sweep(yaw=(-40, 40), pitch=(-15, 15)),
         interpolate(extrapolation=0.3)], [0.5, 0.3, 0.2])
    photo = load_recipe(RECIPES / "single-photo.yaml")
    assert sampler_from_spec(photo["expand"]["sampler"]) == mine_extremes(strength=0.8) * pose_sweep(
        yaw=(-20, 20), pitch=(-8, 8))
    assert sampler_from_spec({"concat": [{"interpolate": {}}, {"pose_sweep": {}}]}) == interpolate() + pose_sweep()


def test_load_recipe_resolves_paths_and_overrides(tmp_path):
    recipe = load_recipe(RECIPES / "vhap-expand.yaml", ["expand.n=5", "input.flame.model=/abs/flame.pkl",
                                                        "output.format=parquet", "expand.sampler={interpolate: {}}"])
    config = recipe_config(recipe)
    assert config.tracked == str(RECIPES / "vhap_export")  # relative to the recipe file
    assert (config.flame_model, config.flame_embedding) == ("/abs/flame.pkl",
                                                            str(RECIPES / "mediapipe_landmark_embedding.npz"))
    assert config.n == 5 and config.format == "parquet" and config.sampler == {"interpolate": {}}
    assert config.out == str(RECIPES / "out" / "vhap-expand")
    original = {"expand": {"n": 1}}
    assert apply_overrides(original, ["expand.n=2"]) == {"expand": {"n": 2}} and original == {"expand": {"n": 1}}


@pytest.mark.parametrize("override, message", [
    ("expand.smapler={mine_extremes: {}}", "unknown key expand.smapler; did you mean expand.sampler?"),
    ("expand.bogus=1", "unknown key expand.bogus; valid keys in expand: crop, include_captured, keep_unfit, lifter, matte, n, pose_support, quality, "),
    ("expand.format=parquet", "unknown key expand.format; did you mean output.format?"),
    ("input.flame.modle=x.pkl", "unknown key input.flame.modle; did you mean input.flame.model?"),
    ("output.shardsize=5", "unknown key output.shardsize; did you mean output.shard_size?"),
    ("expand.n=0", "expand.n: expected a positive integer"),
    ("expand.n=true", "expand.n: expected a positive integer"),  # n=True is not a count
    ("expand.seed=-1", "expand.seed: expected an integer in [0, "),
    ("expand.size=100000", "expand.size: expected a positive integer up to 4096"),
    ("expand.lifter=warp", "expand.lifter must be a mapping (keys: name, checkpoint, dtype, device)"),
    ("output.format=tiff", "output.format: expected one of webdataset, parquet, vhap, got 'tiff'"),
    ("input.tracking=fast", "input.tracking: expected one of photometric, landmarks, got 'fast'"),
    ("expand.sampler={mine_extreme: {}}", "expand.sampler: unknown sampler 'mine_extreme'"),
])
def test_recipe_keys_and_values_are_checked_before_any_work(tmp_path, capsys, override, message):
    """Each is one line naming the recipe and the key, exit status 2, before tracking (no output written)."""
    out = tmp_path / "out"
    assert main(["build", str(RECIPES / "single-photo.yaml"), "--set", f"output.dir={out}", "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"liftdata build: error: {RECIPES / 'single-photo.yaml'}: ") and message in err, err
    assert err.count("\n") == 1 and not out.exists()


def test_binary_recipe_is_one_line(tmp_path, capsys):
    binary = tmp_path / "recipe.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    assert main(["build", str(binary)]) == 2
    assert capsys.readouterr().err == f"liftdata build: error: {binary}: not a text (YAML) file\n"


@pytest.mark.parametrize("spec, message", [
    ({"mine_extreme": {}}, r"expand\.sampler: unknown sampler 'mine_extreme'; choose from"),
    ({"mine_extremes": {"strenght": 1}}, r"expand\.sampler\.mine_extremes: .*strenght"),
    ({"mix": [{"interpolate": {}}, {"pose_sweep": {"yawn": [1, 2]}}]},
     r"expand\.sampler\.mix\[1\]\.pose_sweep: .*yawn"),
    ({"mix": []}, r"expand\.sampler\.mix: expected a non-empty list"),
    ({"product": [{"interpolate": {}}]}, r"expand\.sampler\.product: expected \[expression sampler, pose sampler\]"),
    ({"interpolate": {}, "pose_sweep": {}}, r"expand\.sampler: expected exactly one sampler name"),
    ("mine_extremes", r"expand\.sampler: expected a mapping"),
])
def test_sampler_spec_errors_name_the_key(spec, message):
    with pytest.raises(RecipeError, match=message):
        sampler_from_spec(spec, "expand.sampler")


def test_recipe_errors(tmp_path, capsys):
    with pytest.raises(RecipeError, match="nope.yaml: recipe not found"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: [unclosed\n")
    with pytest.raises(RecipeError, match="bad.yaml: not valid YAML"):
        load_recipe(bad)
    bad.write_text("input: {video: a.mp4}\n")
    with pytest.raises(RecipeError, match="bad.yaml: a recipe needs the sections input, expand and output"):
        load_recipe(bad)
    with pytest.raises(RecipeError, match="--set 'expand.n': expected KEY.PATH=VALUE"):
        load_recipe(RECIPES / "single-photo.yaml", ["expand.n"])
    # through the CLI: one line naming the problem, exit status 2, no traceback
    bad.write_text("input: {video: a.mp4, images: b.png}\nexpand: {n: 4}\noutput: {dir: out}\n")
    assert main(["build", str(bad)]) == 2
    assert "bad.yaml: input: give exactly one of video, images, tracked, synthetic" in capsys.readouterr().err
    args = ["build", str(RECIPES / "single-photo.yaml"), "--set", "output.format=tiff", "--set", "input.images=/x.png"]
    assert main(args) == 2  # refused before tracking (the photo does not exist)
    assert "output.format: expected one of webdataset, parquet, vhap, got 'tiff'" in capsys.readouterr().err
    assert main(["build", str(RECIPES / "single-photo.yaml"), "--set", "input.images=/nonexistent/x.png"]) == 2
    assert "/nonexistent/x.png: no such file or directory" in capsys.readouterr().err


def test_vhap_recipe_is_refused_in_a_multi_process_run(tmp_path, capsys, monkeypatch):
    """One run path: the CLI's "VHAP is written by one process" rule holds for recipes too (before any work)."""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    out = tmp_path / "out"
    assert main(["build", str(RECIPES / "vhap-expand.yaml"), "--set", f"output.dir={out}",
                 "--set", f"input.tracked={tmp_path}"]) == 2
    assert capsys.readouterr().err == ("liftdata build: error: --format vhap is written by one process; run it "
                                       "without torchrun/accelerate\n")
    assert not out.exists()
