"""Designs of the offline twin world, as data: flags (geometry in official units) and tartans.

Every design is a list of layers painted in order. A layer is a shape (in the flag's own units,
x to the right from the hoist, y downwards) and an sRGB colour. Sizes follow the official
proportions (e.g. Norway 22x16, Denmark 37x28, Japan 3x2 with a disc of 3/5 the height).
`SPEC_NOTES` says, per flag, how exact the drawing is: "exact" means stripes/crosses/discs/stars
placed per the published construction; "approx" marks positions or sizes estimated from the
published construction sheets; "simplified" marks coats of arms drawn as a few shapes. Colours are
the sRGB values commonly published for each flag (Wikipedia infoboxes, from the official Pantone or
CMYK definitions); where a law names a colour without a shade, the note says so.

Tartans (world_group "tartan") are `tartans.TartanSpec`s drawn from their register thread counts;
they are merged into `SPECS` at the end of this module, so `SPECS[cid].appearance` covers every
world concept.

No numpy here: this module is pure data, importable anywhere.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

Shape = tuple  # ("rect", x0, y0, x1, y1) | ("poly", ((x, y), ...)) | ("disc", cx, cy, r) | ...


@dataclass(frozen=True)
class Layer:
    """One filled shape; `clip` (a shape) restricts it, e.g. quarters inside a shield."""

    shape: Shape
    color: str
    clip: Shape | None = None


@dataclass(frozen=True)
class Design:
    """A flag drawing: `size` = (width, height) in the flag's construction units."""

    size: tuple[float, float]
    layers: tuple[Layer, ...]

    @property
    def aspect(self) -> float:
        """Width / height."""
        return self.size[0] / self.size[1]


@dataclass(frozen=True)
class FlagSpec:
    """Design plus the generic (culture-free) appearance caption and honesty notes."""

    concept_id: str
    design: Design
    appearance: str          # generic description, never names the culture
    accuracy: str            # exact | approx | simplified
    note: str                # what is exact, what is approximated, colour source
    world_group: str = "national_flag"   # national_flag | regional_flag (finer than catalog category)
    colors: dict[str, str] = field(default_factory=dict)  # named colours for tests / sampling


# --------------------------------------------------------------------------------------------
# shape helpers (all return plain tuples / Layer lists)
# --------------------------------------------------------------------------------------------
def rect(x0: float, y0: float, x1: float, y1: float) -> Shape:
    return ("rect", float(x0), float(y0), float(x1), float(y1))


def poly(*pts: tuple[float, float]) -> Shape:
    return ("poly", tuple((float(x), float(y)) for x, y in pts))


def disc(cx: float, cy: float, r: float) -> Shape:
    return ("disc", float(cx), float(cy), float(r))


def ellipse(cx: float, cy: float, rx: float, ry: float) -> Shape:
    return ("ellipse", float(cx), float(cy), float(rx), float(ry))


def ring(cx: float, cy: float, r0: float, r1: float) -> Shape:
    return ("ring", float(cx), float(cy), float(r0), float(r1))


def band(p0: tuple[float, float], p1: tuple[float, float], lo: float, hi: float) -> Shape:
    """Points whose signed distance to the line p0->p1 lies in [lo, hi] (diagonal bands).

    Sign: d = ((x - x0) * ly - (y - y0) * lx) / |l| with l = p1 - p0, positive on the side where
    that cross product is > 0. In the y-down design units this is the LEFT of the direction as seen
    on the drawn flag: for a line drawn left to right, positive is above it (the point (x1, y0) above
    the diagonal (x0, y0) -> (x1, y1) has d > 0), negative below.
    """
    return ("band", float(p0[0]), float(p0[1]), float(p1[0]), float(p1[1]), float(lo), float(hi))


def spokes(cx: float, cy: float, r: float, n: int, half_width: float) -> Shape:
    return ("spokes", float(cx), float(cy), float(r), int(n), float(half_width))


def star(cx: float, cy: float, r: float, points: int = 5, inner: float | None = None,
         rotation: float = 0.0) -> Shape:
    """Regular star polygon with one point straight up (rotation in degrees, clockwise)."""
    if inner is None:  # regular pentagram ratio for 5 points; 4/9 is the Commonwealth star
        inner = (math.sin(math.radians(18)) / math.sin(math.radians(54))) if points == 5 else 0.5
    pts = []
    for k in range(2 * points):
        rr = r if k % 2 == 0 else r * inner
        a = math.radians(rotation) + k * math.pi / points
        pts.append((cx + rr * math.sin(a), cy - rr * math.cos(a)))
    return poly(*pts)


def shield(cx: float, top: float, w: float, h: float) -> Shape:
    """Heater shield: rectangle on top, half-ellipse bottom (the polygon of both)."""
    x0, x1 = cx - w / 2, cx + w / 2
    mid = top + h - w / 2 if h > w / 2 else top
    pts = [(x0, top), (x1, top), (x1, mid)]
    for k in range(1, 16):
        a = k * math.pi / 16
        pts.append((cx + (w / 2) * math.cos(a), mid + (top + h - mid) * math.sin(a)))
    pts.append((x0, mid))
    return poly(*pts)


def L(shape: Shape, color: str, clip: Shape | None = None) -> Layer:
    return Layer(shape, color, clip)


def field_(size: tuple[float, float], color: str) -> Layer:
    return L(rect(0, 0, size[0], size[1]), color)


def hbands(size, colors, weights=None) -> list[Layer]:
    w, h = size
    weights = weights or [1] * len(colors)
    tot, y, out = float(sum(weights)), 0.0, []
    for c, k in zip(colors, weights):
        out.append(L(rect(0, y, w, y + h * k / tot), c))
        y += h * k / tot
    return out


def vbands(size, colors, weights=None) -> list[Layer]:
    w, h = size
    weights = weights or [1] * len(colors)
    tot, x, out = float(sum(weights)), 0.0, []
    for c, k in zip(colors, weights):
        out.append(L(rect(x, 0, x + w * k / tot, h), c))
        x += w * k / tot
    return out


def nordic(xs, ys, field_color, cross_colors) -> tuple[tuple[float, float], list[Layer]]:
    """Nordic cross from the official part widths: xs along the length, ys along the hoist.

    xs=[12,4,21] -> a plain cross; xs=[6,1,2,1,12] -> a cross with a border (fimbriation):
    cross_colors = [border, inner].
    """
    size = (float(sum(xs)), float(sum(ys)))
    out = [field_(size, field_color)]
    n = len(xs)
    for depth, col in enumerate(cross_colors):
        i0, i1 = depth + 1, n - 1 - depth - 1  # index range of parts covered at this depth
        x0, x1 = sum(xs[:i0]), sum(xs[: i1 + 1])
        y0, y1 = sum(ys[:i0]), sum(ys[: i1 + 1])
        out.append(L(rect(x0, 0, x1, size[1]), col))
        out.append(L(rect(0, y0, size[0], y1), col))
    return size, out


UJ_BLUE, UJ_RED, WHITE = "#012169", "#C8102E", "#FFFFFF"


def union_jack(x0: float, y0: float, w: float, h: float, blue: str = UJ_BLUE) -> list[Layer]:
    """Union Flag (1:2 construction, h = 30 units): saltires 6, counterchanged red 2, cross 10/6."""
    u = h / 30.0
    clip = rect(x0, y0, x0 + w, y0 + h)
    cx = x0 + w / 2
    d1 = ((x0, y0), (x0 + w, y0 + h))        # top-left to bottom-right
    d2 = ((x0, y0 + h), (x0 + w, y0))        # bottom-left to top-right
    left, right = rect(x0, y0, cx, y0 + h), rect(cx, y0, x0 + w, y0 + h)
    return [
        L(clip, blue),
        L(band(*d1, -3 * u, 3 * u), WHITE, clip),
        L(band(*d2, -3 * u, 3 * u), WHITE, clip),
        # counterchanged red saltire, 2 units wide, touching the diagonal: in the hoist half the broad
        # white is uppermost, so the red lies BELOW both hoist arms (d < 0, see `band`); the fly half
        # is the 180-degree rotation (red above the diagonals)
        L(band(*d1, -2 * u, 0), UJ_RED, left),
        L(band(*d1, 0, 2 * u), UJ_RED, right),
        L(band(*d2, -2 * u, 0), UJ_RED, left),
        L(band(*d2, 0, 2 * u), UJ_RED, right),
        L(rect(cx - 5 * u, y0, cx + 5 * u, y0 + h), WHITE),
        L(rect(x0, y0 + 10 * u, x0 + w, y0 + 20 * u), WHITE),
        L(rect(cx - 3 * u, y0, cx + 3 * u, y0 + h), UJ_RED),
        L(rect(x0, y0 + 12 * u, x0 + w, y0 + 18 * u), UJ_RED),
    ]


def saltire(size, field_color, cross_color, half_width) -> list[Layer]:
    w, h = size
    return [field_(size, field_color),
            L(band((0, 0), (w, h), -half_width, half_width), cross_color),
            L(band((0, h), (w, 0), -half_width, half_width), cross_color)]


def serrated(size, field_color, white_x, tip_x, n_points) -> list[Layer]:
    """White hoist band with n triangular points (Qatar, Bahrain)."""
    w, h = size
    pts = [(0, 0), (white_x, 0)]
    for k in range(n_points):
        pts.append((tip_x, (k + 0.5) * h / n_points))
        pts.append((white_x, (k + 1) * h / n_points))
    pts.append((0, h))
    return [field_(size, field_color), L(poly(*pts), WHITE)]


# --------------------------------------------------------------------------------------------
# the flags
# --------------------------------------------------------------------------------------------
SPECS: dict[str, FlagSpec] = {}


def _add(cid: str, size, layers, appearance: str, accuracy: str, note: str,
         group: str = "national_flag", **colors: str) -> None:
    if cid in SPECS:
        raise ValueError(f"duplicate flag spec id {cid!r}")
    SPECS[cid] = FlagSpec(cid, Design((float(size[0]), float(size[1])), tuple(layers)),
                          appearance, accuracy, note, group, dict(colors))


WP = "colours: sRGB as published on Wikipedia's article for the flag (from official Pantone/CMYK)"

# --- vertical tricolours: Chad / Romania / Andorra / Moldova --------------------------------
S = (3, 2)
_add("flag_chad", S, vbands(S, ["#00205B", "#FFCD00", "#C8102E"]),
     "a flag with three vertical stripes, blue, yellow and red", "exact",
     "2:3, three equal vertical bands, blue at the hoist (Constitution of Chad, art. 8: 'bleu, or, "
     "rouge', no shades in law). Colours: the sRGB of the suggested Pantone 281 C (indigo), 116 C and "
     "186 C as published on Wikipedia's article (#00205B, #FFCD00, #C8102E); not legally binding.",
     blue="#00205B", yellow="#FFCD00", red="#C8102E")
_add("flag_romania", S, vbands(S, ["#002B7F", "#FCD116", "#CE1126"]),
     "a flag with three vertical stripes, blue, yellow and red", "exact",
     f"2:3, three equal vertical bands (Law 75/1994). {WP}; cobalt blue Pantone 280.",
     blue="#002B7F", yellow="#FCD116", red="#CE1126")
S = (10, 7)
_sh = shield(5, 2.1, 2.2, 2.8)
_add("flag_andorra", S, vbands(S, ["#10069F", "#FEDD00", "#D50032"], [8, 9, 8]) + [
    L(shield(5, 2.0, 2.4, 3.0), "#B8862B"),                      # gold border of the arms
    L(rect(3.9, 2.1, 5.0, 3.5), "#D50032", _sh),                 # 1: Urgell (red, mitre omitted)
    L(rect(5.0, 2.1, 6.1, 3.5), "#FEDD00", _sh),                 # 2: Foix, 3 red pallets
    *[L(rect(5.0 + (2 * k + 1) * 1.1 / 7, 2.1, 5.0 + (2 * k + 2) * 1.1 / 7, 3.5), "#D50032", _sh)
      for k in range(3)],
    L(rect(3.9, 3.5, 5.0, 5.0), "#FEDD00", _sh),                 # 3: Catalonia, 4 red pallets
    *[L(rect(3.9 + (2 * k + 1) * 1.1 / 9, 3.5, 3.9 + (2 * k + 2) * 1.1 / 9, 5.0), "#D50032", _sh)
      for k in range(4)],
    L(rect(5.0, 3.5, 6.1, 5.0), "#FEDD00", _sh),                 # 4: Bearn, two red cows
    L(rect(5.2, 3.7, 5.8, 3.95), "#D50032", _sh), L(rect(5.2, 4.2, 5.8, 4.45), "#D50032", _sh),
], "a flag with three vertical stripes, blue, yellow and red, with a coat of arms in the centre",
    "simplified",
    f"7:10, bands 8:9:8 (Andorran flag law). Arms simplified to a quartered shield (red; gold with "
    f"red pallets; gold with red pallets; gold with two red bars for the cows), no crown/motto. {WP}.",
    blue="#10069F", yellow="#FEDD00", red="#D50032")
S = (2, 1)
_add("flag_moldova", S, vbands(S, ["#0046AE", "#FFD200", "#CC092F"]) + [
    L(poly((0.80, 0.30), (0.93, 0.36), (1.0, 0.28), (1.07, 0.36), (1.20, 0.30), (1.16, 0.55),
           (1.06, 0.72), (0.94, 0.72), (0.84, 0.55)), "#B07E09"),   # eagle silhouette
    L(rect(0.92, 0.42, 1.08, 0.53), "#CC092F", shield(1.0, 0.42, 0.16, 0.24)),
    L(rect(0.92, 0.53, 1.08, 0.70), "#0046AE", shield(1.0, 0.42, 0.16, 0.24)),
    L(disc(1.0, 0.52, 0.035), "#6B4A1B"),                               # aurochs head
], "a flag with three vertical stripes, blue, yellow and red, with a brown eagle emblem in the centre",
    "simplified",
    f"1:2, equal vertical bands (Law 217/1990). Eagle-with-shield arms simplified to a brown "
    f"eagle silhouette and a red-over-blue shield. {WP}.",
    blue="#0046AE", yellow="#FFD200", red="#CC092F")

# --- Indonesia / Monaco / Poland ------------------------------------------------------------
S = (3, 2)
_add("flag_indonesia", S, hbands(S, ["#FF0000", WHITE]),
     "a flag with two horizontal stripes, red and white", "exact",
     "2:3, red over white (Law 24/2009); the law names the colour 'merah' without a shade, "
     "#FF0000 as on Wikipedia.", red="#FF0000", white=WHITE)
S = (5, 4)
_add("flag_monaco", S, hbands(S, ["#CE1126", WHITE]),
     "a flag with two horizontal stripes, red and white", "exact",
     f"4:5, red over white (Sovereign Ordinance of 4 April 1881). {WP}.", red="#CE1126", white=WHITE)
S = (8, 5)
_add("flag_poland", S, hbands(S, [WHITE, "#DC143C"]),
     "a flag with two horizontal stripes, white and red", "exact",
     "5:8, white over red (Act of 31 January 1980; red defined in CIELUV, sRGB approx. #DC143C).",
     red="#DC143C", white=WHITE)

# --- Ireland / Cote d'Ivoire / Italy / Mexico -----------------------------------------------
S = (2, 1)
_add("flag_ireland", S, vbands(S, ["#169B62", WHITE, "#FF883E"]),
     "a flag with three vertical stripes, green, white and orange", "exact",
     "1:2, equal vertical bands, green at the hoist (Department of the Taoiseach guidance: "
     "Pantone 347 green, 151 orange).", green="#169B62", orange="#FF883E")
S = (3, 2)
_add("flag_cote_divoire", S, vbands(S, ["#F77F00", WHITE, "#009E60"]),
     "a flag with three vertical stripes, orange, white and green", "exact",
     f"2:3, equal vertical bands, orange at the hoist (Constitution art. 48). {WP}.",
     green="#009E60", orange="#F77F00")
_add("flag_italy", S, vbands(S, ["#009246", "#F1F2F1", "#CE2B37"]),
     "a flag with three vertical stripes, green, white and red", "exact",
     "2:3, equal vertical bands (Constitution art. 12; 2006 Presidency colour specification, "
     "sRGB as on Wikipedia).", green="#009246", red="#CE2B37")
S = (7, 4)
_add("flag_mexico", S, vbands(S, ["#006847", WHITE, "#CE1126"]) + [
    L(ring(3.5, 2.0, 0.72, 0.84), "#2E7D32", rect(2.5, 2.0, 4.5, 3.0)),   # wreath, lower half
    L(ellipse(3.5, 2.35, 0.42, 0.22), "#3A7D3A"),                          # nopal cactus
    L(poly((3.05, 1.55), (3.5, 1.2), (3.95, 1.45), (3.8, 2.15), (3.2, 2.15)), "#7A4A24"),  # eagle
    L(disc(3.62, 1.28, 0.12), "#7A4A24"),
], "a flag with three vertical stripes, green, white and red, with a brown eagle emblem in the centre",
    "simplified",
    f"4:7, equal vertical bands (Law on the National Arms, Flag and Anthem, 1984). Eagle-on-cactus "
    f"emblem simplified to a brown eagle shape over a green cactus with a green half wreath. {WP}.",
    green="#006847", red="#CE1126")

# --- Niger / India ---------------------------------------------------------------------------
S = (7, 6)
_add("flag_niger", S, hbands(S, ["#E05206", WHITE, "#0DB02B"]) + [L(disc(3.5, 3.0, 0.8), "#E05206")],
     "a flag with three horizontal stripes, orange, white and green, with an orange disc in the centre",
     "approx", f"6:7, equal horizontal bands; disc diameter taken as 0.8 of the white band (approx). {WP}.",
     orange="#E05206", green="#0DB02B")
S = (3, 2)
_add("flag_india", S, hbands(S, ["#FF9933", WHITE, "#138808"]) + [
    L(ring(1.5, 1.0, 0.225, 0.25), "#000080"),
    L(spokes(1.5, 1.0, 0.23, 24, 0.008), "#000080"),
    L(disc(1.5, 1.0, 0.04), "#000080"),
], "a flag with three horizontal stripes, orange, white and green, with a navy blue wheel in the centre",
    "exact", "2:3, equal bands, 24-spoke navy wheel of diameter 3/4 of the white band "
    "(Flag Code of India 2002). Colours as on Wikipedia.", orange="#FF9933", green="#138808",
    navy="#000080")

# --- Netherlands / Luxembourg ----------------------------------------------------------------
_add("flag_netherlands", S, hbands(S, ["#AE1C28", WHITE, "#21468B"]),
     "a flag with three horizontal stripes, red, white and blue", "exact",
     f"2:3, equal horizontal bands (Royal Decree 1937; colours per the 1958 standard). {WP}.",
     red="#AE1C28", blue="#21468B")
S = (5, 3)
_add("flag_luxembourg", S, hbands(S, ["#EF3340", WHITE, "#00A3E0"]),
     "a flag with three horizontal stripes, red, white and light blue", "exact",
     "3:5, equal horizontal bands (Law of 23 June 1972; Pantone 032 red, 299 light blue).",
     red="#EF3340", blue="#00A3E0")

# --- Nordic crosses ---------------------------------------------------------------------------
S, lay = nordic([6, 1, 2, 1, 12], [6, 1, 2, 1, 6], "#BA0C2F", [WHITE, "#00205B"])
_add("flag_norway", S, lay, "a red flag with a blue Nordic cross bordered in white", "exact",
     f"22:16; cross parts 6-1-2-1-12 by 6-1-2-1-6 (Flag Act 1898). {WP}.",
     red="#BA0C2F", blue="#00205B")
S, lay = nordic([7, 1, 2, 1, 14], [7, 1, 2, 1, 7], "#02529C", [WHITE, "#DC1E35"])
_add("flag_iceland", S, lay, "a blue flag with a red Nordic cross bordered in white", "exact",
     "25:18; cross parts 7-1-2-1-14 by 7-1-2-1-7 (Act 34/1944; colours per the 1991 regulation).",
     red="#DC1E35", blue="#02529C")
S, lay = nordic([6, 1, 2, 1, 12], [6, 1, 2, 1, 6], WHITE, ["#005EB8", "#EF3340"])
_add("flag_faroe_islands", S, lay, "a white flag with a red Nordic cross bordered in blue", "exact",
     "22:16, same construction as Norway's (Faroese Flag Act 1959); Pantone 300 blue, 032 red.",
     group="regional_flag", red="#EF3340", blue="#005EB8")
S, lay = nordic([12, 4, 21], [12, 4, 12], "#C8102E", [WHITE])
_add("flag_denmark", S, lay, "a red flag with a white Nordic cross", "exact",
     f"28:37; cross 4 units wide, 12-4-21 by 12-4-12 (state flag construction). {WP}.",
     red="#C8102E")
S = (32, 32)
_add("flag_switzerland", S, [field_(S, "#DA291C"), L(rect(6, 13, 26, 19), WHITE),
                             L(rect(13, 6, 19, 26), WHITE)],
     "a square red flag with a white centered cross", "exact",
     "1:1; cross arms 1/6 longer than wide (6x7 units each) on a 32-unit square (Federal Act on the "
     "Coat of Arms 2013, appendix). Pantone 485 red.", red="#DA291C")
S, lay = nordic([5, 2, 9], [4, 2, 4], "#006AA7", ["#FECC02"])
_add("flag_sweden", S, lay, "a blue flag with a yellow Nordic cross", "exact",
     "10:16; cross 5-2-9 by 4-2-4 (Swedish Flag Act 1982; NCS colours, sRGB as on Wikipedia).",
     blue="#006AA7", yellow="#FECC02")
S, lay = nordic([8, 1, 3, 1, 13], [6, 1, 3, 1, 6], "#0064AE", ["#FFD300", "#DA0E15"])
_add("flag_aland", S, lay, "a blue flag with a red Nordic cross bordered in yellow", "approx",
     "17:26, Swedish-style cross with red centre (Åland flag law 1991); part widths 8-1-3-1-13 by "
     f"6-1-3-1-6 estimated from the construction sheet. {WP}.", group="regional_flag",
     blue="#0064AE", yellow="#FFD300", red="#DA0E15")
S, lay = nordic([6, 1, 2, 1, 12], [6, 1, 2, 1, 6], "#0065BD", ["#FFCD00", "#C8102E"])
_add("flag_orkney", S, lay, "a blue flag with a red Nordic cross bordered in yellow", "approx",
     "Orkney flag (Lord Lyon, 2007): blue with a yellow-bordered red Nordic cross; proportions "
     "and shades approximated with Norway's 22:16 construction.", group="regional_flag",
     blue="#0065BD", yellow="#FFCD00", red="#C8102E")
S, lay = nordic([5, 3, 10], [4, 3, 4], WHITE, ["#002F6C"])
_add("flag_finland", S, lay, "a white flag with a blue Nordic cross", "exact",
     "11:18; cross 5-3-10 by 4-3-4 (Act on the Flag of Finland 1978). Pantone 294 blue.",
     blue="#002F6C")

# --- West African tricolours -------------------------------------------------------------------
S = (3, 2)
_add("flag_senegal", S, vbands(S, ["#00853F", "#FDEF42", "#E31B23"]) + [
    L(star(1.5, 1.03, 0.33), "#00853F")],
    "a flag with three vertical stripes, green, yellow and red, with a green star in the centre",
    "approx", f"2:3, equal vertical bands, green five-pointed star centred (Constitution art. 1); "
    f"star radius estimated. {WP}.", green="#00853F", yellow="#FDEF42", red="#E31B23")
_add("flag_mali", S, vbands(S, ["#14B53A", "#FCD116", "#CE1126"]),
     "a flag with three vertical stripes, green, yellow and red", "exact",
     f"2:3, equal vertical bands (Constitution of 1992). {WP}.",
     green="#14B53A", yellow="#FCD116", red="#CE1126")
_add("flag_guinea", S, vbands(S, ["#CE1126", "#FCD116", "#009460"]),
     "a flag with three vertical stripes, red, yellow and green", "exact",
     f"2:3, equal vertical bands, red at the hoist (Constitution of 2010). {WP}.",
     green="#009460", yellow="#FCD116", red="#CE1126")
_add("flag_cameroon", S, vbands(S, ["#007A5E", "#CE1126", "#FCD116"]) + [
    L(star(1.5, 1.03, 0.33), "#FCD116")],
    "a flag with three vertical stripes, green, red and yellow, with a yellow star in the centre",
    "approx", f"2:3, equal vertical bands, yellow star centred in the red band (Constitution "
    f"art. 1); star radius estimated. {WP}.", green="#007A5E", yellow="#FCD116", red="#CE1126")

# --- Australia / New Zealand ---------------------------------------------------------------------
S = (2, 1)
_add("flag_australia", S, [field_(S, "#012169")] + union_jack(0, 0, 1, 0.5) + [
    L(star(0.5, 0.75, 0.15, 7, 4 / 9), WHITE),                 # Commonwealth Star
    L(star(1.5, 1 - 1 / 6, 1 / 14, 7, 4 / 9), WHITE),          # Alpha Crucis
    L(star(1.5, 1 / 6, 1 / 14, 7, 4 / 9), WHITE),              # Gamma Crucis
    L(star(1.25, 0.5 - 1 / 16, 1 / 14, 7, 4 / 9), WHITE),      # Beta Crucis
    L(star(1.5 + 2 / 9, 0.5 - 1 / 16 - 1 / 15, 1 / 14, 7, 4 / 9), WHITE),  # Delta Crucis
    L(star(1.5 + 1 / 10, 0.5 + 1 / 24, 1 / 24, 5, 4 / 9), WHITE),         # Epsilon Crucis
], "a dark blue flag with a small red, white and blue cross pattern in the upper hoist corner and white stars",
    "exact", "1:2 (Flags Act 1953, First Schedule, Tables A and B; fractions of the hoist): Union Flag "
    "canton; seven-pointed Commonwealth Star, diameter 3/10, centred in the lower hoist; Southern Cross "
    "stars of diameter 1/7 (Epsilon 1/12, five points), inner diameter 4/9: Alpha and Gamma on the fly's "
    "middle line 1/6 from the bottom/top, Beta 1/4 to the hoist side and 1/16 above the fly centre, "
    "Delta 2/9 to the fly side and 1/16 + 1/15 above it, Epsilon 1/10 to the fly side and 1/24 below "
    "it. Stars point straight up (the Act does not rotate them). Blue Pantone 280.",
    blue="#012169")
_nz = [L(star(x, y, r * 1.25, 5), WHITE) for x, y, r in
       ((1.5, 0.80, 0.07), (1.5, 0.19, 0.064), (1.27, 0.45, 0.064), (1.70, 0.39, 0.055))]
_nz += [L(star(x, y, r, 5), "#C8102E") for x, y, r in
        ((1.5, 0.80, 0.07), (1.5, 0.19, 0.064), (1.27, 0.45, 0.064), (1.70, 0.39, 0.055))]
_add("flag_new_zealand", S, [field_(S, "#012169")] + union_jack(0, 0, 1, 0.5) + _nz,
     "a dark blue flag with a small red, white and blue cross pattern in the upper hoist corner and red stars",
     "approx", "1:2 (Flag Act 1981): Union Flag canton, four red five-pointed stars with white "
     "borders; star positions and sizes estimated from the construction sheet.", blue="#012169",
     red="#C8102E")

# --- Gran Colombia tricolours ---------------------------------------------------------------------
S = (3, 2)
_add("flag_colombia", S, hbands(S, ["#FCD116", "#003893", "#CE1126"], [2, 1, 1]),
     "a flag with three horizontal stripes, yellow, blue and red, the yellow twice as wide", "exact",
     f"2:3, yellow half, blue and red quarters (Decree 861 of 1924). {WP}.",
     yellow="#FCD116", blue="#003893", red="#CE1126")
_add("flag_ecuador", S, hbands(S, ["#FFDD00", "#034EA2", "#ED1C24"], [2, 1, 1]) + [
    L(ellipse(1.5, 1.05, 0.2, 0.27), "#6CACE4"),
    L(rect(1.25, 1.1, 1.75, 1.35), "#2E7D32", ellipse(1.5, 1.05, 0.2, 0.27)),
    L(poly((1.15, 0.68), (1.5, 0.76), (1.85, 0.68), (1.6, 0.82), (1.4, 0.82)), "#3A3A3A"),  # condor
], "a flag with three horizontal stripes, yellow, blue and red, the yellow twice as wide, "
   "with a coat of arms in the centre", "simplified",
    f"2:3 with the Colombian 2:1:1 bands (Ecuadorian flag law 1900/2009); arms simplified to a sky "
    f"and green oval with a dark condor above. {WP}.", yellow="#FFDD00", blue="#034EA2", red="#ED1C24")
_vz = [L(star(1.5 + 0.45 * math.cos(math.radians(a)), 1.2 - 0.45 * math.sin(math.radians(a)),
              0.06, 5, rotation=90 - a), WHITE)
       for a in [168 - k * 156 / 7 for k in range(8)]]
_add("flag_venezuela", S, hbands(S, ["#FFCC00", "#00247D", "#CF142B"]) + _vz,
     "a flag with three horizontal stripes, yellow, blue and red, with an arc of white stars", "approx",
     f"2:3, equal bands, eight white stars on an arc in the blue band (Law of 2006, civil flag "
     f"without arms); arc radius and star size estimated. {WP}.",
     yellow="#FFCC00", blue="#00247D", red="#CF142B")

# --- Pan-Slavic tricolours ----------------------------------------------------------------------
_add("flag_russia", S, hbands(S, [WHITE, "#0039A6", "#D52B1E"]),
     "a flag with three horizontal stripes, white, blue and red", "exact",
     f"2:3, equal horizontal bands (Federal Constitutional Law 2000). {WP}.",
     blue="#0039A6", red="#D52B1E")
_sk = shield(1.0, 0.5, 0.72, 1.0)
_add("flag_slovakia", S, hbands(S, [WHITE, "#0B4EA2", "#EE1C25"]) + [
    L(shield(1.0, 0.45, 0.82, 1.1), WHITE),
    L(_sk, "#EE1C25"),
    L(rect(0.955, 0.62, 1.045, 1.25), WHITE, _sk),
    L(rect(0.82, 0.72, 1.18, 0.8), WHITE, _sk),
    L(rect(0.74, 0.92, 1.26, 1.01), WHITE, _sk),
    L(disc(1.0, 1.36, 0.2), "#0B4EA2", _sk), L(disc(0.74, 1.45, 0.17), "#0B4EA2", _sk),
    L(disc(1.26, 1.45, 0.17), "#0B4EA2", _sk),
], "a flag with three horizontal stripes, white, blue and red, with a red shield near the hoist",
    "simplified", f"2:3, equal bands (Constitution art. 9); arms at the hoist: red shield with "
    f"white double cross on three blue hills, white outline; shield placement estimated. {WP}.",
    blue="#0B4EA2", red="#EE1C25")
S = (2, 1)
_si = shield(0.5, 0.2, 0.24, 0.31)
_add("flag_slovenia", S, hbands(S, [WHITE, "#005DA4", "#ED1C24"]) + [
    L(shield(0.5, 0.185, 0.27, 0.34), "#ED1C24"),
    L(_si, "#005DA4"),
    L(poly((0.39, 0.44), (0.45, 0.36), (0.48, 0.39), (0.5, 0.32), (0.52, 0.39), (0.55, 0.36),
           (0.61, 0.44)), WHITE, _si),
    L(rect(0.38, 0.455, 0.62, 0.47), WHITE, _si),
    *[L(star(x, 0.25, 0.022, 6, 0.55), "#FFDD00") for x in (0.45, 0.5, 0.55)],
], "a flag with three horizontal stripes, white, blue and red, with a small blue shield near the hoist",
    "simplified", f"1:2, equal bands (Act of 1994); arms simplified: blue shield with red border, "
    f"white three-peaked mountain, one white wave line, three yellow stars; position estimated. {WP}.",
    blue="#005DA4", red="#ED1C24")

# --- Arab Liberation tricolours -----------------------------------------------------------------
S = (3, 2)
_ar = ["#CE1126", WHITE, "#000000"]
_add("flag_yemen", S, hbands(S, _ar), "a flag with three horizontal stripes, red, white and black",
     "exact", f"2:3, equal horizontal bands (Constitution of 1990). {WP}.", red="#CE1126")
_add("flag_egypt", S, hbands(S, _ar) + [
    L(poly((1.2, 0.8), (1.5, 0.72), (1.8, 0.8), (1.72, 1.2), (1.5, 1.28), (1.28, 1.2)), "#C09300"),
    L(disc(1.5, 0.76, 0.07), "#C09300"),
], "a flag with three horizontal stripes, red, white and black, with a gold eagle in the centre",
    "simplified", f"2:3, equal bands (Law 144/1984); Eagle of Saladin simplified to a gold "
    f"silhouette. {WP}.", red="#CE1126", gold="#C09300")
_add("flag_syria", S, hbands(S, _ar) + [L(star(1.05, 1.02, 0.22), "#007A3D"),
                                        L(star(1.95, 1.02, 0.22), "#007A3D")],
     "a flag with three horizontal stripes, red, white and black, with two green stars", "approx",
     f"2:3, equal bands, two green stars in the white band (1980 flag as in use until 2024); "
     f"star spacing and size estimated. {WP}.", red="#CE1126", green="#007A3D")
_iq = [L(rect(1.0, 1.14, 2.0, 1.18), "#007A3D")]
_iq += [L(rect(x, y, x + 0.045, 1.18), "#007A3D")
        for x, y in ((1.05, 0.86), (1.2, 0.92), (1.33, 0.86), (1.46, 0.96), (1.58, 0.86),
                     (1.72, 0.92), (1.86, 0.88))]
_add("flag_iraq", S, hbands(S, _ar) + _iq,
     "a flag with three horizontal stripes, red, white and black, with green writing in the centre",
     "simplified", f"2:3, equal bands (Law 9/2008) with green Kufic 'Allahu akbar'; the script is "
     f"approximated by green vertical strokes on a baseline. {WP}.", red="#CE1126", green="#007A3D")

# --- Central American blue-white-blue ----------------------------------------------------------
S = (2, 1)
_add("flag_honduras", S, hbands(S, ["#00BCE4", WHITE, "#00BCE4"]) + [
    L(star(x, y, 0.045), "#00BCE4") for x, y in
    ((1.0, 0.5), (0.8, 0.42), (1.2, 0.42), (0.8, 0.58), (1.2, 0.58))],
    "a flag with three horizontal stripes, blue, white and blue, with five blue stars in the centre",
    "approx", "1:2, equal bands, turquoise blue (2022 decree, Pantone 3125), five stars in an X; "
    "star positions estimated.", blue="#00BCE4")
S = (5, 3)
_ni_tri = poly((2.5, 1.2), (2.78, 1.7), (2.22, 1.7))
_add("flag_nicaragua", S, hbands(S, ["#0067C6", WHITE, "#0067C6"]) + [
    L(ring(2.5, 1.5, 0.36, 0.44), "#C8A200"),
    L(_ni_tri, "#5B92E5"),
    L(rect(2.2, 1.55, 2.8, 1.7), "#2E7D32", _ni_tri),
], "a flag with three horizontal stripes, blue, white and blue, with a gold ring emblem in the centre",
    "simplified", f"3:5, equal bands (Law 1971); arms simplified to a gold text ring around a "
    f"triangle with green volcanoes. {WP}.", blue="#0067C6")
S = (335, 189)
_sv_tri = poly((167.5, 72), (190, 110), (145, 110))
_add("flag_el_salvador", S, hbands(S, ["#0F47AF", WHITE, "#0F47AF"]) + [
    L(ring(167.5, 94.5, 24, 29), "#C8A200"),
    L(ring(167.5, 94.5, 20, 24), "#2E7D32", rect(130, 94.5, 205, 130)),
    L(_sv_tri, "#5B92E5"),
    L(rect(140, 100, 195, 110), "#2E7D32", _sv_tri),
], "a flag with three horizontal stripes, blue, white and blue, with a gold ring emblem in the centre",
    "simplified", f"189:335, equal bands (Decree of 1912/1972); arms simplified to a gold text ring, "
    f"green laurel and a triangle with green volcanoes. {WP}.", blue="#0F47AF")

# --- Qatar / Bahrain ------------------------------------------------------------------------------
S = (28, 11)
_add("flag_qatar", S, serrated(S, "#8A1538", 7.0, 9.5, 9),
     "a maroon flag with a white serrated band at the hoist", "approx",
     "11:28 (Law 1975), maroon Pantone 7421, nine white points; serration depth estimated.",
     maroon="#8A1538")
S = (5, 3)
_add("flag_bahrain", S, serrated(S, "#CE1126", 1.0, 1.5, 5),
     "a red flag with a white serrated band at the hoist", "approx",
     f"3:5, five white points (Amiri Decree 2002); serration depth estimated. {WP}.", red="#CE1126")

# --- Austria / Latvia ----------------------------------------------------------------------------
S = (3, 2)
_add("flag_austria", S, hbands(S, ["#C8102E", WHITE, "#C8102E"]),
     "a flag with three horizontal stripes, red, white and red", "exact",
     f"2:3, equal bands (Federal Constitution art. 8a). {WP}.", red="#C8102E")
S = (2, 1)
_add("flag_latvia", S, hbands(S, ["#9E3039", WHITE, "#9E3039"], [2, 1, 2]),
     "a flag with three horizontal stripes, dark red, white and dark red, the white narrow", "exact",
     "1:2, bands 2:1:2 (Law on the Latvian Flag 2009), carmine red.", red="#9E3039")

# --- Ghana / Bolivia / Lithuania / Myanmar --------------------------------------------------------
S = (3, 2)
_gh_r = (2 / 3) / (1 + math.cos(math.radians(36)))
_add("flag_ghana", S, hbands(S, ["#CE1126", "#FCD116", "#006B3F"]) + [
    L(star(1.5, 2 / 3 + _gh_r, _gh_r), "#000000")],  # top point on the gold band's upper edge
    "a flag with three horizontal stripes, red, yellow and green, with a black star in the centre",
    "exact", f"2:3, equal bands, black star spanning the gold band (Constitution 1992). {WP}.",
    red="#CE1126", yellow="#FCD116", green="#006B3F")
S = (22, 15)
_add("flag_bolivia", S, hbands(S, ["#DA291C", "#F4E400", "#007A33"]),
     "a flag with three horizontal stripes, red, yellow and green", "exact",
     f"15:22, equal bands (civil flag, Decree 2004). {WP}.",
     red="#DA291C", yellow="#F4E400", green="#007A33")
S = (5, 3)
_add("flag_lithuania", S, hbands(S, ["#FDB913", "#006A44", "#C1272D"]),
     "a flag with three horizontal stripes, yellow, green and red", "exact",
     "3:5, equal bands (Law on the National Flag 2004, Pantone 1235/349/180).",
     yellow="#FDB913", green="#006A44", red="#C1272D")
S = (3, 2)
_add("flag_myanmar", S, hbands(S, ["#FECB00", "#34B233", "#EA2839"]) + [
    L(star(1.5, 1.06, 0.7), WHITE)],
    "a flag with three horizontal stripes, yellow, green and red, with a large white star in the centre",
    "approx", f"2:3, equal bands with a large white star (Constitution 2008); star size estimated. {WP}.",
    yellow="#FECB00", green="#34B233", red="#EA2839")

# --- disc flags -------------------------------------------------------------------------------------
_add("flag_japan", S, [field_(S, WHITE), L(disc(1.5, 1.0, 0.6), "#BC002D")],
     "a white flag with a red disc in the centre", "exact",
     "2:3, crimson disc of diameter 3/5 of the height, centred (Act on National Flag and Anthem 1999).",
     red="#BC002D")
S = (10, 6)
_add("flag_bangladesh", S, [field_(S, "#006A4E"), L(disc(4.5, 3.0, 2.0), "#F42A41")],
     "a green flag with a red disc slightly towards the hoist", "exact",
     "3:5, red disc of radius 1/5 of the length centred at 9/20 of the length (Flag Rules 1972).",
     green="#006A4E", red="#F42A41")
S = (8, 5)
_add("flag_palau", S, [field_(S, "#4AADD6"), L(disc(3.5, 2.5, 1.5), "#FFDE00")],
     "a light blue flag with a yellow disc slightly towards the hoist", "approx",
     f"5:8, yellow disc offset towards the hoist (1981 constitution); disc size and offset estimated. {WP}.",
     blue="#4AADD6", yellow="#FFDE00")

# --- Haiti / Liechtenstein ---------------------------------------------------------------------------
S = (5, 3)
_add("flag_haiti", S, hbands(S, ["#00209F", "#D21034"]) + [
    L(rect(1.9, 1.0, 3.1, 2.0), WHITE),
    L(rect(2.1, 1.75, 2.9, 1.9), "#2E7D32"),
    L(rect(2.47, 1.3, 2.53, 1.78), "#7A4A24"),
    L(poly((2.5, 1.08), (2.75, 1.35), (2.25, 1.35)), "#2E7D32"),
], "a flag with two horizontal stripes, blue and red, with a white panel in the centre", "simplified",
    f"3:5, blue over red (Constitution 1987) with the arms on a white panel, simplified to a palm "
    f"tree on green ground. {WP}.", blue="#00209F", red="#D21034")
_add("flag_liechtenstein", S, hbands(S, ["#002B7F", "#CE1126"]) + [
    L(poly((0.8, 1.05), (0.8, 0.62), (0.95, 0.8), (1.1, 0.55), (1.25, 0.8), (1.4, 0.62),
           (1.4, 1.05)), "#FFD83D"),
    L(rect(0.78, 1.0, 1.42, 1.12), "#FFD83D"),
    L(disc(1.1, 0.48, 0.06), "#FFD83D"),
], "a flag with two horizontal stripes, blue and red, with a gold crown in the upper hoist", "simplified",
    f"3:5, blue over red (Law of 1982) with the princely crown in the canton, simplified to a gold "
    f"crown silhouette. {WP}.", blue="#002B7F", red="#CE1126")

# --- Nigeria / Norfolk Island ---------------------------------------------------------------------------
S = (2, 1)
_add("flag_nigeria", S, vbands(S, ["#008751", WHITE, "#008751"]),
     "a flag with three vertical stripes, green, white and green", "exact",
     f"1:2, equal vertical bands (adopted 1960). {WP}.", green="#008751")
S = (46, 23)
_add("flag_norfolk_island", S, vbands(S, ["#007A33", WHITE, "#007A33"], [7, 9, 7]) + [
    L(poly((23, 2.5), (27.5, 9), (18.5, 9)), "#007A33"),
    L(poly((23, 6.5), (28.5, 14), (17.5, 14)), "#007A33"),
    L(poly((23, 11), (29, 19), (17, 19)), "#007A33"),
    L(rect(22.4, 19, 23.6, 21.5), "#007A33"),
], "a flag with three vertical stripes, green, white and green, with a green tree in the centre",
    "approx", "1:2, bands 7:9:7 with a green Norfolk Island pine (Flag 1980); tree drawn as three "
    "stacked triangles, green shade approximated.", group="regional_flag", green="#007A33")

# --- lone stars: Chile / Texas; Cuba / Puerto Rico ----------------------------------------------------
S = (3, 2)
_add("flag_chile", S, hbands(S, [WHITE, "#D52B1E"]) + [
    L(rect(0, 0, 1, 1), "#0039A6"), L(star(0.5, 0.5, 0.25), WHITE)],
    "a flag with two horizontal stripes, white and red, with a blue square and a white star in the upper hoist",
    "exact", f"2:3, square blue canton of the white band's height, star of diameter half the canton "
    f"(Decree 1,534 of 1967). {WP}.", blue="#0039A6", red="#D52B1E")
_add("flag_texas", S, hbands(S, [WHITE, "#BF0A30"]) + [
    L(rect(0, 0, 1, 2), "#002868"), L(star(0.5, 1.0, 0.375), WHITE)],
    "a flag with two horizontal stripes, white and red, with a blue vertical band and a white star at the hoist",
    "exact", "2:3, blue vertical band of 1/3 the length, star diameter 3/4 of the band width "
    "(Texas Government Code 3100.002).", group="regional_flag", blue="#002868", red="#BF0A30")
S = (2, 1)
_cu_tri = poly((0, 0), (math.sqrt(3) / 2, 0.5), (0, 1))
_add("flag_cuba", S, hbands(S, ["#002A8F", WHITE] * 2 + ["#002A8F"]) + [
    L(_cu_tri, "#CF142B"), L(star(math.sqrt(3) / 6, 0.5, 0.15), WHITE)],
    "a flag with five horizontal stripes, blue and white, with a red triangle and a white star at the hoist",
    "approx", f"1:2, five equal stripes, equilateral red triangle (Law of 1906 / Constitution); "
    f"star size estimated. {WP}.", blue="#002A8F", red="#CF142B")
S = (3, 2)
_pr_tri = poly((0, 0), (math.sqrt(3), 1.0), (0, 2))
_add("flag_puerto_rico", S, hbands(S, ["#ED0000", WHITE] * 2 + ["#ED0000"]) + [
    L(_pr_tri, "#0050F0"), L(star(math.sqrt(3) / 3, 1.0, 0.3), WHITE)],
    "a flag with five horizontal stripes, red and white, with a blue triangle and a white star at the hoist",
    "approx", "2:3, five equal stripes, equilateral blue triangle (Law 1 of 1952; shade of blue not "
    "fixed by law, light blue as commonly flown); star size estimated.", group="regional_flag",
    blue="#0050F0", red="#ED0000")

# --- saltires and St George crosses ---------------------------------------------------------------------
S = (5, 3)
_add("flag_scotland", S, saltire(S, "#005EB8", WHITE, 0.3),
     "a blue flag with a white diagonal cross", "exact",
     "3:5, white saltire 1/5 of the height wide (Lord Lyon guidance), Pantone 300 blue.",
     group="regional_flag", blue="#005EB8")
S = (3, 2)
_add("flag_tenerife", S, saltire(S, "#003399", WHITE, 0.2),
     "a blue flag with a white diagonal cross", "approx",
     "2:3, dark blue with a white saltire (Cabildo de Tenerife, 1989); saltire width and blue "
     "shade approximated.", group="regional_flag", blue="#003399")
S = (5, 3)
_add("flag_england", S, [field_(S, WHITE), L(rect(2.2, 0, 2.8, 3), "#CE1124"),
                         L(rect(0, 1.2, 5, 1.8), "#CE1124")],
     "a white flag with a red centered cross", "exact",
     "3:5, St George's cross 1/5 of the height wide; red Pantone 186.", group="regional_flag",
     red="#CE1124")
S = (3, 2)
_ge = [L(rect(1.3, 0, 1.7, 2), "#FF0000"), L(rect(0, 0.8, 3, 1.2), "#FF0000")]
for _x, _y in ((0.65, 0.4), (2.35, 0.4), (0.65, 1.6), (2.35, 1.6)):
    _ge += [L(rect(_x - 0.05, _y - 0.22, _x + 0.05, _y + 0.22), "#FF0000"),
            L(rect(_x - 0.22, _y - 0.05, _x + 0.22, _y + 0.05), "#FF0000")]
_add("flag_georgia", S, [field_(S, WHITE)] + _ge,
     "a white flag with a red centered cross and four small red crosses", "simplified",
     f"2:3, St George's cross with four Bolnur-Katskhuri crosses (Law 2004); the small crosses are "
     f"drawn as plain Greek crosses (real ones are pattée); widths estimated. {WP}.", red="#FF0000")

# --- tartans (second category): drawn from their published thread counts, see tartans.py ------
from .tartans import TARTAN_SPECS, Sett, TartanDesign, TartanSpec, parse_sett  # noqa: E402,F401

for _cid, _spec in TARTAN_SPECS.items():
    if _cid in SPECS:
        raise ValueError(f"tartan id {_cid!r} clashes with a flag spec id")
    SPECS[_cid] = _spec  # type: ignore[assignment]  # TartanSpec reads like FlagSpec

SPEC_NOTES: dict[str, str] = {k: f"[{v.accuracy}] {v.note}" for k, v in SPECS.items()}


def get_spec(concept_id: str) -> FlagSpec | TartanSpec:
    """The spec of one world concept; a clear error names the valid ids."""
    try:
        return SPECS[concept_id]
    except KeyError:
        raise KeyError(f"unknown world concept id {concept_id!r}; valid ids: "
                       f"{', '.join(sorted(SPECS))}") from None
