"""LPIPS: weight discovery and loading (fake files with the real key names and shapes), the
network against an independent functional backbone + a slow per-pixel formula, properties."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from liftdata.eval.lpips import LPIPS, LpipsWeightsError, find_weights, load_lpips, lpips_reference

ALEX_CONVS = {0: (64, 3, 11), 3: (192, 64, 5), 6: (384, 192, 3), 8: (256, 384, 3), 10: (256, 256, 3)}
VGG_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
HEAD_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}


def vgg_convs():
    convs, i, c_in = {}, 0, 3
    for v in VGG_CFG:
        if v == "M":
            i += 1
        else:
            convs[i], c_in, i = (v, c_in, 3), v, i + 2
    return convs


def fake_torchvision_checkpoint(backbone, seed=0):
    """features.{i}.weight/bias with torchvision's shapes (He-initialised random values)."""
    g = torch.Generator().manual_seed(seed)
    convs = ALEX_CONVS if backbone == "alex" else vgg_convs()
    sd = {}
    for i, (c_out, c_in, k) in convs.items():
        sd[f"features.{i}.weight"] = torch.randn(c_out, c_in, k, k, generator=g) * (2 / (c_in * k * k)) ** 0.5
        sd[f"features.{i}.bias"] = 0.01 * torch.randn(c_out, generator=g)
    sd["classifier.6.bias"] = torch.zeros(1000)  # other keys of the real file are ignored
    return sd


def fake_heads(backbone, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {f"lin{l}.model.1.weight": torch.rand(1, c, 1, 1, generator=g)
            for l, c in enumerate(HEAD_CHANNELS[backbone])}


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Backbones in $TORCH_HOME/hub/checkpoints, heads in <dir>/weights/v0.1 (the lpips layout)."""
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    heads = tmp_path / "lpips_weights"
    (heads / "weights" / "v0.1").mkdir(parents=True)
    hub.mkdir(parents=True)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.save(fake_torchvision_checkpoint("alex"), hub / "alexnet-owt-7be5be79.pth")
    torch.save(fake_torchvision_checkpoint("vgg"), hub / "vgg16-397923af.pth")
    for b in ("alex", "vgg"):
        torch.save(fake_heads(b), heads / "weights" / "v0.1" / f"{b}.pth")
    return heads


def functional_taps(backbone, sd, x):
    """The backbone written out with F.conv2d on the checkpoint dict: an independent twin."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    h = (2 * x - 1 - shift) / scale
    conv = lambda h, i, **kw: F.relu(F.conv2d(h, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], **kw))  # noqa
    if backbone == "alex":
        t1 = conv(h, 0, stride=4, padding=2)
        t2 = conv(F.max_pool2d(t1, 3, 2), 3, padding=2)
        t3 = conv(F.max_pool2d(t2, 3, 2), 6, padding=1)
        t4 = conv(t3, 8, padding=1)
        return [t1, t2, t3, t4, conv(t4, 10, padding=1)]
    taps, i = [], 0
    for block in ([0, 2], [5, 7], [10, 12, 14], [17, 19, 21], [24, 26, 28]):
        if taps:
            h = F.max_pool2d(h, 2, 2)
        for i in block:
            h = conv(h, i, padding=1)
        taps.append(h)
    return taps


@pytest.mark.parametrize("backbone", ["alex", "vgg"])
def test_network_matches_functional_backbone_and_slow_formula(caches, backbone):
    net = load_lpips(backbone, caches)
    sd = fake_torchvision_checkpoint(backbone)
    heads = [h.flatten().numpy().astype(np.float64) for h in fake_heads(backbone).values()]
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(2, 3, 40, 36, generator=g), torch.rand(2, 3, 40, 36, generator=g)
    with torch.no_grad():
        ours = net.features_at_taps(x)
        twin = functional_taps(backbone, sd, x)
        for a, b, c in zip(ours, twin, HEAD_CHANNELS[backbone]):
            assert a.shape[1] == c
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
        d = net(x, y)
        fx, fy = functional_taps(backbone, sd, x), functional_taps(backbone, sd, y)
    assert d.shape == (2,)
    for n in range(2):
        want = lpips_reference([f[n].numpy() for f in fx], [f[n].numpy() for f in fy], heads)
        assert abs(d[n].item() - want) < 1e-4 * max(1.0, want)


def test_properties(caches):
    net = load_lpips("alex", caches)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(3, 3, 32, 32, generator=g), torch.rand(3, 3, 32, 32, generator=g)
    with torch.no_grad():
        assert torch.all(net(x, x).abs() < 1e-6)
        torch.testing.assert_close(net(x, y), net(y, x))
        assert torch.all(net(x, y) > 0)
        single = torch.cat([net(x[i:i + 1], y[i:i + 1]) for i in range(3)])
        torch.testing.assert_close(net(x, y), single, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(net(x, y, torch.ones(3, 32, 32)), net(x, y), atol=1e-6, rtol=1e-5)
        # Differences only outside the mask do not count.
        mask = torch.zeros(3, 32, 32)
        mask[:, :, :16] = 1
        z = x.clone()
        z[..., 24:] = y[..., 24:]
        assert net(x, z, mask).max() < 0.5 * net(x, z).min()


def test_missing_backbone_names_file_places_and_url(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    with pytest.raises(LpipsWeightsError) as e:
        find_weights("vgg", tmp_path)
    msg = str(e.value)
    assert "vgg16-397923af.pth" in msg and str(tmp_path / "empty" / "hub" / "checkpoints") in msg
    assert "https://download.pytorch.org/models/vgg16-397923af.pth" in msg


def test_missing_heads_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(fake_torchvision_checkpoint("alex"), tmp_path / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth")
    monkeypatch.setattr("liftdata.eval.lpips._lpips_package_dir", lambda: None)
    with pytest.raises(LpipsWeightsError, match=r"alex\.pth not found.*pip download lpips"):
        find_weights("alex", tmp_path)


def test_heads_found_in_an_installed_lpips_package_without_importing_it(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "lpips"
    (pkg / "weights" / "v0.1").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('needs torchvision')\n")
    torch.save(fake_heads("alex"), pkg / "weights" / "v0.1" / "alex.pth")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(fake_torchvision_checkpoint("alex"), tmp_path / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth")
    net_path, head_path = find_weights("alex")
    assert head_path == pkg / "weights" / "v0.1" / "alex.pth"
    LPIPS("alex").load_weights(net_path, head_path)


def test_wrong_files_are_rejected(caches, tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"lin0.model.1.weight": torch.zeros(1, 3, 1, 1)}, bad)
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    with pytest.raises(LpipsWeightsError, match=r"lin0\.model\.1\.weight of shape \[1, 64, 1, 1\]"):
        LPIPS("alex").load_weights(hub / "alexnet-owt-7be5be79.pth", bad)
    with pytest.raises(LpipsWeightsError, match="not a torchvision alex checkpoint"):
        LPIPS("alex").load_weights(hub / "vgg16-397923af.pth", caches / "weights" / "v0.1" / "alex.pth")
