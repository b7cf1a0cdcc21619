"""The world's second test domain: the same designs drawn another way, never used for training.

The paper trains on generated images and tests on photographs. In the offline world every training and
test image comes from `WorldRenderer` (a waving cloth on a random scene, one camera pipeline). This module
draws the same flag and tartan designs in three other ways, one per image in turn:

- ``painted``: a flat canvas painting: brush-wobbled edges, stroke streaks, posterized paint on a
  woven canvas ground;
- ``printed``: printed on an object (a mug's curved side or a flat box / poster) standing on a table:
  the ink takes the substrate's colour, the curve foreshortens and shades the print, a glossy highlight;
- ``distant``: small and far away in a cluttered street-like scene (buildings, signs, other shapes),
  with haze.

Each is then passed through another colour pipeline than the renderer's (a tone curve, a strong white
balance, a saturation change, no JPEG). Every random draw comes from `numpy.random.default_rng(seed)`,
so (design, seed, style) fully determines the pixels. `SHIFT_VERSION` enters the world build's cache key.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter

from . import specs as S
from .render import (
    RenderParams,
    _grid,
    _homography,
    _smooth_noise,
    _texture,
    generic_design_of,
    rasterize,
)

SHIFT_VERSION = 1
STYLES = ("painted", "printed", "distant")
_UNIT = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64)


def _paste(img: np.ndarray, texture: np.ndarray, corners: np.ndarray, cylinder: float = 0.0,
           wave: float = 0.0, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map `texture` into the quadrilateral `corners` of `img` (in place). cylinder in (0, 1]: the
    texture wraps around that fraction of a half-cylinder's side (foreshortened at the edges);
    wave: a cloth wave amplitude (fraction of height). Returns (inside mask, u, v)."""
    h, w = img.shape[:2]
    th, tw = texture.shape[:2]
    hinv = np.linalg.inv(_homography(_UNIT, corners)).astype(np.float32)
    ys, xs = _grid(h, w)
    den = hinv[2, 0] * xs + hinv[2, 1] * ys + hinv[2, 2]
    u = (hinv[0, 0] * xs + hinv[0, 1] * ys + hinv[0, 2]) / den
    v = (hinv[1, 0] * xs + hinv[1, 1] * ys + hinv[1, 2]) / den
    inside = (u >= 0) & (u < 1) & (v >= 0) & (v < 1)
    tu = u
    if cylinder > 0:
        half = np.float32(cylinder * math.pi / 2)
        tu = 0.5 + np.arcsin(np.clip(2 * u - 1, -1, 1) * np.sin(half)) / (2 * half)
    tv = v
    if wave > 0 and rng is not None:
        theta = np.float32(2 * math.pi * rng.uniform(0.6, 1.4)) * u + np.float32(rng.uniform(0, 2 * math.pi))
        tv = v - np.float32(wave) * np.sin(theta) * (0.3 + 0.7 * np.clip(u, 0, 1))
        inside &= (tv >= 0) & (tv < 1)
    ti = np.clip((tv * th).astype(np.int32), 0, th - 1)
    tj = np.clip((tu * tw).astype(np.int32), 0, tw - 1)
    img[inside] = texture[ti, tj][inside]
    return inside, u, v


def _quad(rng: np.random.Generator, cx: float, cy: float, fw: float, fh: float, rot_deg: float,
          persp: float) -> np.ndarray:
    ang = math.radians(rng.uniform(-rot_deg, rot_deg))
    ca, sa = math.cos(ang), math.sin(ang)
    pts = np.array([[-fw / 2, -fh / 2], [fw / 2, -fh / 2], [fw / 2, fh / 2], [-fw / 2, fh / 2]])
    pts = pts + rng.uniform(-persp, persp, (4, 2)) * np.array([fw, fh])
    return np.stack([cx + pts[:, 0] * ca - pts[:, 1] * sa, cy + pts[:, 0] * sa + pts[:, 1] * ca], 1)


def _painted(texture: np.ndarray, rng: np.random.Generator, width: int, height: int, aspect: float) -> np.ndarray:
    th, tw = texture.shape[:2]
    # brush-wobbled edges: the paint is sampled through a smooth random displacement
    dx = (_smooth_noise(rng, th, tw, 6)[..., 0] - 0.5) * np.float32(0.10 * tw)
    dy = (_smooth_noise(rng, th, tw, 6)[..., 0] - 0.5) * np.float32(0.10 * th)
    yy, xx = np.mgrid[0:th, 0:tw]
    paint = texture[np.clip((yy + dy).astype(np.int32), 0, th - 1), np.clip((xx + dx).astype(np.int32), 0, tw - 1)]
    # strokes: streaks along one brush direction, then posterized paint
    streak = _smooth_noise(rng, max(2, th // 10), tw, 40)[..., 0]
    streak = np.asarray(Image.fromarray((streak * 255).astype(np.uint8)).resize((tw, th), Image.BILINEAR),
                        dtype=np.float32) / 255
    paint = paint * (0.82 + 0.36 * streak[..., None])
    levels = float(rng.integers(4, 7))
    paint = np.round(np.clip(paint, 0, 1) * levels) / levels
    # canvas ground: off-white / ochre with a fine weave
    ground = rng.uniform(0.65, 0.92) * np.array([1.0, rng.uniform(0.88, 0.98), rng.uniform(0.7, 0.9)], np.float32)
    img = np.zeros((height, width, 3), np.float32) + ground
    ys, xs = _grid(height, width)
    weave = (0.04 * (np.sin(xs * 2.2) * np.sin(ys * 2.2)))[..., None]
    img = img + weave
    fw = width * rng.uniform(0.62, 0.86)
    fh = min(fw / aspect, height * 0.85)
    fw = fh * aspect
    corners = _quad(rng, width / 2 + rng.uniform(-0.05, 0.05) * width, height / 2 + rng.uniform(-0.05, 0.05) * height,
                    fw, fh, 4.0, 0.03)
    inside, _, _ = _paste(img, paint, corners)
    img[inside] = img[inside] + weave[inside] * 0.5
    return img


def _printed(texture: np.ndarray, rng: np.random.Generator, width: int, height: int, aspect: float) -> np.ndarray:
    ys, xs = _grid(height, width)
    # a table top and a wall
    horizon = rng.uniform(0.45, 0.7) * height
    wall = rng.uniform(0.35, 0.9, 3).astype(np.float32)
    table = (rng.uniform(0.3, 0.7) * np.array([1.0, 0.8, 0.6]) * rng.uniform(0.8, 1.2, 3)).astype(np.float32)
    img = np.where((ys < horizon)[..., None], wall, table).astype(np.float32)
    img = img * (0.9 + 0.2 * _smooth_noise(rng, height, width, 4))
    # the object: a mug (curved, shaded side) or a box / poster (flat), in a substrate colour
    mug = rng.random() < 0.5
    substrate = (np.array([0.95, 0.95, 0.93], np.float32) if rng.random() < 0.6
                 else rng.uniform(0.5, 0.95, 3).astype(np.float32))
    ow, oh = width * rng.uniform(0.6, 0.8), height * rng.uniform(0.62, 0.82)
    ox, oy = width / 2 + rng.uniform(-0.08, 0.08) * width, height - oh / 2 - rng.uniform(0.02, 0.1) * height
    body = (np.abs(xs - ox) <= ow / 2) & (np.abs(ys - oy) <= oh / 2)
    across = np.clip((xs - (ox - ow / 2)) / ow, 0, 1)
    shade = (0.55 + 0.45 * np.sin(math.pi * across)) if mug else np.full_like(xs, rng.uniform(0.8, 1.0))
    img[body] = (substrate[None, :] * shade[body][:, None])
    # the print: ink multiplied into the substrate, foreshortened on the mug's curve
    pw = ow * rng.uniform(0.6, 0.8)
    ph = min(pw / aspect, oh * 0.75)
    pw = ph * aspect
    ink = img.copy()
    corners = _quad(rng, ox, oy + rng.uniform(-0.1, 0.1) * oh, pw, ph, 3.0, 0.02)
    inside, _, _ = _paste(ink, texture, corners, cylinder=rng.uniform(0.5, 0.9) if mug else 0.0)
    printed = ink * (0.35 + 0.65 * substrate[None, None, :]) * shade[..., None]
    img[inside & body] = printed[inside & body]
    # gloss: a soft vertical highlight on the mug, a sheen band on a box
    hx = ox + (rng.uniform(-0.3, -0.1) if mug else rng.uniform(-0.4, 0.4)) * ow
    gloss = np.exp(-((xs - hx) / (0.06 * ow + 0.5)) ** 2) * rng.uniform(0.25, 0.5)
    img[body] = img[body] + gloss[body][:, None]
    return img


def _distant(texture: np.ndarray, rng: np.random.Generator, width: int, height: int, aspect: float) -> np.ndarray:
    ys, xs = _grid(height, width)
    sky = rng.uniform(0.55, 0.9) * np.array([0.75, 0.85, 1.0], np.float32)
    img = np.zeros((height, width, 3), np.float32) + sky
    # clutter: buildings, signs and blobs in random colours (other flag-like colour blocks among them)
    img = img * 0.6 + 0.4 * _smooth_noise(rng, height, width, int(rng.integers(4, 9)), 3)
    for _ in range(int(rng.integers(5, 10))):
        x0, y0 = rng.uniform(-0.1, 1.0) * width, rng.uniform(0.2, 1.0) * height
        bw, bh = rng.uniform(0.08, 0.3) * width, rng.uniform(0.1, 0.6) * height
        col = rng.uniform(0.1, 0.9, 3).astype(np.float32)
        if rng.random() < 0.7:
            m = (xs >= x0) & (xs < x0 + bw) & (ys >= y0) & (ys < y0 + bh)
        else:
            m = (xs - x0) ** 2 + (ys - y0) ** 2 <= (bw / 2) ** 2
        img[m] = col
    # the flag: small, high on a pole, waving
    fw = width * rng.uniform(0.3, 0.45)
    fh = fw / aspect
    cx = rng.uniform(fw / 2 + 0.05 * width, width - fw / 2 - 0.05 * width)
    cy = rng.uniform(fh / 2 + 0.05 * height, 0.45 * height)
    corners = _quad(rng, cx, cy, fw, fh, 6.0, 0.08)
    pole_x = corners[0, 0] - 0.5
    pole = (np.abs(xs - pole_x) <= 0.6) & (ys >= corners[0, 1] - 1)
    img[pole] = rng.uniform(0.2, 0.5)
    _paste(img, texture, corners, wave=0.06, rng=rng)
    # haze: far things fade towards the sky's colour
    haze = np.float32(rng.uniform(0.1, 0.3))
    return img * (1 - haze) + haze * sky


def _colour_pipeline(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another camera: a tone curve, a strong white balance and a saturation change (no JPEG)."""
    img = np.clip(img, 0, 1)
    gamma = rng.uniform(0.65, 0.85) if rng.random() < 0.5 else rng.uniform(1.2, 1.5)
    img = img ** np.float32(gamma)
    warm = rng.random() < 0.5
    k = rng.uniform(0.08, 0.16)
    gains = np.array([1 + k, 1.0, 1 - k] if warm else [1 - k, 1.0, 1 + k], np.float32)
    img = img * gains
    sat = np.float32(rng.uniform(0.6, 0.8) if rng.random() < 0.5 else rng.uniform(1.2, 1.4))
    grey = img.mean(-1, keepdims=True)
    img = grey + (img - grey) * sat
    return np.clip(img, 0, 1)


_STYLE_FN = {"painted": _painted, "printed": _printed, "distant": _distant}


def draw(texture: np.ndarray, aspect: float, seed: int, width: int, height: int, style: str) -> Image.Image:
    """A design texture (Ht, Wt, 3) drawn in `style` (one of STYLES) through the other colour pipeline."""
    if style not in _STYLE_FN:
        raise ValueError(f"unknown style {style!r}; styles: {', '.join(STYLES)}")
    if width < 8 or height < 8:
        raise ValueError(f"image size must be at least 8x8, got {width}x{height}")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFFFFFFFFFF, STYLES.index(style), SHIFT_VERSION])
    img = _colour_pipeline(_STYLE_FN[style](texture, rng, int(width), int(height), aspect), rng)
    out = Image.fromarray((img * 255 + 0.5).astype(np.uint8), "RGB")
    if style == "distant":
        out = out.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.2, 0.5))))
    return out


def draw_concept(concept_id: str, seed: int, width: int, height: int, style: str) -> Image.Image:
    """A world concept (flag or tartan) drawn in `style`; the seed fully determines the pixels."""
    spec = S.get_spec(concept_id)
    return draw(_texture(concept_id, RenderParams().texture_width), spec.design.aspect, seed, width, height, style)


def draw_generic(seed: int, width: int, height: int, style: str) -> tuple[Image.Image, str]:
    """A random culture-free design (as `render.generic_sample` draws them, same caption grammar) drawn
    in `style`, with its caption: the general probe of the shifted domain."""
    design, caption, _ = generic_design_of(seed)
    tw = RenderParams().texture_width
    tex = rasterize(design, tw, max(2, round(tw / design.aspect)), supersample=2)
    return draw(tex, design.aspect, seed, width, height, style), caption
