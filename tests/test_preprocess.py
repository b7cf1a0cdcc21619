"""One preprocessing: RGB first with one alpha policy on every path; HF models get their processor's geometry."""
import numpy as np
import pytest
import torch
from PIL import Image

from cultureclip.backbone import create_backbone
from cultureclip.checkpoint import save_model
from cultureclip.image import to_rgb


def _palette_image(w=48, h=40, transparent=False):
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).quantize(colors=16)
    if transparent:
        img.info["transparency"] = 0  # palette index 0 is see-through
    return img


def _rgba_image(w=48, h=40):
    rng = np.random.default_rng(2)
    px = rng.integers(0, 255, (h, w, 4), dtype=np.uint8)
    px[: h // 3, :, 3] = 0  # a fully transparent band (its RGB values are noise, as in real PNGs)
    px[h // 3 : h // 2, :, 3] = 128
    return Image.fromarray(px, "RGBA")


def test_to_rgb_composites_onto_white():
    px = np.zeros((2, 2, 4), dtype=np.uint8)
    px[0, 0] = (10, 20, 30, 0)  # transparent: white
    px[0, 1] = (10, 20, 30, 255)  # opaque: itself
    px[1, :] = (0, 0, 0, 128)  # half black over white: mid grey
    out = np.asarray(to_rgb(Image.fromarray(px, "RGBA")))
    assert out.shape == (2, 2, 3)
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[0, 1]) == (10, 20, 30)
    assert abs(int(out[1, 0, 0]) - 127) <= 1
    pal = _palette_image(transparent=True)
    arr = np.asarray(to_rgb(pal))
    assert (arr[np.asarray(pal) == 0] == 255).all()  # transparent palette entry -> white
    la = Image.fromarray(np.array([[[50, 0], [50, 255]]], dtype=np.uint8), "LA")
    assert np.asarray(to_rgb(la)).tolist() == [[[255, 255, 255], [50, 50, 50]]]
    rgb = Image.new("RGB", (3, 3), (1, 2, 3))
    out = to_rgb(rgb)
    assert out is not rgb and out.mode == "RGB" and out.getpixel((0, 0)) == (1, 2, 3)


def _gradient16(width: int = 256, height: int = 8) -> np.ndarray:
    """(H, W) uint16: a horizontal ramp over the full 16-bit range, 0 .. 65535."""
    return np.tile(np.linspace(0, 65535, width).round().astype(np.uint16), (height, 1))


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I", "png"])
def test_16_bit_gradient_stays_a_gradient(mode, tmp_path):
    """Pillow's convert('RGB') clips 16-bit values at 255: the ramp came out 99% white (mean 254)."""
    ramp = _gradient16()
    if mode == "png":  # a 16-bit greyscale PNG as Pillow opens it from disk
        Image.fromarray(ramp).save(tmp_path / "ramp.png")
        img = Image.open(tmp_path / "ramp.png")
        assert img.mode in ("I;16", "I")
    elif mode == "I;16B":
        img = Image.frombytes("I;16B", (ramp.shape[1], ramp.shape[0]), ramp.astype(">u2").tobytes())
    else:
        img = Image.fromarray(ramp.astype(np.int32) if mode == "I" else ramp)
        assert img.mode == mode
    out = np.asarray(to_rgb(img))
    assert out.shape == (8, 256, 3) and out.dtype == np.uint8
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()  # grey
    expected = np.rint(ramp / 257.0).astype(np.uint8)  # the documented scale: 0 -> 0, 65535 -> 255
    assert np.array_equal(out[..., 0], expected)
    assert out[0, 0, 0] == 0 and out[0, -1, 0] == 255 and abs(out.mean() - 127.5) < 1
    assert (out == 255).mean() < 0.01  # not white
    assert (np.diff(out[0, :, 0].astype(int)) >= 0).all()  # still a ramp


def test_32_bit_image_outside_the_16_bit_range_is_stretched():
    ramp = np.tile(np.linspace(-1_000_000, 3_000_000, 101).astype(np.int32), (4, 1))
    out = np.asarray(to_rgb(Image.fromarray(ramp, "I")))[..., 0]
    assert out[0, 0] == 0 and out[0, -1] == 255 and out[0, 50] in (127, 128)
    assert np.asarray(to_rgb(Image.fromarray(np.full((3, 3), 70_000, np.int32), "I"))).max() == 0  # constant


@pytest.mark.parametrize("make", [_palette_image, lambda: _palette_image(transparent=True), _rgba_image,
                                  lambda: _rgba_image().convert("LA")], ids=["P", "P+transparency", "RGBA", "LA"])
def test_both_backbones_give_the_same_pixels(make, tiny_open_clip_dir, tiny_hf_clip_dir):
    """Equivalent configs (32 px, CLIP mean/std, bicubic, shortest-edge resize + centre crop): the same image
    gives the same tensor on the open_clip and the HF path, equal to preprocessing its RGB conversion.
    (48x40 -> 38x32: a 6 px margin, where torchvision's rounded and the HF processor's floored crop offsets agree.)"""
    oc, hf = create_backbone(str(tiny_open_clip_dir)), create_backbone(str(tiny_hf_clip_dir))
    img = make()
    a, b = oc.preprocess_eval(img), hf.preprocess_eval(img)
    assert a.shape == b.shape == (3, 32, 32)
    assert torch.allclose(a, b, atol=1e-5), float((a - b).abs().max())
    rgb = to_rgb(img)
    assert torch.allclose(a, oc.preprocess_eval(rgb), atol=1e-5)
    assert torch.allclose(b, hf.preprocess_eval(rgb), atol=1e-5)
    # training transforms convert first too (same seed -> same crop for the image and its RGB version)
    for bb in (oc, hf):
        torch.manual_seed(0)
        t1 = bb.preprocess_train(img)
        torch.manual_seed(0)
        t2 = bb.preprocess_train(rgb)
        assert torch.allclose(t1, t2, atol=1e-5)


@pytest.fixture(scope="module")
def hf_256_224(tmp_path_factory):
    from cultureclip.testing import save_hf_clip

    return save_hf_clip(tmp_path_factory.mktemp("hf256"), "tiny", image_size=224, resize_to=256)


def test_hf_resize_then_crop_matches_the_processor(hf_256_224, tmp_path):
    """Processor resizes the shortest edge to 256 then crops 224: ours gives its pixels (not a resize to 224)."""
    from transformers import CLIPImageProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    bb = create_backbone(str(hf_256_224))
    assert bb.image_size == 224 and bb.info["preprocess_cfg"]["resize"] == 256
    rng = np.random.default_rng(0)
    # 403x300 -> 343x256: a 119 px horizontal margin (floor 59, round 60: the processor's convention is kept)
    im = Image.fromarray(rng.integers(0, 255, (300, 403, 3), dtype=np.uint8))
    ours = bb.preprocess_eval(im)
    kw = {"size": {"shortest_edge": 256}, "crop_size": {"height": 224, "width": 224}}
    pil_ref = CLIPImageProcessorPil(**kw)(im, return_tensors="pt")["pixel_values"][0]
    assert ours.shape == pil_ref.shape == (3, 224, 224)
    assert torch.allclose(ours, pil_ref, atol=1e-5), float((ours - pil_ref).abs().max())
    # transformers' default processor (torchvision resampling on uint8 tensors): within one 8-bit level
    fast_ref = CLIPImageProcessor.from_pretrained(str(hf_256_224))(im, return_tensors="pt")["pixel_values"][0]
    assert (ours - fast_ref).abs().max() < 1.5 / 255 / min(bb.info["preprocess_cfg"]["std"])
    # an RGBA upload: the processor composites onto white too
    rgba = _rgba_image(403, 300)
    ref = CLIPImageProcessorPil(**kw)(rgba, return_tensors="pt")["pixel_values"][0]
    assert torch.allclose(bb.preprocess_eval(rgba), ref, atol=1e-5)
    # the geometry survives our checkpoint writer
    save_model(bb, tmp_path / "saved")
    bb2 = create_backbone(str(tmp_path / "saved"))
    assert bb2.info["preprocess_cfg"]["resize"] == 256 and bb2.image_size == 224
    assert torch.allclose(bb2.preprocess_eval(im), ours)


def test_eval_training_and_demo_read_transparency_alike(tmp_path):
    """An RGBA PNG in a benchmark, in a CulTwin dataset and uploaded to the demo gives one RGB image."""
    from cultureclip.data import CulTwinDataset, read_manifest
    from demo.validation import load_image
    from eval_suite.benchmarks.base import ImageRef
    from tests.cultwin_fixture import make_tiny_cultwin

    ds = make_tiny_cultwin(tmp_path / "ds", per_concept=2)
    m = read_manifest(ds).split("train")
    path = m.image_path(0)
    _rgba_image(32, 32).save(path)  # same size, now with transparency
    expected = np.asarray(to_rgb(_rgba_image(32, 32)))
    train_px = np.asarray(CulTwinDataset(m, lambda im: im)[0]["image"])
    eval_px = np.asarray(ImageRef(path=str(path)).open())
    demo_px = np.asarray(load_image(str(path)))
    assert (train_px == expected).all() and (eval_px == expected).all() and (demo_px == expected).all()
    assert (expected[:10] == 255).all()  # the transparent band is white on every path
