"""Foreground alpha (issue 16, item 4): covers the rendered head, 0 far from it; a real portrait."""

import numpy as np
import pytest
import torch

from liftdata.synthetic import make_capture
from liftdata.track.crop import CropConfig, crop_capture, crop_image
from liftdata.track.matte import AlphaFrames, MatteConfig, head_mask, person_prior, refine_matte, selfie_matte

torch.set_num_threads(1)
pytest.importorskip("mediapipe", reason="the selfie segmenter ships with mediapipe (track extra)")


@pytest.fixture(scope="module")
def capture():
    return make_capture(11, n_frames=6, size=256, fov_y_deg=40.0, max_yaw_deg=25)


def _head(capture, t):
    with torch.no_grad():
        verts = capture.head_model.vertices(torch.as_tensor(capture.identity), capture.kinematics[[t]])[0]
    return head_mask(verts, np.asarray(capture.head_model.faces), capture.camera)


def test_alpha_covers_the_head_and_is_zero_far_from_it(capture):
    import cv2

    alpha = AlphaFrames(capture)
    for t in range(len(capture)):
        a, head = alpha[t].astype(np.float32) / 255, _head(capture, t)
        raw = selfie_matte(np.asarray(capture.frames[t]))
        # the segmenter alone already sees most of the (synthetic, hairless) head
        assert (raw[head > 0] > 0.5).mean() > 0.9
        assert (a[head > 0] >= 0.99).all()  # the refined alpha covers all of it
        ys, xs = np.nonzero(head)
        size = max(np.ptp(xs), np.ptp(ys)) + 1
        dist = cv2.distanceTransform((head == 0).astype(np.uint8), cv2.DIST_L2, 5)
        above_chin = np.arange(head.shape[0])[:, None] < ys.max()
        far = (dist > size) & above_chin  # over a head size beside / above the head: no body there
        assert a[far].max() == 0.0, t
        print(t, "selfie on head", round(float((raw[head > 0] > 0.5).mean()), 3), "selfie far max",
              round(float(raw[far].max()), 3), "alpha > 0 up to", round(float(dist[a > 0].max() / size), 2), "sizes")


def test_alpha_covers_the_whole_head_proxy_world():
    """Subjects rendered with hair on a skull and a neck (`head="proxy"`): all of it is foreground."""
    import cv2

    cap = make_capture(13, n_frames=3, size=256, fov_y_deg=40.0, max_yaw_deg=25, head="proxy")
    alpha = AlphaFrames(cap)
    for t in range(len(cap)):
        verts, faces = cap.head_model.whole_head(cap.identity, cap.kinematics[[t]])
        whole = head_mask(verts[0], faces, cap.camera)
        a = alpha[t].astype(np.float32) / 255
        assert (a[whole > 0] > 0.5).mean() > 0.99
        ys, xs = np.nonzero(whole)
        size = max(np.ptp(xs), np.ptp(ys)) + 1
        dist = cv2.distanceTransform((whole == 0).astype(np.uint8), cv2.DIST_L2, 5)
        far = (dist > 0.5 * size) & (np.arange(whole.shape[0])[:, None] < ys.min() + 0.5 * size)
        assert a[far].max() == 0.0  # beside / above the head (the segmenter adds shoulders below it)


def test_person_prior_and_other_people_are_removed():
    head = np.zeros((200, 300), np.float32)
    head[40:90, 60:100] = 1  # a 50 px head on the left
    soft = np.zeros_like(head)
    soft[30:200, 40:120] = 1  # that person (hair, body)
    soft[40:90, 220:260] = 1  # another person's head, far right
    image = np.full((200, 300, 3), 128, np.uint8)
    alpha = refine_matte(soft, head, image, MatteConfig())
    assert alpha[40:90, 220:260].max() == 0  # not the tracked person
    assert alpha[head > 0].min() == 1.0 and alpha[150, 80] > 0.9  # head and body below it kept
    prior = person_prior(head)
    assert prior[5, 280] == 0 and prior[190, 80] == 1


def test_cropped_alpha_is_the_crop_of_the_alpha(capture):
    crop = crop_capture(capture, CropConfig(size=128))
    full, cropped = AlphaFrames(capture), AlphaFrames(capture, crop)
    expected = crop_image(full[2].astype(np.float32), crop.boxes[2], 128, 1)  # 1 = cv2.INTER_LINEAR
    assert np.abs(cropped[2].astype(np.float32) - expected).max() <= 1.0


def test_real_portrait():
    from skimage.data import astronaut

    from liftdata.track import track_images

    img = astronaut()
    cap = track_images([_write(img)], progress=False)
    a = AlphaFrames(cap)[0].astype(np.float32) / 255
    head = _head(cap, 0)
    ys, xs = np.nonzero(head)
    assert (a[head > 0] >= 0.99).all()
    hair = a[max(0, ys.min() - 15), int(xs.mean())]  # just above the forehead: her hair
    assert hair > 0.5
    assert a[:60, -60:].max() == 0.0 and a[:60, :60].max() == 0.0  # the top corners: flag and shuttle


def _write(img):
    import tempfile

    import cv2

    path = tempfile.mkdtemp() + "/astronaut.png"
    cv2.imwrite(path, cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return path


def test_expand_gives_every_sample_its_alpha(tmp_path):
    """Captured and lifted samples carry `{key}.alpha.png`: the head-model mask of the sample's own
    kinematics is foreground, the far corners are background; it survives the WebDataset round trip."""
    import tarfile

    from liftdata.dataset import LiftDataset
    from liftdata.io import read_webdataset
    from liftdata.synthetic import make_capture

    cap = make_capture(11, n_frames=4, size=96, head="proxy")
    exp = LiftDataset(cap).expand(4, seed=0, matte=True)
    exp.write_webdataset(tmp_path / "ds", progress=False)
    samples = list(read_webdataset(tmp_path / "ds"))
    assert len(samples) == 8 and {s.meta["source"] for s in samples} == {"captured", "lifted"}
    for s in samples:
        a = s.to_arrays()
        head = a["mask"] > 127  # the condition map's head mask: the same kinematics
        assert a["alpha"] is not None and a["alpha"].shape == head.shape
        assert (a["alpha"][head] == 255).all()
        assert max(a["alpha"][0, 0], a["alpha"][0, -1]) == 0  # top corners: beside the hair ellipse
    with tarfile.open(next((tmp_path / "ds").glob("*.tar"))) as tar:
        assert sum(n.endswith(".alpha.png") for n in tar.getnames()) == 8
    off = LiftDataset(cap).expand(4, seed=0, matte=False)
    assert all(s.alpha is None for s in off)
