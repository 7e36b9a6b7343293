"""Great Britain map geometry, shipped in dashboard/data (the browser has no internet: no tiles, no
CDN). The map is drawn as plain filled shapes on a lon/lat plane, so Plotly needs no base-map
downloads either."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
ATTRIBUTION = ("Supported by National Energy SO Open Data. Contains NESO data licensed under the NESO Open Data "
               "Licence. Coastline: Natural Earth (public domain).")
# Degrees of latitude are longer than degrees of longitude this far north: draw with this aspect.
MID_LAT = 54.5
ASPECT = 1 / math.cos(math.radians(MID_LAT))
KM_PER_DEG = 111.32


@dataclass(frozen=True)
class AreaShape:
    id: int
    name: str
    dno: str
    csp: str
    lon: tuple[float | None, ...]  # rings joined by None, as Plotly draws them
    lat: tuple[float | None, ...]
    km2: float


def _ring_km2(ring: list[list[float]]) -> float:
    """Shoelace area of a lon/lat ring on a local equirectangular projection, km^2."""
    lat0 = math.radians(sum(p[1] for p in ring) / len(ring))
    kx, ky = KM_PER_DEG * math.cos(lat0), KM_PER_DEG
    s = 0.0
    for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1], strict=True):
        s += (x1 * kx) * (y2 * ky) - (x2 * kx) * (y1 * ky)
    return s / 2


def _rings(geometry: dict) -> list[list[list[float]]]:
    polys = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
    return [ring for poly in polys for ring in poly]


def _joined(rings: list[list[list[float]]]) -> tuple[tuple[float | None, ...], tuple[float | None, ...]]:
    """Rings as Plotly draws them, at 0.001 degrees (about 100 m: finer than the screen shows),
    dropping points that rounding makes repeat; neighbours share edges, so they still meet."""
    lon: list[float | None] = []
    lat: list[float | None] = []
    for ring in rings:
        last = None
        for x, y in ring:
            p = (round(x, 3), round(y, 3))
            if p != last:
                lon.append(p[0])
                lat.append(p[1])
                last = p
        lon.append(None)
        lat.append(None)
    return tuple(lon), tuple(lat)


@cache
def areas() -> tuple[AreaShape, ...]:
    """The 14 DNO licence areas, by id."""
    fc = json.loads((DATA / "gb-dno-areas.geojson").read_text())
    out = []
    for f in fc["features"]:
        p = f["properties"]
        rings = _rings(f["geometry"])
        # Exterior rings are anticlockwise (positive), holes clockwise (negative): the sum is the area.
        km2 = sum(_ring_km2(r) for r in rings)
        lon, lat = _joined(rings)
        out.append(AreaShape(id=int(p["id"]), name=p["name"], dno=p["dno"], csp=p["csp_region"], lon=lon, lat=lat,
                             km2=km2))
    return tuple(sorted(out, key=lambda a: a.id))


@cache
def outline() -> tuple[tuple[float | None, ...], tuple[float | None, ...]]:
    """The coastline of Great Britain (drawn as a stroke over the areas)."""
    fc = json.loads((DATA / "gb-outline.geojson").read_text())
    return _joined([r for f in fc["features"] for r in _rings(f["geometry"])])
