"""Tartans of the offline twin world, drawn from their published thread counts (setts).

A tartan is fully defined by its threadcount: the sequence of coloured stripes of the warp (the
weft repeats it). Notation, as used by the Scottish Register of Tartans (SRT) and documented in
thetartan/tartan `docs/syntax/basic.md`:

- ``B/24 K4 B4 K4 B4 K20 G24 K6 G24 K20 B22 K4 B/4``: a *symmetric* (reflective) sett written as a
  half; the two stripes carrying ``/`` are the pivots, each written with its full thread count.
  The full repeat is the half followed by its mirror image without repeating the pivots.
- ``B24 W4 B24 R2 K24 G24 W2``: no ``/`` -> an *asymmetric* (repeating) sett, the whole repeat.

Colour codes are the register's letter codes (K black, B blue, G green, R red, Y yellow, W white,
plus two-letter shades such as DB dark blue, HG hunting green, WW Wilson white). Each tartan below
carries the exact palette (code -> sRGB) published with its register record; `STR_COLORS` holds
the register's standard shades for setts given without a palette.

Every entry is copied from the Scottish Register of Tartans records as collected in the public
repository pehaa/tartanify.com, file ``src/data/tartans.csv`` (columns: category, name, palette,
threadcount, restrictions, register URL). The register reference number of each record is kept,
so each sett can be checked at https://www.tartanregister.gov.uk/tartanDetails.aspx?ref=<ref>.

Pure data and string parsing: no numpy here (`render.py` rasterises).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

SOURCE_REPO = "pehaa/tartanify.com"
SOURCE_PATH = "src/data/tartans.csv"
SOURCE_COMMIT = "024ba552959aff723744ed227e47655ba7d14094"
SYNTAX_SOURCE = "thetartan/tartan docs/syntax/basic.md (symmetric '/' pivots vs asymmetric repeats)"
REGISTER_URL = "https://www.tartanregister.gov.uk/tartanDetails.aspx?ref={ref}"

# Standard register shades (as they recur in the SRT palettes of the records in SOURCE_PATH).
STR_COLORS: dict[str, str] = {
    "K": "#101010", "B": "#2C2C80", "G": "#006818", "R": "#C80000", "Y": "#E8C000",
    "W": "#E0E0E0", "WW": "#F8F8F8", "A": "#5C8CA8", "LB": "#2888C4", "DB": "#202060",
    "BL": "#1474B4", "RB": "#1C0070", "DG": "#003820", "HG": "#285800", "LG": "#289C18",
    "AG": "#00643C", "DR": "#880000", "P": "#780078", "T": "#604000", "N": "#888888",
    "LN": "#C0C0C0", "O": "#D87C00", "MY": "#D09800", "DY": "#E8C000", "C": "#A00048",
}

_TOKEN_RE = re.compile(r"^([A-Z]{1,4})(/?)(\d+)$")


class SettError(ValueError):
    """A threadcount string that cannot be parsed; the message names the bad token and the fix."""


@dataclass(frozen=True)
class Sett:
    """A parsed threadcount: stripes as written, and whether it reflects at pivots."""

    stripes: tuple[tuple[str, int], ...]
    symmetric: bool

    @property
    def repeat(self) -> tuple[tuple[str, int], ...]:
        """The stripes of one full repeat of the warp (mirror-expanded when symmetric)."""
        if not self.symmetric or len(self.stripes) < 2:
            return self.stripes
        return self.stripes + self.stripes[-2:0:-1]

    @property
    def threads(self) -> tuple[str, ...]:
        """One colour code per thread over a full repeat."""
        return tuple(c for c, n in self.repeat for _ in range(n))

    @property
    def length(self) -> int:
        """Threads in one full repeat."""
        return sum(n for _, n in self.repeat)

    @property
    def codes(self) -> tuple[str, ...]:
        """Distinct colour codes in order of first appearance."""
        return tuple(dict.fromkeys(c for c, _ in self.stripes))

    def __str__(self) -> str:
        last = len(self.stripes) - 1
        parts = []
        for i, (c, n) in enumerate(self.stripes):
            piv = "/" if self.symmetric and i in (0, last) else ""
            parts.append(f"{c}{piv}{n}")
        return " ".join(parts)


def parse_sett(text: str, symmetric: bool | None = None) -> Sett:
    """Parse a threadcount like ``"B/24 K4 G24 K/4"`` or ``"K4 R24 K24 Y4"``.

    ``symmetric=None`` follows the register convention (pivots marked ``/`` on the first and last
    stripe -> symmetric, no ``/`` -> asymmetric repeat); ``True`` reads a slash-free string as a
    half sett (a common informal way to write symmetric setts); ``False`` forbids pivots.
    """
    if not isinstance(text, str) or not text.strip():
        raise SettError("empty threadcount; write stripes like 'B/24 K4 G24 K/4'")
    toks = text.replace(",", " ").split()
    stripes: list[tuple[str, int]] = []
    slashes: list[int] = []
    for i, tok in enumerate(toks):
        m = _TOKEN_RE.match(tok.strip())
        if not m:
            raise SettError(f"bad stripe {tok!r} in {text!r}: each stripe is a colour code of 1-4 "
                            "capital letters and a thread count, e.g. 'K4' or pivot 'B/24'")
        code, slash, count = m.group(1), m.group(2), int(m.group(3))
        if count <= 0:
            raise SettError(f"stripe {tok!r} in {text!r} has {count} threads; counts must be >= 1")
        if slash:
            slashes.append(i)
        stripes.append((code, count))
    if slashes:
        if slashes != [0, len(toks) - 1] or len(toks) < 2:
            raise SettError(f"pivots in {text!r} must mark exactly the first and last stripe "
                            "(e.g. 'B/24 K4 G24 K/4'); got '/' on stripe(s) "
                            f"{[toks[i] for i in slashes]}")
        if symmetric is False:
            raise SettError(f"{text!r} has pivots ('/') but symmetric=False was asked")
        sym = True
    else:
        sym = bool(symmetric) and len(stripes) >= 2
    return Sett(tuple(stripes), sym)


# --------------------------------------------------------------------------------------------
# generic (culture-free) colour names and appearance captions
# --------------------------------------------------------------------------------------------
# anchor sRGB -> generic colour word (shared vocabulary with the generic flag captions)
COLOR_WORDS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("black", (16, 16, 16)), ("dark grey", (80, 80, 80)), ("grey", (150, 150, 150)),
    ("white", (235, 235, 235)), ("dark blue", (28, 28, 84)), ("dark blue", (50, 80, 100)),
    ("blue", (44, 64, 150)),
    ("light blue", (100, 160, 220)), ("dark green", (0, 60, 35)), ("green", (0, 110, 40)),
    ("light green", (60, 170, 60)), ("green", (64, 128, 96)), ("red", (205, 10, 10)), ("dark red", (130, 10, 20)),
    ("yellow", (232, 200, 0)), ("orange", (220, 120, 0)), ("purple", (110, 0, 120)),
    ("brown", (100, 60, 10)), ("olive", (95, 100, 40)),
)


def hex_rgb(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    if len(c) != 6:
        raise ValueError(f"colour {color!r} must be '#RRGGBB'")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def color_word(color: str) -> str:
    """Nearest generic colour word for an sRGB hex (weighted RGB distance)."""
    r, g, b = hex_rgb(color)
    best, bd = "grey", float("inf")
    for name, (R, G, B) in COLOR_WORDS:
        d = 2 * (r - R) ** 2 + 4 * (g - G) ** 2 + 3 * (b - B) ** 2
        if d < bd:
            best, bd = name, d
    return best


def _an(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def describe_sett(sett: Sett, palette: dict[str, str], noun: str = "tartan",
                  words: dict[str, str] | None = None) -> str:
    """A culture-free caption: ground colours by thread share, thin lines (< 5 %) named last.

    e.g. "a tartan with a dark blue, green and black check and thin yellow lines". Colours that map to
    the same word are merged, so near-identical twins share a caption (like Chad / Romania).
    `words` (code -> colour word) overrides the nearest-word lookup (used for generic setts).
    """
    share: dict[str, int] = {}
    total = sett.length
    for code, n in sett.repeat:
        w = (words or {}).get(code) or color_word(palette.get(code) or STR_COLORS.get(code, "#888888"))
        share[w] = share.get(w, 0) + n
    order = sorted(share, key=lambda w: -share[w])
    ground = [w for w in order if share[w] / total >= 0.05][:3] or order[:1]
    lines = [w for w in order if w not in ground][:2]
    if len(ground) > 1:
        cap = f"a {noun} with {_an(ground[0])} {_join(ground)} check"
    else:
        cap = f"{_an(ground[0])} {ground[0]} {noun}"
    if lines:
        cap += f" and thin {_join(lines)} line" + ("s" if len(lines) > 1 else "")
    return cap


# --------------------------------------------------------------------------------------------
# designs and specs
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TartanDesign:
    """A woven cloth: warp = weft = `sett` repeated, 2/2 twill, `repeats` setts across the width.

    `size` is in thread units (width, height) so that it behaves like a flag Design for placement.
    """

    sett: Sett
    palette: tuple[tuple[str, str], ...]   # (code, '#RRGGBB')
    repeats: float = 2.0
    aspect_ratio: float = 4 / 3
    twill: int = 2                          # 2/2 twill: 2 over, 2 under

    @property
    def size(self) -> tuple[float, float]:
        w = self.sett.length * self.repeats
        return (float(w), float(w / self.aspect_ratio))

    @property
    def aspect(self) -> float:
        return self.aspect_ratio

    @property
    def colors(self) -> dict[str, str]:
        return dict(self.palette)


@dataclass(frozen=True)
class TartanSpec:
    """Same reading API as FlagSpec (design, appearance, accuracy, note, world_group, colors)."""

    concept_id: str
    design: TartanDesign
    appearance: str
    accuracy: str
    note: str
    world_group: str = "tartan"
    colors: dict[str, str] = field(default_factory=dict)
    register_name: str = ""
    register_ref: int = 0
    threadcount: str = ""

    @property
    def source(self) -> str:
        return (f"{SOURCE_REPO} {SOURCE_PATH} (Scottish Register of Tartans record "
                f"'{self.register_name}', {REGISTER_URL.format(ref=self.register_ref)})")


def _palette(text: str) -> dict[str, str]:
    """'K#101010 BLACK; B#2C2C80 BLUE;' -> {'K': '#101010', 'B': '#2C2C80'}."""
    out: dict[str, str] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        m = re.match(r"^([A-Z]{1,4})#([0-9A-Fa-f]{6})\b", part)
        if not m:
            raise ValueError(f"bad palette entry {part!r}")
        out.setdefault(m.group(1), "#" + m.group(2).upper())
    return out


# (concept id, register name, register ref, palette as published, threadcount as published)
# Copied verbatim from SOURCE_REPO/SOURCE_PATH; only palette entries for codes the sett uses kept.
_RECORDS: tuple[tuple[str, str, int, str, str], ...] = (
    # --- the dark "Government" family: blue, black and green -----------------------------------
    ("tartan_black_watch", "Black Watch (smallest sett)", 5376,
     "DB#1C1C50 DARK BLUE; K#000000 BLACK; HG#285800 HUNTING GREEN;",
     "DB/4 K4 DB24 K24 HG24 K/4"),
    ("tartan_sutherland", "Sutherland 42nd", 4044,
     "B#2C4084 BLUE; K#101010 BLACK; G#005020 MOD GREEN;",
     "B/4 K4 B12 K12 G12 K/4"),
    ("tartan_campbell", "Campbell", 502,
     "K#101010 BLACK; OG#5C6428 OLIVE GREEN; B#345064 CAMP BLUE;",
     "B/28 K6 B6 K6 B6 K32 OG32 K6 OG32 K32 B32 K6 B/6"),
    ("tartan_gordon", "Gordon", 1449,
     "B#2C4084 BLUE; K#101010 BLACK; G#005020 MOD GREEN; Y#E8C000 YELLOW;",
     "B/20 K4 B4 K4 B4 K16 G20 Y4 G20 K16 B24 K/4"),
    ("tartan_campbell_of_breadalbane", "Campbell of Breadalbane", 515,
     "B#2C4084 BLUE; K#101010 BLACK; Y#E8C000 YELLOW; G#005020 MOD GREEN;",
     "B/16 K2 B2 K2 B2 K16 Y2 G28 Y2 K16 B16 K2 B/2"),
    ("tartan_forbes", "Forbes", 1214,
     "K#101010 BLACK; B#2C2C80 BLUE; G#006818 GREEN; WW#FCFCFC WILSON WHITE;",
     "B/32 K4 B8 K4 B8 K24 G32 K4 WW8 K4 G32 K24 B32 K4 B/8"),
    ("tartan_lamont", "Lamont", 2033,
     "B#2C4084 BLUE; K#101010 BLACK; G#005020 MOD GREEN; W#E0E0E0 WHITE;",
     "B/40 K4 B4 K4 B8 K32 G40 W/4"),
    ("tartan_mackenzie", "MacKenzie Hunting (Green)", 2529,
     "B#2C2C80 BLUE; K#101010 BLACK; WG#408060 WTHRD GREEN; WW#F8F8F8 WILSON WHITE; R#C80000 RED;",
     "B/24 K4 B4 K4 B4 K24 WG24 K2 WW4 K2 WG24 K24 B24 K2 R/4"),
    ("tartan_mackinlay", "MacKinlay", 2540,
     "B#2C4084 BLUE; K#101010 BLACK; G#005020 MOD GREEN; R#DC0000 RED;",
     "B/12 K4 B4 K4 B4 K12 G16 K2 R4 K2 G16 K12 B16 K4 B/4"),
    ("tartan_macewen", "MacEwen/MacEwan", 2428,
     "K#101010 BLACK; R#C80000 RED; YT#D8B000 TAN YELLOW; G#006818 GREEN; B#2C2C80 BLUE;",
     "YT/4 K4 G24 K24 B24 K4 B4 K4 B24 K24 G24 K4 R/4"),
    ("tartan_hunting_stewart", "Stewart Hunting", 3934,
     "G#006818 GREEN; K#101010 BLACK; B#2C2C80 BLUE; R#C80000 RED; Y#E8C000 YELLOW; "
     "HG#285800 HUNTING GREEN;",
     "B9 HG4 B9 K3 B3 K3 B3 K8 HG27 R4 HG27 K8 HG5 K13 HG4 K13 HG5 K8 HG27 Y4 HG27 K8 B3 K3 B3 K3"),
    # --- red grounds ---------------------------------------------------------------------------
    ("tartan_royal_stewart", "Stewart/Stuart, Royal #2", 3958,
     "R#C80000 RED; K#101010 BLACK; Y#E8C000 YELLOW; G#006818 GREEN; WW#FCFCFC WILSON WHITE; "
     "B#2C2C80 BLUE;",
     "R/144 B16 K24 Y8 K8 WW8 K8 G32 R16 K8 R8 WW/8"),
    ("tartan_macduff", "MacDuff", 2413,
     "R#DC0000 RED; B#2C4084 BLUE; DG#002814 GREEN; G#005020 MOD GREEN; K#101010 BLACK;",
     "R/96 B16 DG34 G48 R18 K6 R/9"),
    ("tartan_macgregor", "MacGregor", 2449,
     "K#101010 BLACK; W#E0E0E0 WHITE; G#005020 MOD GREEN; R#DC0000 RED;",
     "K/6 W4 G10 R10 G32 R/70"),
    ("tartan_cameron", "Cameron", 488,
     "R#C80000 RED; G#006818 GREEN; Y#E8C000 YELLOW;",
     "R/8 G24 R8 G24 R64 Y/8"),
    ("tartan_mackintosh", "MacKintosh", 2559,
     "R#C80000 RED; G#006818 GREEN; B#2C2C80 BLUE;",
     "B/3 R10 G40 R10 B20 R/70"),
    ("tartan_macdonald_of_sleat", "MacDonald of Sleat", 2367,
     "G#006818 GREEN; R#C80000 RED;",
     "R/72 G4 R10 G/32"),
    # --- the MacDonald family: blue, red, black and green ------------------------------------
    ("tartan_macdonald", "MacDonald", 2334,
     "G#006818 GREEN; K#101010 BLACK; R#C80000 RED; B#2C2C80 BLUE;",
     "B/34 R4 B4 R10 B58 R4 K62 G58 R10 G4 R4 G/34"),
    ("tartan_clanranald", "MacDonald of Clanranald", 2352,
     "B#2C4084 BLUE; R#DC0000 RED; K#101010 BLACK; W#E0E0E0 WHITE; G#005020 MOD GREEN;",
     "B/16 R2 B4 R6 B24 R2 K24 W2 G24 R6 G4 R2 G/16"),
    ("tartan_glengarry", "MacDonell of Glengarry", 2380,
     "B#2C4084 BLUE; R#DC0000 RED; K#101010 BLACK; G#005020 MOD GREEN; W#E0E0E0 WHITE;",
     "B/16 R2 B4 R6 B24 R2 K24 G24 R6 G4 R2 G8 W/2"),
)

TARTAN_SPECS: dict[str, TartanSpec] = {}


def _build() -> None:
    for cid, name, ref, pal_text, tc in _RECORDS:
        if cid in TARTAN_SPECS:
            raise ValueError(f"duplicate tartan id {cid!r}")
        sett = parse_sett(tc)
        pal = _palette(pal_text)
        missing = [c for c in sett.codes if c not in pal]
        if missing:
            raise ValueError(f"{cid}: palette lacks codes {missing}")
        pal = {c: pal[c] for c in sett.codes}
        design = TartanDesign(sett, tuple(pal.items()))
        note = (f"threadcount '{tc}' ({'symmetric' if sett.symmetric else 'asymmetric'}, "
                f"{sett.length} threads per repeat) and palette copied from the Scottish Register "
                f"of Tartans record '{name}' (ref {ref}, {REGISTER_URL.format(ref=ref)}) via "
                f"{SOURCE_REPO} {SOURCE_PATH}; woven as 2/2 twill, warp = weft, drawn with "
                f"{design.repeats:g} repeats across a 4:3 cloth.")
        TARTAN_SPECS[cid] = TartanSpec(cid, design, describe_sett(sett, pal), "exact", note,
                                       "tartan", dict(pal), name, ref, tc)


_build()
