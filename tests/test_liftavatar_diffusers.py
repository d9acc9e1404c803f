"""A saved LiftAvatar pipeline in diffusers' own loader, and our loader on Hub ids and standard options.

Independent references: diffusers' `DiffusionPipeline.from_pretrained` (its custom-code path, run
unchanged) against our `LiftAvatarPipeline.from_pretrained` on the same folder, seed and inputs;
a fresh interpreter in which `liftdata` cannot be imported; huggingface_hub's own cache layout.
"""

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLWan, DiffusionPipeline, FlowMatchEulerDiscreteScheduler

from liftdata.lifters.liftavatar import LiftAvatarLifter, LiftAvatarPipeline, LiftAvatarTransformer3DModel
from liftdata.lifters.liftavatar.pipeline import write_remote_code
from liftdata.lifters.liftavatar.pixel import PixelSpaceAutoencoder

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "benchmarks" / "checkpoints" / "liftavatar-pixel-128"
C = 5
WAN_VAE = dict(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True])
MODEL = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, text_dim=8, freq_dim=16, ffn_dim=32,
             num_layers=2, rope_max_seq_len=32, coefficient_dim=C, shading_hidden=8, shading_channels=4,
             text_length=4)
PIXEL = dict(in_channels=48, out_channels=48, temporal_compression=1, spatial_compression=4, warp_guidance=True,
             warp_residual=True, prediction_type="sample")


def tiny_pipeline(kind: str, seed: int = 0) -> LiftAvatarPipeline:
    """A random pipeline: Wan VAE + velocity model, or pixel space + warp guidance + x0 model."""
    torch.manual_seed(seed)
    if kind == "wan":
        model, vae = LiftAvatarTransformer3DModel(**MODEL, in_channels=16, out_channels=16), AutoencoderKLWan(**WAN_VAE)
    else:
        model, vae = LiftAvatarTransformer3DModel(**MODEL, **PIXEL), PixelSpaceAutoencoder(patch=4)
    with torch.no_grad():  # the zero-initialised condition paths too, so that every input matters
        for p in model.parameters():
            p.add_(torch.randn(p.shape) * 0.05)
    return LiftAvatarPipeline(model.eval(), vae.eval(), FlowMatchEulerDiscreteScheduler(shift=3.0))


def inputs(pipe, n: int = 5, size: int = 32, seed: int = 1, coefficients: int = C) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = dict(references=torch.rand(2, 3, size, size, generator=g),
               reference_maps=torch.rand(2, 4, size, size, generator=g),
               reference_coefficients=torch.randn(2, coefficients, generator=g),
               driving_maps=torch.rand(n, 4, size, size, generator=g),
               driving_coefficients=torch.randn(n, coefficients, generator=g))
    if pipe.transformer.config.warp_guidance:
        out.update(warp_frames=torch.rand(n, 3, size, size, generator=g),
                   warp_confidence=torch.rand(n, 1, size, size, generator=g))
    return out


def run(pipe, x: dict, seed: int = 7, steps: int = 2) -> np.ndarray:
    return pipe(**x, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed)).frames


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(folder)).encode() + f.read_bytes())
    return h.hexdigest()


# ---------------------------------------------------------------------- diffusers' loader
@pytest.mark.parametrize("kind", ["wan", "pixel"])
def test_diffusers_loads_a_saved_pipeline_and_agrees_with_ours(tmp_path, kind):
    pipe = tiny_pipeline(kind)
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_liftavatar", "LiftAvatarPipeline"]
    assert index["transformer"] == ["transformer_liftavatar", "LiftAvatarTransformer3DModel"]
    with pytest.raises(ValueError, match="trust_remote_code"):
        DiffusionPipeline.from_pretrained(tmp_path)

    theirs = DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True)
    ours = LiftAvatarPipeline.from_pretrained(tmp_path)
    assert type(theirs).__name__ == "LiftAvatarPipeline" and not isinstance(theirs, LiftAvatarPipeline)
    assert type(theirs.transformer).__module__.startswith("diffusers_modules")  # the folder's code, not liftdata's
    assert same_weights(theirs.transformer, pipe.transformer) and same_weights(ours.transformer, pipe.transformer)
    for seed in (0, 1, 2):
        x = inputs(pipe, seed=seed)
        expected = run(ours, x, seed=seed)
        assert np.array_equal(run(theirs, x, seed=seed), expected)
        assert np.array_equal(run(pipe, x, seed=seed), expected)
    assert not np.array_equal(run(theirs, inputs(pipe), seed=0), run(theirs, inputs(pipe), seed=1))


def test_diffusers_load_needs_no_liftdata(tmp_path):
    """In a fresh interpreter where `import liftdata` fails, the folder's own code is enough."""
    pipe = tiny_pipeline("pixel")
    pipe.save_pretrained(tmp_path / "pipe")
    x = inputs(pipe)
    torch.save(x, tmp_path / "inputs.pt")
    script = f"""
import sys, importlib.abc, numpy as np, torch
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "liftdata":
            raise ImportError("liftdata is blocked in this test")
sys.meta_path.insert(0, Block())
torch.set_num_threads(1)
from diffusers import DiffusionPipeline
pipe = DiffusionPipeline.from_pretrained({str(tmp_path / 'pipe')!r}, trust_remote_code=True)
x = torch.load({str(tmp_path / 'inputs.pt')!r})
out = pipe(**x, num_inference_steps=2, generator=torch.Generator().manual_seed(7)).frames
np.save({str(tmp_path / 'out.npy')!r}, out)
assert not any(m.split(".")[0] == "liftdata" for m in sys.modules)
"""
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert np.array_equal(np.load(tmp_path / "out.npy"), run(LiftAvatarPipeline.from_pretrained(tmp_path / "pipe"), x))


def test_a_pipeline_loaded_by_diffusers_saves_and_reloads(tmp_path):
    pipe = tiny_pipeline("pixel")
    pipe.save_pretrained(tmp_path / "a")
    theirs = DiffusionPipeline.from_pretrained(tmp_path / "a", trust_remote_code=True)
    theirs.save_pretrained(tmp_path / "b")
    for name in ("pipeline_liftavatar.py", "transformer_liftavatar.py", "transformer/transformer_liftavatar.py",
                 "vae/pixel_liftavatar.py", "model_index.json"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text(), name
    x = inputs(pipe, seed=3)
    expected = run(pipe, x)
    assert np.array_equal(run(LiftAvatarPipeline.from_pretrained(tmp_path / "b"), x), expected)
    assert np.array_equal(run(DiffusionPipeline.from_pretrained(tmp_path / "b", trust_remote_code=True), x), expected)


def test_shipped_code_is_liftdata_code_with_relative_imports(tmp_path):
    tiny_pipeline("pixel").save_pretrained(tmp_path)
    import liftdata.lifters.liftavatar.transformer as transformer_module

    shipped = (tmp_path / "transformer" / "transformer_liftavatar.py").read_text()
    assert shipped.split("\n", 1)[1] == Path(transformer_module.__file__).read_text()
    pipeline = (tmp_path / "pipeline_liftavatar.py").read_text()
    assert not re.search(r"^\s*(from|import)\s+liftdata\b", pipeline, re.M)
    assert "from .transformer_liftavatar import" in pipeline and "from .pixel_liftavatar import" in pipeline


def test_old_layout_loads_with_our_loader_and_upgrades_in_place(tmp_path):
    """Folders written before this layout (model_index naming `liftdata` modules, no code files)."""
    digest = tree_digest(CHECKPOINT)
    ours = LiftAvatarPipeline.from_pretrained(CHECKPOINT)  # read-only: the shipped checkpoint is never written
    assert tree_digest(CHECKPOINT) == digest
    with pytest.raises(AttributeError, match="has no attribute LiftAvatarPipeline"):  # the error of issue 19
        DiffusionPipeline.from_pretrained(CHECKPOINT, trust_remote_code=True)

    copy = shutil.copytree(CHECKPOINT, tmp_path / "ckpt")
    write_remote_code(copy)
    assert tree_digest(CHECKPOINT) == digest
    theirs = DiffusionPipeline.from_pretrained(copy, trust_remote_code=True)
    assert same_weights(theirs.transformer, ours.transformer)
    for seed in (0, 1):
        x = inputs(ours, n=2, seed=seed, coefficients=ours.transformer.config.coefficient_dim)
        assert np.array_equal(run(theirs, x, seed=seed, steps=1), run(ours, x, seed=seed, steps=1))
    lifter = LiftAvatarLifter.from_pretrained(copy, device="cpu")
    assert lifter.clip_frames == json.loads((CHECKPOINT / "training_config.json").read_text())["num_frames"]
    # the checkpoint's own sampling default (its figures are measured at one step), unless overridden
    assert json.loads((CHECKPOINT / "lifter_config.json").read_text()) == {"num_inference_steps": 1}
    assert lifter.num_inference_steps == 1
    assert LiftAvatarLifter.from_pretrained(copy, device="cpu", num_inference_steps=4).num_inference_steps == 4


def test_lifter_config_sets_sampling_defaults_and_is_checked(tmp_path):
    """`lifter_config.json` beside the pipeline: its keys become the lifter's defaults (an explicit
    option wins; without the file the class defaults hold); a bad file is one error naming it and the key."""
    from liftdata.lifters.warp import LifterInputError

    folder = tmp_path / "p"
    tiny_pipeline("pixel").save_pretrained(folder)
    plain = LiftAvatarLifter.from_pretrained(folder, device="cpu")
    assert (plain.num_inference_steps, plain.guidance_scale, plain.warp_blend, plain.num_samples) == (30, 1.0, True, 1)
    (folder / "lifter_config.json").write_text(json.dumps({"num_inference_steps": 2, "guidance_scale": 3,
                                                           "warp_blend": False, "num_samples": 3}))
    lifter = LiftAvatarLifter.from_pretrained(folder, device="cpu")
    assert (lifter.num_inference_steps, lifter.guidance_scale, lifter.warp_blend, lifter.num_samples) == (2, 3.0, False, 3)
    assert isinstance(lifter.guidance_scale, float) and isinstance(lifter.num_inference_steps, int)
    assert LiftAvatarLifter.from_pretrained(folder, device="cpu", guidance_scale=1.5).guidance_scale == 1.5
    for bad, message in [({"num_inference_steps": 0}, "num_inference_steps must be a positive integer, got 0"),
                         ({"num_inference_steps": 1.5}, "num_inference_steps must be a positive integer, got 1.5"),
                         ({"warp_blend": 1}, "warp_blend must be true or false, got 1"),
                         ({"num_samples": 0}, "num_samples must be a positive integer, got 0"),
                         ({"num_inference_steps": True}, "num_inference_steps must be a positive integer, got True"),
                         ({"guidance_scale": float("inf")}, "guidance_scale must be a positive number, got inf"),
                         ({"num_inference_steps": 1e400}, "num_inference_steps must be a positive integer, got inf"),
                         ({"steps": 1}, "expected an object with keys among"), ([1], "got list")]:
        (folder / "lifter_config.json").write_text(json.dumps(bad))
        with pytest.raises(LifterInputError) as info:
            LiftAvatarLifter.from_pretrained(folder, device="cpu")
        assert str(info.value).startswith(str(folder / "lifter_config.json")) and message in str(info.value), bad
    (folder / "lifter_config.json").write_bytes(b'{"num_inference_steps": 1, "\xff": 0}')
    with pytest.raises(LifterInputError, match="lifter_config.json: not UTF-8 text"):
        LiftAvatarLifter.from_pretrained(folder, device="cpu")
    (folder / "lifter_config.json").write_text("{num_inference_steps: 1}")
    with pytest.raises(LifterInputError, match="lifter_config.json: not valid JSON"):
        LiftAvatarLifter.from_pretrained(folder, device="cpu")


def test_a_training_save_pipeline_folder_upgrades(tmp_path):
    """`training.save_pipeline` writes its own model_index.json; `write_remote_code` completes it."""
    from liftdata.lifters.liftavatar.training import save_pipeline

    pipe = tiny_pipeline("pixel")
    save_pipeline(pipe, pipe.transformer, tmp_path)
    expected = run(LiftAvatarPipeline.from_pretrained(tmp_path), inputs(pipe))
    write_remote_code(tmp_path)
    assert np.array_equal(run(DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True), inputs(pipe)),
                          expected)
    assert np.array_equal(run(LiftAvatarPipeline.from_pretrained(tmp_path), inputs(pipe)), expected)


def test_write_remote_code_refuses_a_base_wan_folder(tmp_path):
    from diffusers import WanTransformer3DModel

    WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=16,
                          out_channels=16, text_dim=8, freq_dim=16, ffn_dim=32, num_layers=1
                          ).save_pretrained(tmp_path / "transformer")
    with pytest.raises(ValueError, match="not a saved LiftAvatar pipeline"):
        write_remote_code(tmp_path)


# ---------------------------------------------------------------------- our loader: Hub ids and options
def fake_hub_cache(cache: Path, repo_id: str, source: Path, commit: str) -> None:
    """huggingface_hub's cache layout: models--{org}--{name}/refs/main + snapshots/{commit}/..."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(source, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)


def test_hub_repo_id_from_the_local_cache(tmp_path):
    pipe = tiny_pipeline("pixel")
    pipe.save_pretrained(tmp_path / "src")
    (tmp_path / "src" / "training_config.json").write_text(json.dumps({"num_frames": 3}))
    commit = "0123456789abcdef0123456789abcdef01234567"
    fake_hub_cache(tmp_path / "cache", "someone/liftavatar-tiny", tmp_path / "src", commit)
    x = inputs(pipe, seed=5)
    expected = run(pipe, x)
    for revision in (None, commit):
        ours = LiftAvatarPipeline.from_pretrained("someone/liftavatar-tiny", cache_dir=tmp_path / "cache",
                                                  local_files_only=True, revision=revision)
        assert np.array_equal(run(ours, x), expected)
    from huggingface_hub.errors import LocalEntryNotFoundError

    with pytest.raises(LocalEntryNotFoundError) as error:  # not in the cache, and no download is allowed
        LiftAvatarPipeline.from_pretrained("someone/liftavatar-tiny", cache_dir=tmp_path / "cache",
                                           local_files_only=True, revision="f" * 40)
    assert "not a local folder either" in " ".join(error.value.__notes__)
    theirs = DiffusionPipeline.from_pretrained("someone/liftavatar-tiny", cache_dir=tmp_path / "cache",
                                               local_files_only=True, trust_remote_code=True)
    assert np.array_equal(run(theirs, x), expected)
    lifter = LiftAvatarLifter.from_pretrained("someone/liftavatar-tiny", device="cpu", cache_dir=tmp_path / "cache",
                                              local_files_only=True, num_inference_steps=2)
    assert lifter.clip_frames == 3 and lifter.num_inference_steps == 2
    lifter = LiftAvatarLifter.from_pretrained("someone/liftavatar-tiny", device="cpu", cache_dir=tmp_path / "cache",
                                              local_files_only=True, dtype="bfloat16", variant=None)
    assert lifter.pipeline.transformer.blocks[0].ffn.net[0].proj.weight.dtype == torch.bfloat16


def test_hub_options_reach_the_download_call(tmp_path, monkeypatch):
    import huggingface_hub

    tiny_pipeline("pixel").save_pretrained(tmp_path)
    calls = []

    def download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", download)
    LiftAvatarPipeline.from_pretrained("org/name", revision="v1", cache_dir="/c", token="t", force_download=True,
                                       use_safetensors=True)
    repo_id, kwargs = calls[-1]
    assert repo_id == "org/name" and kwargs["revision"] == "v1" and kwargs["cache_dir"] == "/c"
    assert kwargs["token"] == "t" and kwargs["force_download"] is True and "*.bin" in kwargs["ignore_patterns"]
    with pytest.raises(ValueError, match="device_map"):  # refused by name, before any download
        LiftAvatarPipeline.from_pretrained("org/other", device_map="auto")
    with pytest.raises(ValueError, match="low_cpu_mem_usage"):
        LiftAvatarLifter.from_pretrained("org/other", low_cpu_mem_usage=False)
    assert [c[0] for c in calls] == ["org/name"]


def test_bad_locations_and_local_only_options_are_refused(tmp_path):
    tiny_pipeline("pixel").save_pretrained(tmp_path / "p")
    with pytest.raises(FileNotFoundError, match="not a Hub repo id"):
        LiftAvatarPipeline.from_pretrained(tmp_path / "missing" / "deeper")
    with pytest.raises(ValueError, match="revision"):
        LiftAvatarPipeline.from_pretrained(tmp_path / "p", revision="main")
    with pytest.raises(ValueError, match="keeps its own transformer config"):
        LiftAvatarPipeline.from_pretrained(tmp_path / "p", driving_mode="tokens")


def test_weight_options_use_safetensors_variant_and_dtype(tmp_path):
    pipe, other = tiny_pipeline("pixel", seed=0), tiny_pipeline("pixel", seed=1)
    pipe.save_pretrained(tmp_path)
    other.transformer.save_pretrained(tmp_path / "transformer", variant="ema")
    assert same_weights(LiftAvatarPipeline.from_pretrained(tmp_path, variant="ema").transformer, other.transformer)
    with pytest.raises(ValueError, match="variant: no 'fp16' weight files"):
        LiftAvatarPipeline.from_pretrained(tmp_path, variant="fp16")
    assert same_weights(LiftAvatarPipeline.from_pretrained(tmp_path, use_safetensors=True).transformer,
                        pipe.transformer)
    with pytest.raises(EnvironmentError):  # there are no .bin weights to honour use_safetensors=False with
        LiftAvatarPipeline.from_pretrained(tmp_path, use_safetensors=False)
    half = LiftAvatarPipeline.from_pretrained(tmp_path, torch_dtype=torch.bfloat16)
    assert half.transformer.blocks[0].ffn.net[0].proj.weight.dtype == torch.bfloat16
    assert half.transformer.blocks[0].scale_shift_table.dtype == torch.float32
    dtypes = lambda m: {k: v.dtype for k, v in m.state_dict().items()}  # noqa: E731
    assert dtypes(LiftAvatarPipeline.from_pretrained(tmp_path, dtype=torch.bfloat16).transformer) == dtypes(
        half.transformer)  # diffusers' newer name for torch_dtype
    with pytest.raises(ValueError, match="two names for one option"):
        LiftAvatarPipeline.from_pretrained(tmp_path, dtype=torch.bfloat16, torch_dtype=torch.float16)
    theirs = DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True, dtype=torch.bfloat16)
    assert dtypes(theirs.transformer) == dtypes(half.transformer)  # the same modules kept float32 by both loaders
    theirs = DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True, variant="ema")
    assert same_weights(theirs.transformer, other.transformer)


# ---------------------------------------------------------------------- README
def test_readme_loader_calls_run(tmp_path, monkeypatch):
    """The README's loading block (```py after "Loading a saved pipeline") runs on a saved folder."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"Loading a saved pipeline.*?```py\n(.*?)```", text, re.S)[1]
    assert "DiffusionPipeline.from_pretrained" in block and "LiftAvatarPipeline.from_pretrained" in block
    shutil.copytree(CHECKPOINT, tmp_path / "runs" / "liftavatar" / "final")
    write_remote_code(tmp_path / "runs" / "liftavatar" / "final")
    monkeypatch.chdir(tmp_path)
    scope = {"__name__": "readme"}
    exec(compile(block, "README.md", "exec"), scope)
    assert type(scope["pipe"]).__name__ == "LiftAvatarPipeline"


def test_a_variant_of_the_transformer_only_leaves_the_wan_vae_as_saved(tmp_path):
    pipe, other = tiny_pipeline("wan", seed=0), tiny_pipeline("wan", seed=1)
    pipe.save_pretrained(tmp_path)
    other.transformer.save_pretrained(tmp_path / "transformer", variant="ema")
    loaded = LiftAvatarPipeline.from_pretrained(tmp_path, variant="ema")
    assert same_weights(loaded.transformer, other.transformer) and same_weights(loaded.vae, pipe.vae)
    theirs = DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True, variant="ema")
    x = inputs(pipe, seed=2)
    assert np.array_equal(run(theirs, x), run(loaded, x))
