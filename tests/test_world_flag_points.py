"""Every world flag, sampled at points known from its published specification.

Each point is (x, y, colour) with x, y as fractions of the flag's length (from the hoist) and height
(from the top), chosen from the law / construction sheet cited in the flag's note -- not read back
from specs.py -- so a drawing that is flipped, shifted or mis-sized fails. Simplified coats of arms
are only checked where the specification places them. Union Flag points are derived from its
construction (canton 60 x 30 units: St Andrew's saltire 6 units wide, the counterchanged red 2 units
on the side that leaves the broad white uppermost in the hoist half, St George 6 units on 10).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pytest

from synth.world import specs as S
from synth.world.render import hex_to_rgb, rasterize

W, RED_UJ, BLUE_UJ = "#FFFFFF", "#C8102E", "#012169"
NOT = "not:"  # "not:#RRGGBB": any colour but this one (an emblem covering the field)


def _union_flag_points(x0: float, y0: float, w: float, h: float) -> list[tuple[float, float, str]]:
    """Canton of (x0, y0, w, h) in flag fractions; returns points in flag fractions."""
    nx, ny = 30 / math.hypot(60, 30), 60 / math.hypot(60, 30)  # unit normal to a diagonal, in canton units

    def at(cx: float, cy: float) -> tuple[float, float]:  # canton units (60 x 30) -> flag fractions
        return x0 + w * cx / 60, y0 + h * cy / 30

    pts = []
    # upper hoist arm (on the diagonal from the top-left corner): red just below, broad white above
    pts += [(*at(15 - nx, 7.5 + ny), RED_UJ), (*at(15 + nx, 7.5 - ny), W), (*at(15 + 2.5 * nx, 7.5 - 2.5 * ny), W)]
    # lower hoist arm (diagonal from the bottom-left corner): red below, broad white above
    pts += [(*at(15 + nx, 22.5 + ny), RED_UJ), (*at(15 - nx, 22.5 - ny), W)]
    # fly half is the half-turn: red above the diagonals, broad white below
    pts += [(*at(45 - nx, 7.5 - ny), RED_UJ), (*at(45 + nx, 7.5 + ny), W)]
    pts += [(*at(45 + nx, 22.5 - ny), RED_UJ), (*at(45 - nx, 22.5 + ny), W)]
    # St George's cross (red 6 on white 10) and the blue field between the arms
    pts += [(*at(30, 15), RED_UJ), (*at(5, 15), RED_UJ), (*at(5, 11), W), (*at(30, 2), RED_UJ), (*at(26, 2), W),
            (*at(2, 6), BLUE_UJ), (*at(58, 24), BLUE_UJ)]
    return pts


THIRDS = (1 / 6, 0.5, 5 / 6)


def _v3(a, b, c, y=0.5):
    return [(THIRDS[0], y, a), (THIRDS[1], y, b), (THIRDS[2], y, c)]


def _h3(a, b, c, x=0.5):
    return [(x, THIRDS[0], a), (x, THIRDS[1], b), (x, THIRDS[2], c)]


POINTS: dict[str, list[tuple[float, float, str]]] = {
    # vertical tricolours, equal bands
    "flag_chad": _v3("#00205B", "#FFCD00", "#C8102E"),
    "flag_romania": _v3("#002B7F", "#FCD116", "#CE1126"),
    "flag_ireland": _v3("#169B62", W, "#FF883E"),
    "flag_cote_divoire": _v3("#F77F00", W, "#009E60"),
    "flag_italy": _v3("#009246", "#F1F2F1", "#CE2B37"),
    "flag_mali": _v3("#14B53A", "#FCD116", "#CE1126"),
    "flag_guinea": _v3("#CE1126", "#FCD116", "#009460"),
    "flag_nigeria": _v3("#008751", W, "#008751"),
    "flag_moldova": _v3("#0046AE", "#FFD200", "#CC092F", y=0.1) + [(0.5, 0.5, NOT + "#FFD200")],  # arms centred
    "flag_mexico": _v3("#006847", W, "#CE1126", y=0.1) + [(0.5, 0.45, NOT + W)],  # emblem centred
    # Andorra: bands 8:9:8, so 0.33 of the length is already yellow (equal thirds would be blue)
    "flag_andorra": [(0.1, 0.5, "#10069F"), (0.33, 0.1, "#FEDD00"), (0.5, 0.1, "#FEDD00"), (0.67, 0.1, "#FEDD00"),
                     (0.9, 0.5, "#D50032"), (0.47, 0.4, NOT + "#FEDD00")],
    # stars centred in the middle band
    "flag_senegal": _v3("#00853F", "#FDEF42", "#E31B23", y=0.1) + [(0.5, 0.5, "#00853F")],
    "flag_cameroon": _v3("#007A5E", "#CE1126", "#FCD116", y=0.1) + [(0.5, 0.5, "#FCD116")],
    # two bands
    "flag_indonesia": [(0.5, 0.25, "#FF0000"), (0.5, 0.75, W)],
    "flag_monaco": [(0.5, 0.25, "#CE1126"), (0.5, 0.75, W)],
    "flag_poland": [(0.5, 0.25, W), (0.5, 0.75, "#DC143C")],
    # horizontal tricolours, equal bands
    "flag_netherlands": _h3("#AE1C28", W, "#21468B"),
    "flag_luxembourg": _h3("#EF3340", W, "#00A3E0"),
    "flag_russia": _h3(W, "#0039A6", "#D52B1E"),
    "flag_yemen": _h3("#CE1126", W, "#000000"),
    "flag_bolivia": _h3("#DA291C", "#F4E400", "#007A33"),
    "flag_lithuania": _h3("#FDB913", "#006A44", "#C1272D"),
    "flag_austria": _h3("#C8102E", W, "#C8102E"),
    "flag_iraq": _h3("#CE1126", W, "#000000", x=0.05),
    "flag_egypt": _h3("#CE1126", W, "#000000", x=0.1) + [(0.5, 0.5, "#C09300")],  # eagle centred
    "flag_syria": _h3("#CE1126", W, "#000000", x=0.5) + [(0.35, 0.51, "#007A3D"), (0.65, 0.51, "#007A3D")],
    "flag_niger": _h3("#E05206", W, "#0DB02B", x=0.1) + [(0.5, 0.5, "#E05206")],
    # India: wheel of diameter 3/4 of the white band: rim at radius 0.125 of the height
    "flag_india": _h3("#FF9933", W, "#138808", x=0.1) + [(0.5, 0.5, "#000080"), (0.5, 0.5 - 0.119, "#000080"),
                                                         (0.5, 0.5 - 0.14, W)],
    "flag_venezuela": _h3("#FFCC00", "#00247D", "#CF142B", x=0.05),
    "flag_slovakia": _h3(W, "#0B4EA2", "#EE1C25", x=0.9) + [(1 / 3, 0.5, NOT + "#0B4EA2")],  # arms in the hoist half
    "flag_slovenia": _h3(W, "#005DA4", "#ED1C24", x=0.9) + [(0.25, 0.25, NOT + W)],  # arms in the upper hoist
    "flag_myanmar": _h3("#FECB00", "#34B233", "#EA2839", x=0.05) + [(0.5, 0.5, W)],
    "flag_honduras": _h3("#00BCE4", W, "#00BCE4", x=0.1) + [(0.5, 0.5, "#00BCE4")],
    "flag_nicaragua": _h3("#0067C6", W, "#0067C6", x=0.1) + [(0.5, 0.5, NOT + W)],
    "flag_el_salvador": _h3("#0F47AF", W, "#0F47AF", x=0.1) + [(0.5, 0.5, NOT + W)],
    # Colombia / Ecuador: yellow half, blue and red quarters (0.45 is still yellow)
    "flag_colombia": [(0.5, 0.25, "#FCD116"), (0.5, 0.45, "#FCD116"), (0.5, 0.625, "#003893"), (0.5, 0.875, "#CE1126")],
    "flag_ecuador": [(0.1, 0.25, "#FFDD00"), (0.1, 0.45, "#FFDD00"), (0.1, 0.625, "#034EA2"), (0.1, 0.875, "#ED1C24")],
    # Latvia 2:1:2
    "flag_latvia": [(0.5, 0.1, "#9E3039"), (0.5, 0.3, "#9E3039"), (0.5, 0.5, W), (0.5, 0.7, "#9E3039")],
    # Ghana: the black star fills the gold band (centre 0.5 of the height), none of it in the red
    "flag_ghana": [(0.1, 1 / 6, "#CE1126"), (0.5, 0.30, "#CE1126"), (0.1, 0.5, "#FCD116"), (0.5, 0.52, "#000000"),
                   (0.5, 0.40, "#000000"), (0.1, 5 / 6, "#006B3F")],
    # Nordic crosses: (length parts) x (height parts) from each flag act
    "flag_norway": [(0.1, 0.1, "#BA0C2F"), (8 / 22, 0.1, "#00205B"), (6.5 / 22, 0.1, W), (0.9, 8 / 16, "#00205B"),
                    (0.9, 6.5 / 16, W), (0.9, 0.9, "#BA0C2F")],
    "flag_iceland": [(0.1, 0.1, "#02529C"), (9 / 25, 0.1, "#DC1E35"), (7.5 / 25, 0.1, W), (0.9, 9 / 18, "#DC1E35"),
                     (0.9, 0.9, "#02529C")],
    "flag_faroe_islands": [(0.1, 0.1, W), (6.5 / 22, 0.1, "#005EB8"), (8 / 22, 0.1, "#EF3340"), (0.9, 8 / 16, "#EF3340")],
    "flag_denmark": [(0.1, 0.1, "#C8102E"), (14 / 37, 0.1, W), (0.9, 14 / 28, W), (0.9, 0.9, "#C8102E")],
    "flag_sweden": [(0.1, 0.1, "#006AA7"), (6 / 16, 0.1, "#FECC02"), (0.9, 5 / 10, "#FECC02"), (0.9, 0.9, "#006AA7")],
    "flag_aland": [(0.1, 0.1, "#0064AE"), (8.5 / 26, 0.1, "#FFD300"), (10.5 / 26, 0.1, "#DA0E15"),
                   (0.9, 8.5 / 17, "#DA0E15")],
    "flag_orkney": [(0.1, 0.1, "#0065BD"), (6.5 / 22, 0.1, "#FFCD00"), (8 / 22, 0.1, "#C8102E")],
    "flag_finland": [(0.1, 0.1, W), (6.5 / 18, 0.1, "#002F6C"), (0.9, 5.5 / 11, "#002F6C"), (0.9, 0.9, W)],
    # Switzerland: 32-unit square, arms 6 wide from 6 to 26
    "flag_switzerland": [(0.1, 0.1, "#DA291C"), (0.5, 0.5, W), (7 / 32, 0.5, W), (5 / 32, 0.5, "#DA291C"),
                         (0.5, 7 / 32, W), (11 / 32, 11 / 32, "#DA291C")],
    # discs
    "flag_japan": [(0.5, 0.5, "#BC002D"), (0.05, 0.05, W), (0.5, 0.21, "#BC002D"), (0.5, 0.19, W)],
    "flag_bangladesh": [(0.27, 0.5, "#F42A41"), (0.68, 0.5, "#006A4E"), (0.05, 0.05, "#006A4E")],
    "flag_palau": [(0.4375, 0.5, "#FFDE00"), (0.24, 0.5, "#4AADD6"), (0.64, 0.5, "#4AADD6"), (0.9, 0.5, "#4AADD6")],
    # serrated hoists: a tip of the first point and the valley below it
    "flag_qatar": [(0.9, 0.5, "#8A1538"), (0.1, 0.5, W), (9.2 / 28, 0.5 / 9, W), (8.0 / 28, 1 / 9, "#8A1538")],
    "flag_bahrain": [(0.9, 0.5, "#CE1126"), (0.1, 0.5, W), (1.4 / 5, 0.1, W), (1.2 / 5, 0.2, "#CE1126")],
    # arms on two bands
    "flag_haiti": [(0.1, 0.25, "#00209F"), (0.1, 0.75, "#D21034"), (0.4, 0.36, W)],
    "flag_liechtenstein": [(0.9, 0.25, "#002B7F"), (0.9, 0.75, "#CE1126"), (0.22, 0.3, "#FFD83D")],
    # Norfolk Island: bands 7:9:7 (0.32 is white, equal thirds would be green), pine in the centre
    "flag_norfolk_island": [(0.05, 0.5, "#007A33"), (0.32, 0.1, W), (0.68, 0.1, W), (0.95, 0.5, "#007A33"),
                            (0.5, 0.5, "#007A33")],
    # lone stars
    "flag_chile": [(1 / 6, 0.1, "#0039A6"), (1 / 6, 0.25, W), (0.5, 0.25, W), (1 / 6, 0.75, "#D52B1E")],
    "flag_texas": [(1 / 6, 0.9, "#002868"), (1 / 6, 0.5, W), (0.5, 0.25, W), (0.5, 0.75, "#BF0A30")],
    # Cuba / Puerto Rico: five equal stripes, equilateral triangle at the hoist, star at its centroid
    "flag_cuba": [(0.9, 0.1, "#002A8F"), (0.9, 0.3, W), (0.9, 0.5, "#002A8F"), (0.42, 0.5, "#CF142B"),
                  (0.45, 0.5, "#002A8F"), (math.sqrt(3) / 12, 0.5, W)],
    "flag_puerto_rico": [(0.9, 0.1, "#ED0000"), (0.9, 0.3, W), (0.56, 0.5, "#0050F0"), (0.6, 0.5, "#ED0000"),
                         (math.sqrt(3) / 9, 0.5, W)],
    # saltires and crosses
    "flag_scotland": [(0.5, 0.1, "#005EB8"), (0.5, 0.5, W), (0.05, 0.05, W), (0.95, 0.05, W), (0.1, 0.5, "#005EB8")],
    "flag_tenerife": [(0.5, 0.1, "#003399"), (0.5, 0.5, W), (0.05, 0.05, W), (0.1, 0.5, "#003399")],
    "flag_england": [(0.1, 0.1, W), (0.5, 0.5, "#CE1124"), (0.5, 0.05, "#CE1124"), (0.05, 0.5, "#CE1124"),
                     (0.43, 0.1, W)],
    "flag_georgia": [(0.05, 0.05, W), (0.5, 0.5, "#FF0000"), (0.5, 0.05, "#FF0000"), (0.65 / 3, 0.2, "#FF0000"),
                     (0.65 / 3, 0.35, W)],
    # Australia: Flags Act 1953, Tables A and B (fractions of the hoist; the fly half is x in [0.5, 1])
    "flag_australia": _union_flag_points(0, 0, 0.5, 0.5) + [
        (0.25, 0.75, W),                                  # Commonwealth Star, centre of the lower hoist
        (0.75, 5 / 6, W), (0.75, 1 / 6, W),               # Alpha, Gamma: fly middle line, 1/6 from the edges
        ((1.5 - 0.25) / 2, 0.5 - 1 / 16, W),              # Beta
        ((1.5 + 2 / 9) / 2, 0.5 - 1 / 16 - 1 / 15, W),    # Delta
        ((1.5 + 1 / 10) / 2, 0.5 + 1 / 24, W),            # Epsilon
        (0.75, 0.5, BLUE_UJ), (0.95, 0.95, BLUE_UJ), (0.25, 0.95, BLUE_UJ)],
    # New Zealand: same canton; stars on the fly (positions approximate in specs.py: only the field)
    "flag_new_zealand": _union_flag_points(0, 0, 0.5, 0.5) + [(0.95, 0.95, BLUE_UJ), (0.25, 0.75, BLUE_UJ),
                                                              (0.75, 0.5, BLUE_UJ)],
}

FLAGS = sorted(k for k, v in S.SPECS.items() if v.world_group != "tartan")


@lru_cache(maxsize=4)
def _raster(cid: str) -> np.ndarray:
    d = S.SPECS[cid].design
    width = 600
    return rasterize(d, width, max(1, round(width / d.aspect)), supersample=1)


def _colour(img: np.ndarray, fx: float, fy: float) -> tuple[int, int, int]:
    h, w = img.shape[:2]
    return tuple(int(round(v * 255)) for v in img[min(h - 1, int(fy * h)), min(w - 1, int(fx * w))])


def test_every_flag_has_points():
    assert set(POINTS) == set(FLAGS) and len(FLAGS) == 66


@pytest.mark.parametrize("cid", FLAGS)
def test_flag_drawn_as_specified(cid):
    img = _raster(cid)
    for fx, fy, want in POINTS[cid]:
        got = _colour(img, fx, fy)
        if want.startswith(NOT):
            assert got != hex_to_rgb(want[len(NOT):]), (cid, fx, fy, got)
        else:
            assert got == hex_to_rgb(want), (cid, round(fx, 4), round(fy, 4), got, want)


def test_a_flipped_union_flag_fails():
    """The check is sensitive: mirroring the canton top-to-bottom (the old drawing's error) breaks it."""
    img = _raster("flag_australia")[::-1]  # the whole flag upside down
    canton = _union_flag_points(0, 0.5, 0.5, 0.5)
    bad = [p for p in canton[:9] if _colour(img, p[0], p[1]) != hex_to_rgb(p[2])]
    assert bad  # the counterchange no longer matches
