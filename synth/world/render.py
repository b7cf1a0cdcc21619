"""Procedural renderer of the offline twin world: clean flag designs and photo-like renders.

`WorldRenderer` implements `synth.generators.ImageGenerator`: each request's concept design is
rasterised once (cached texture), then mapped onto a waving, perspective-warped cloth over a random
background with lighting, occlusion, blur, noise and JPEG re-encoding. Every random draw comes from
`numpy.random.default_rng(request.seed)`, so a request fully determines its pixels.

`generic_sample(seed)` draws random culture-free designs (stripes, crosses, discs, stars, tartans) with
a caption that describes them, for pretraining a base model that knows colours and layouts.
"""
from __future__ import annotations

import io
import logging
import math
from dataclasses import asdict, dataclass, replace
from functools import lru_cache

import numpy as np
from PIL import Image, ImageFilter

from synth.generators import ImageRequest

from . import specs as S
from .tartans import describe_sett

log = logging.getLogger(__name__)

__all__ = [
    "RenderParams", "WorldRenderer", "rasterize", "render_design", "generic_design",
    "generic_sample", "generic_tartan", "hex_to_rgb", "rasterize_tartan", "tartan_threads",
]


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    if len(c) != 6:
        raise ValueError(f"colour {color!r} must be '#RRGGBB'")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


# --------------------------------------------------------------------------------------------
# rasterisation: shapes -> masks on pixel-centre grids (vectorised, no per-pixel loops)
# --------------------------------------------------------------------------------------------
def _poly_mask(X: np.ndarray, Y: np.ndarray, pts) -> np.ndarray:
    """Even-odd point-in-polygon, looping over edges (few) not pixels (many)."""
    inside = np.zeros(X.shape, dtype=bool)
    n = len(pts)
    for i in range(n):
        x0, y0 = pts[i]
        x1, y1 = pts[(i + 1) % n]
        if y0 == y1:
            continue
        cond = (Y >= min(y0, y1)) & (Y < max(y0, y1))
        xc = x0 + (Y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= cond & (X < xc)
    return inside


def shape_mask(shape: tuple, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Boolean mask of `shape` (see specs) at points (X, Y) in design units."""
    kind = shape[0]
    if kind == "rect":
        _, x0, y0, x1, y1 = shape
        return (X >= x0) & (X < x1) & (Y >= y0) & (Y < y1)
    if kind == "poly":
        return _poly_mask(X, Y, shape[1])
    if kind == "disc":
        _, cx, cy, r = shape
        return (X - cx) ** 2 + (Y - cy) ** 2 <= r * r
    if kind == "ellipse":
        _, cx, cy, rx, ry = shape
        return ((X - cx) / rx) ** 2 + ((Y - cy) / ry) ** 2 <= 1.0
    if kind == "ring":
        _, cx, cy, r0, r1 = shape
        d2 = (X - cx) ** 2 + (Y - cy) ** 2
        return (d2 >= r0 * r0) & (d2 <= r1 * r1)
    if kind == "band":
        _, x0, y0, x1, y1, lo, hi = shape
        lx, ly = x1 - x0, y1 - y0
        d = ((X - x0) * ly - (Y - y0) * lx) / math.hypot(lx, ly)
        return (d >= lo) & (d <= hi)
    if kind == "spokes":
        _, cx, cy, r, n, hw = shape
        dx, dy = X - cx, Y - cy
        rad = np.hypot(dx, dy)
        ang = np.arctan2(dy, dx)
        step = 2 * math.pi / n
        off = (ang + step / 2) % step - step / 2  # angle to nearest spoke
        return (rad <= r) & (np.abs(rad * np.sin(off)) <= hw)
    raise ValueError(f"unknown shape kind {kind!r}")


def tartan_threads(design: S.TartanDesign, nx: int, ny: int, x0: int = 0, y0: int = 0) -> np.ndarray:
    """The woven cloth at thread resolution, uint8 (ny, nx, 3), threads x0.. / y0.. of the warp/weft.

    Warp = weft = the sett's full repeat. 2/2 twill: at thread crossing (x, y) the warp thread floats
    on top when (x + y) mod 4 < 2, else the weft shows; the offset per row gives the diagonal.
    """
    pal = design.colors
    threads = design.sett.threads
    codes = sorted(set(threads))
    lut = np.array([hex_to_rgb(pal[c]) for c in codes], dtype=np.uint8)
    pos = {c: i for i, c in enumerate(codes)}
    idx = np.fromiter((pos[c] for c in threads), dtype=np.int32, count=len(threads))
    xi = np.arange(nx, dtype=np.int64) + int(x0)
    yi = np.arange(ny, dtype=np.int64) + int(y0)
    warp = lut[idx[xi % len(idx)]]
    weft = lut[idx[yi % len(idx)]]
    t = int(design.twill)
    up = ((xi[None, :] + yi[:, None]) % (2 * t)) < t
    return np.where(up[..., None], warp[None, :, :], weft[:, None, :])


def rasterize_tartan(design: S.TartanDesign, width: int, height: int) -> np.ndarray:
    """Cloth of `design.size` threads area-averaged (box filter) to (height, width, 3) float32 in [0, 1].

    Box averaging mixes warp and weft colours where stripes cross, as the eye does from a distance.
    """
    nx, ny = max(1, int(round(design.size[0]))), max(1, int(round(design.size[1])))
    img = Image.fromarray(tartan_threads(design, nx, ny), "RGB")
    if (nx, ny) != (width, height):
        img = img.resize((int(width), int(height)), Image.BOX)
    return np.asarray(img, dtype=np.float32) * np.float32(1 / 255)


def rasterize(design: S.Design | S.TartanDesign, width: int, height: int,
              supersample: int = 3) -> np.ndarray:
    """Paint a design into a float32 (height, width, 3) array in [0, 1], stretched to fill.

    `supersample` x `supersample` samples per pixel are averaged for anti-aliased edges (flags);
    tartans are woven at thread resolution and box-averaged instead.
    """
    if width < 1 or height < 1:
        raise ValueError(f"width and height must be >= 1, got {width}x{height}")
    if isinstance(design, S.TartanDesign):
        return rasterize_tartan(design, int(width), int(height))
    ss = max(1, int(supersample))
    W, H = width * ss, height * ss
    sx, sy = design.size[0] / W, design.size[1] / H
    X, Y = np.meshgrid((np.arange(W, dtype=np.float64) + 0.5) * sx,
                       (np.arange(H, dtype=np.float64) + 0.5) * sy)
    img = np.zeros((H, W, 3), dtype=np.float32)
    for layer in design.layers:
        m = shape_mask(layer.shape, X, Y)
        if layer.clip is not None:
            m &= shape_mask(layer.clip, X, Y)
        img[m] = np.asarray(hex_to_rgb(layer.color), dtype=np.float32) / 255.0
    if ss > 1:
        img = img.reshape(height, ss, width, ss, 3).mean(axis=(1, 3))
    return img


def render_design(concept_id: str, width: int = 192, height: int | None = None) -> Image.Image:
    """The clean flag or tartan cloth of a world concept (no photographic effects).

    height=None keeps the official aspect ratio; giving both stretches the flag to fill them.
    """
    spec = S.get_spec(concept_id)
    if height is None:
        height = max(1, round(width / spec.design.aspect))
    arr = rasterize(spec.design, int(width), int(height))
    return Image.fromarray(np.round(arr * 255).astype(np.uint8), "RGB")


@lru_cache(maxsize=512)
def _texture(concept_id: str, tex_width: int) -> np.ndarray:
    spec = S.get_spec(concept_id)
    th = max(2, round(tex_width / spec.design.aspect))
    return rasterize(spec.design, tex_width, th, supersample=2)


# --------------------------------------------------------------------------------------------
# photographic variation
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RenderParams:
    """Strength of each variation; `from_difficulty` scales them all from one knob in [0, 1]."""

    scale: tuple[float, float] = (0.5, 0.9)    # flag width / image width (before fitting)
    perspective: float = 0.12                  # corner jitter, fraction of flag size
    rotation_deg: float = 8.0
    wave_amp: float = 0.08                     # cloth wave amplitude, fraction of flag height
    wave_freq: tuple[float, float] = (0.6, 1.8)  # waves across the flag
    shading: float = 0.25                      # brightness swing of the folds
    brightness: tuple[float, float] = (0.7, 1.2)
    color_cast: float = 0.10                   # per-channel gain jitter
    occlusion_p: float = 0.3
    occlusion_max: float = 0.2                 # max fraction of the flag box covered
    pole_p: float = 0.5
    blur_max: float = 0.8                      # Gaussian radius in output pixels
    noise_max: float = 6.0                     # sensor noise std (0-255 scale)
    jpeg_p: float = 0.7
    jpeg_quality: tuple[int, int] = (40, 95)
    reverse_p: float = 0.0                     # seen from the back (mirror image); off by default
    texture_width: int = 160                   # cached design raster width

    @classmethod
    def from_difficulty(cls, difficulty: float) -> "RenderParams":
        """0 = clean, centred, flat flag; 0.5 = default; 1 = strong variation."""
        if not 0.0 <= difficulty <= 1.0:
            raise ValueError(f"difficulty must be in [0, 1], got {difficulty}")
        d = difficulty / 0.5  # 1.0 at the default
        base = cls()
        lo = max(0.3, 0.8 - 0.3 * d)
        return replace(
            base, scale=(lo, 0.92 - 0.02 * d), perspective=base.perspective * d,
            rotation_deg=base.rotation_deg * d, wave_amp=base.wave_amp * d,
            shading=base.shading * d,
            brightness=(1 - 0.3 * d, 1 + 0.2 * d), color_cast=base.color_cast * d,
            occlusion_p=min(1.0, base.occlusion_p * d), occlusion_max=base.occlusion_max * d,
            pole_p=base.pole_p if d > 0 else 0.0, blur_max=base.blur_max * d,
            noise_max=base.noise_max * d, jpeg_p=min(1.0, base.jpeg_p * d),
            jpeg_quality=(max(20, int(round(95 - 55 * d))), 95))


def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x3 H with dst ~ H @ src for 4 point pairs (DLT)."""
    A = []
    for (x, y), (u, v) in zip(src, dst):
        A.append([x, y, 1, 0, 0, 0, -u * x, -u * y, -u])
        A.append([0, 0, 0, x, y, 1, -v * x, -v * y, -v])
    _, _, vt = np.linalg.svd(np.asarray(A, dtype=np.float64))
    Hm = vt[-1].reshape(3, 3)
    return Hm / Hm[2, 2]


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int, ch: int = 1) -> np.ndarray:
    """Low-frequency value noise in [0, 1], (h, w, ch): a coarse random grid upsampled bilinearly."""
    g = (rng.random((cells + 1, cells + 1, ch)) * 255).astype(np.uint8)
    im = Image.fromarray(g[..., 0] if ch == 1 else g, "L" if ch == 1 else "RGB")
    up = np.asarray(im.resize((w, h), Image.BILINEAR), dtype=np.float32) * (1 / 255)
    return up.reshape(h, w, ch)


@lru_cache(maxsize=16)
def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (ys, xs), float32 (H, W), cached per size (read-only)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + np.float32(0.5)
    ys.setflags(write=False)
    xs.setflags(write=False)
    return ys, xs


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    kind = rng.integers(0, 5)
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    if kind == 0:  # sky: vertical gradient + soft clouds
        top = np.array([0.25, 0.45, 0.85]) * rng.uniform(0.7, 1.1)
        bot = np.array([0.7, 0.82, 0.95]) * rng.uniform(0.85, 1.05)
        bg = top + (bot - top) * yy + np.zeros((1, w, 1), np.float32)
        clouds = _smooth_noise(rng, h, w, 4)
        bg = bg + np.clip(clouds - 0.55, 0, 1) * 1.5
    elif kind == 1:  # painted wall / plaster with bricks
        base = rng.uniform(0.25, 0.85, 3)
        bg = base + 0.12 * (_smooth_noise(rng, h, w, 6) - 0.5) + np.zeros((h, w, 1), np.float32)
        if rng.random() < 0.5:
            period = int(rng.integers(5, 12))
            lines = (np.arange(h) % period == 0)[:, None, None]
            bg = np.where(lines, bg * 0.7, bg)
    elif kind == 2:  # linear gradient between two random colours
        c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        ang = rng.uniform(0, 2 * np.pi)
        xx = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
        t = np.clip(0.5 + (xx - 0.5) * np.cos(ang) + (yy - 0.5) * np.sin(ang), 0, 1)
        bg = c0 + (c1 - c0) * t
    elif kind == 3:  # colourful blotchy clutter (foliage, crowds, buildings)
        bg = _smooth_noise(rng, h, w, int(rng.integers(3, 10)), 3) * rng.uniform(0.6, 1.0)
    else:  # fine grain noise on a dull colour
        base = rng.uniform(0.2, 0.8, 3)
        bg = base + rng.normal(0, 0.06, (h, w, 1)) + 0.1 * (_smooth_noise(rng, h, w, 3) - 0.5)
    return np.clip(bg, 0, 1).astype(np.float32)


def _compose(texture: np.ndarray, rng: np.random.Generator, width: int, height: int,
             p: RenderParams, aspect: float) -> Image.Image:
    """Place a design texture (Ht, Wt, 3) as waving cloth on a random scene; returns RGB image."""
    img = _background(rng, height, width)
    if rng.random() < p.reverse_p:
        texture = texture[:, ::-1]
    th, tw = texture.shape[:2]

    # --- placement: flag box in output pixels, then perspective-jittered corners -----------
    fw = width * rng.uniform(*p.scale)
    fh = fw / aspect
    if fh > height * 0.9:
        fh = height * 0.9
        fw = fh * aspect
    cx = rng.uniform(fw / 2, width - fw / 2) if width > fw else width / 2
    cy = rng.uniform(fh / 2, height - fh / 2) if height > fh else height / 2
    ang = math.radians(rng.uniform(-p.rotation_deg, p.rotation_deg))
    ca, sa = math.cos(ang), math.sin(ang)
    base = np.array([[-fw / 2, -fh / 2], [fw / 2, -fh / 2], [fw / 2, fh / 2], [-fw / 2, fh / 2]])
    jit = rng.uniform(-p.perspective, p.perspective, (4, 2)) * np.array([fw, fh])
    pts = base + jit
    corners = np.stack([cx + pts[:, 0] * ca - pts[:, 1] * sa, cy + pts[:, 0] * sa + pts[:, 1] * ca], 1)
    unit = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64)
    Hinv = np.linalg.inv(_homography(unit, corners))

    # --- inverse map every output pixel to flag coordinates (u along length, v along hoist) --
    ys, xs = _grid(height, width)
    Hinv = Hinv.astype(np.float32)
    den = Hinv[2, 0] * xs + Hinv[2, 1] * ys + Hinv[2, 2]
    u = (Hinv[0, 0] * xs + Hinv[0, 1] * ys + Hinv[0, 2]) / den
    v = (Hinv[1, 0] * xs + Hinv[1, 1] * ys + Hinv[1, 2]) / den

    # --- cloth: the fly waves more than the hoist; folds shade light/dark ---------------------
    freq = np.float32(rng.uniform(*p.wave_freq))
    phase = np.float32(rng.uniform(0, 2 * np.pi))
    theta = 2 * np.pi * freq * u + phase
    uc = np.clip(u, 0, 1)
    amp = np.float32(p.wave_amp) * (0.3 + 0.7 * uc)
    vs = v - amp * np.sin(theta) + np.float32(0.25 * p.wave_amp) * np.sin(3.1 * theta + 1.3) * v
    inside = (u >= 0) & (u < 1) & (vs >= 0) & (vs < 1)
    ti = np.clip((vs * th).astype(np.int32), 0, th - 1)
    tj = np.clip((u * tw).astype(np.int32), 0, tw - 1)
    cloth = texture[ti, tj]
    shade = 1.0 + np.float32(p.shading) * np.cos(theta) * (0.4 + 0.6 * uc)
    cloth = cloth * shade[..., None]
    img[inside] = cloth[inside]

    # --- flag pole along the hoist edge --------------------------------------------------------
    if rng.random() < p.pole_p:
        (x0, y0), (x3, _) = corners[0], corners[3]
        px = 0.5 * (x0 + x3)
        pw = max(1.0, width / 60)
        pole = (np.abs(xs - px + pw) <= pw / 2 + 0.5) & (ys >= y0 - 2)
        img[pole] = np.float32(rng.uniform(0.3, 0.8))

    # --- partial occlusion by a foreground object ---------------------------------------------
    if rng.random() < p.occlusion_p and p.occlusion_max > 0:
        area = rng.uniform(0.03, p.occlusion_max) * fw * fh
        r = math.sqrt(area / math.pi)
        ox = cx + rng.uniform(-0.6, 0.6) * fw / 2
        oy = cy + rng.uniform(-0.6, 0.6) * fh / 2
        if rng.random() < 0.5:
            occ = (xs - ox) ** 2 + ((ys - oy) * rng.uniform(0.6, 1.6)) ** 2 <= r * r
        else:
            occ = (np.abs(xs - ox) <= r) & (np.abs(ys - oy) <= r * rng.uniform(0.5, 1.0))
        col = rng.uniform(0.05, 0.9, 3).astype(np.float32)
        shade_o = 0.8 + 0.4 * (ys[occ] - oy + r) / (2 * r + 1e-6)  # simple lit-from-above look
        img[occ] = col[None, :] * shade_o[:, None]

    # --- lighting: global gain, colour cast, directional gradient ------------------------------
    gain = rng.uniform(*p.brightness)
    cast = 1.0 + rng.uniform(-p.color_cast, p.color_cast, 3)
    gdir = rng.uniform(0, 2 * np.pi)
    k = np.float32(0.15 * p.shading / 0.25)
    grad = 1.0 + k * ((xs * np.float32(math.cos(gdir) / width) + ys * np.float32(math.sin(gdir) / height))
                      - np.float32(0.5 * (math.cos(gdir) + math.sin(gdir))))
    img *= (gain * cast).astype(np.float32)[None, None, :]
    img *= grad[..., None]

    # --- sensor noise, then 8-bit --------------------------------------------------------------
    if p.noise_max > 0:
        sigma = np.float32(rng.uniform(0, p.noise_max) / 255.0)
        img += rng.standard_normal(img.shape, dtype=np.float32) * sigma
    out = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")

    blur = rng.uniform(0, p.blur_max)
    if blur > 0.15:
        out = out.filter(ImageFilter.GaussianBlur(radius=float(blur)))
    if rng.random() < p.jpeg_p:
        buf = io.BytesIO()
        out.save(buf, format="JPEG", quality=int(rng.integers(p.jpeg_quality[0], p.jpeg_quality[1] + 1)))
        buf.seek(0)
        out = Image.open(buf).convert("RGB")
    return out


class WorldRenderer:
    """ImageGenerator for world concepts: clean design + seeded photographic variation.

    `difficulty` in [0, 1] (0 clean, 0.5 default) or explicit `params` set the variation; both
    are recorded in `settings()` so they enter the synthesis stage's fingerprint.
    """

    name = "offline-world-renderer"

    def __init__(self, difficulty: float = 0.5, params: RenderParams | None = None) -> None:
        self.difficulty = float(difficulty)
        self.params = params if params is not None else RenderParams.from_difficulty(self.difficulty)

    def settings(self) -> dict:
        d = asdict(self.params)
        return {"model": self.name, "version": 1, "difficulty": self.difficulty,
                "params": {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}}

    def render(self, concept_id: str, seed: int, width: int, height: int) -> Image.Image:
        """One photo-like render of a concept; the seed fully determines the pixels."""
        spec = S.get_spec(concept_id)
        if width < 8 or height < 8:
            raise ValueError(f"image size must be at least 8x8, got {width}x{height}")
        tex = _texture(concept_id, self.params.texture_width)
        rng = np.random.default_rng(int(seed) & 0xFFFFFFFFFFFFFFFF)
        return _compose(tex, rng, int(width), int(height), self.params, spec.design.aspect)

    def generate(self, requests: list[ImageRequest]) -> list[Image.Image]:
        """Render one image per request, in order (prompt text is ignored: the design is the truth)."""
        return [self.render(r.concept_id, r.seed, r.width, r.height) for r in requests]


# --------------------------------------------------------------------------------------------
# generic (culture-free) designs for pretraining
# --------------------------------------------------------------------------------------------
PALETTE: dict[str, str] = {
    "red": "#D21F2B", "dark red": "#8C1C2A", "orange": "#F28322", "yellow": "#FCD116",
    "green": "#1E9B48", "dark green": "#0B5A32", "light blue": "#5EB6E4", "blue": "#1F4FB4",
    "dark blue": "#0A2463", "white": "#FFFFFF", "black": "#000000", "maroon": "#7B1838",
    "purple": "#6A2C91",
}
_NUM = {2: "two", 3: "three", 4: "four", 5: "five"}


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def generic_design(rng: np.random.Generator) -> tuple[S.Design, str]:
    """A random non-cultural flag-like design and the generic caption describing it."""
    names = list(PALETTE)

    def pick(k: int, exclude: tuple[str, ...] = ()) -> list[str]:
        pool = [n for n in names if n not in exclude]
        return [pool[i] for i in rng.choice(len(pool), size=k, replace=False)]

    aspect = float(rng.choice([1.5, 2.0, 1.6, 1.0, 1.25]))
    size = (aspect * 2, 2.0)
    w, h = size
    layout = int(rng.integers(0, 10))
    if layout in (0, 1):  # horizontal or vertical stripes
        n = int(rng.integers(2, 5))
        cols = pick(2) * 2 if n == 4 and rng.random() < 0.5 else pick(n)
        cols = cols[:n] if len(cols) >= n else (cols * n)[:n]
        fn = S.hbands if layout == 0 else S.vbands
        layers = fn(size, [PALETTE[c] for c in cols])
        cap = f"a flag with {_NUM[n]} {'horizontal' if layout == 0 else 'vertical'} stripes, {_join(cols)}"
        if n == 3 and rng.random() < 0.4:  # central emblem
            (ec,) = pick(1, (cols[1],))
            if rng.random() < 0.5:
                layers.append(S.L(S.star(w / 2, h / 2 + 0.03, 0.28 * h), PALETTE[ec]))
                cap += f", with a {ec} star in the centre"
            else:
                layers.append(S.L(S.disc(w / 2, h / 2, 0.25 * h), PALETTE[ec]))
                cap += f", with a {ec} disc in the centre"
    elif layout == 2:  # nordic cross, optional border
        fc, cc, bc = pick(3)
        xs = [6, 1, 2, 1, 6 + 4 * (aspect - 1)] if rng.random() < 0.5 else [6, 4, 6 + 6 * (aspect - 1)]
        ys = [6, 1, 2, 1, 6] if len(xs) == 5 else [6, 4, 6]
        size, layers = S.nordic(xs, ys, PALETTE[fc], [PALETTE[bc], PALETTE[cc]] if len(xs) == 5
                                else [PALETTE[cc]])
        cap = f"a {fc} flag with a {cc} Nordic cross" + (f" bordered in {bc}" if len(xs) == 5 else "")
    elif layout == 3:  # centred (Greek / St George) cross
        fc, cc = pick(2)
        t = 0.2 * h
        layers = [S.field_(size, PALETTE[fc]), S.L(S.rect(w / 2 - t, 0, w / 2 + t, h), PALETTE[cc]),
                  S.L(S.rect(0, h / 2 - t, w, h / 2 + t), PALETTE[cc])]
        cap = f"a {fc} flag with a {cc} centered cross"
    elif layout == 4:  # disc, centred or towards the hoist
        fc, dc = pick(2)
        off = rng.random() < 0.4
        layers = [S.field_(size, PALETTE[fc]), S.L(S.disc(w * (0.43 if off else 0.5), h / 2, 0.3 * h),
                                                   PALETTE[dc])]
        cap = f"a {fc} flag with a {dc} disc " + ("slightly towards the hoist" if off else "in the centre")
    elif layout == 5:  # single star on a field
        fc, sc = pick(2)
        layers = [S.field_(size, PALETTE[fc]), S.L(S.star(w / 2, h / 2 + 0.05, 0.35 * h), PALETTE[sc])]
        cap = f"a {fc} flag with a {sc} star"
    elif layout == 6:  # saltire
        fc, cc = pick(2)
        layers = S.saltire(size, PALETTE[fc], PALETTE[cc], 0.1 * h)
        cap = f"a {fc} flag with a {cc} diagonal cross"
    elif layout == 7:  # stripes with a hoist triangle
        a, b, tc = pick(3)
        n = int(rng.choice([2, 3, 5]))
        cols = ([a, b] * 3)[:n]
        layers = S.hbands(size, [PALETTE[c] for c in cols]) + [
            S.L(S.poly((0, 0), (h * 0.87, h / 2), (0, h)), PALETTE[tc])]
        cap = (f"a flag with {_NUM[n]} horizontal stripes, {_join(cols[:2]) if n > 3 else _join(cols)}, "
               f"with a {tc} triangle at the hoist")
    elif layout == 8:  # canton
        fc, kc = pick(2)
        layers = [S.field_(size, PALETTE[fc]), S.L(S.rect(0, 0, w * 0.45, h / 2), PALETTE[kc])]
        cap = f"a {fc} flag with a {kc} rectangle in the upper hoist corner"
    else:  # serrated / bicolour at hoist
        fc = pick(1, ("white",))[0]
        layers = S.serrated(size, PALETTE[fc], 0.25 * w, 0.33 * w, int(rng.integers(3, 10)))
        cap = f"a {fc} flag with a white serrated band at the hoist"
    return S.Design((float(size[0]), float(size[1])), tuple(layers)), cap


GENERIC_TARTAN_P = 0.15   # share of generic samples that are random (culture-free) tartans
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def generic_tartan(rng: np.random.Generator) -> tuple[S.TartanDesign, str]:
    """A random symmetric tartan in generic colours and the caption describing it.

    2-3 broad ground stripes (12-48 threads) with up to 2 thin line colours (2-6 threads) between
    them; the caption is computed from the woven thread shares (`tartans.describe_sett`).
    """

    names = list(PALETTE)
    order = [names[i] for i in rng.permutation(len(names))]
    n_ground = int(rng.integers(2, 4))
    ground, lines = order[:n_ground], order[n_ground:n_ground + int(rng.integers(0, 3))]
    code = {name: _LETTERS[i] for i, name in enumerate(ground + lines)}
    stripes: list[tuple[str, int]] = []
    for i in range(int(rng.integers(n_ground, 2 * n_ground + 1))):
        stripes.append((code[ground[i % n_ground]], int(rng.integers(12, 49))))
        if lines and rng.random() < 0.6:
            stripes.append((code[lines[int(rng.integers(len(lines)))]], int(rng.integers(2, 7))))
    merged: list[tuple[str, int]] = []
    for c, n in stripes:  # adjacent stripes of one colour are one stripe
        if merged and merged[-1][0] == c:
            merged[-1] = (c, merged[-1][1] + n)
        else:
            merged.append((c, n))
    if len(merged) < 2:
        merged.append((code[ground[1]], int(rng.integers(12, 49))))
    sett = S.Sett(tuple(merged), True)
    palette = {code[n]: PALETTE[n] for n in ground + lines if code[n] in sett.codes}
    words = {code[n]: n for n in ground + lines}
    design = S.TartanDesign(sett, tuple(palette.items()), repeats=float(rng.uniform(1.5, 3.0)))
    return design, describe_sett(sett, palette, words=words)


def generic_design_of(seed: int):
    """(design, caption, rng) of `seed`: a culture-free design (flag-like, or a tartan with p=GENERIC_TARTAN_P;
    the tartan draw uses its own stream, so flag samples keep the pixels they had before tartans existed) and
    the seed's stream after drawing it (generic_sample renders with it). Shared by generic_sample (the rendered
    probe) and synth.world.shift (the shifted domain's probe)."""
    seed64 = int(seed) & 0xFFFFFFFFFFFFFFFF
    rng = np.random.default_rng(seed64)
    design, caption = (generic_tartan if np.random.default_rng([seed64, 7]).random() < GENERIC_TARTAN_P
                       else generic_design)(rng)
    return design, caption, rng


def generic_sample(seed: int, width: int = 64, height: int = 64, difficulty: float = 0.5,
                   params: RenderParams | None = None) -> tuple[Image.Image, str]:
    """A random culture-free design (flag-like, or a tartan with p=GENERIC_TARTAN_P) rendered like
    a photo, with its generic caption. The tartan draw uses its own stream, so flag samples keep
    the pixels they had before tartans existed."""
    design, caption, rng = generic_design_of(seed)
    p = params if params is not None else RenderParams.from_difficulty(difficulty)
    tw = p.texture_width
    tex = rasterize(design, tw, max(2, round(tw / design.aspect)), supersample=2)
    return _compose(tex, rng, int(width), int(height), p, design.aspect), caption
