"""The metric projection every geomask distance is computed in (never degrees)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pyproj import CRS, Transformer
from pyproj.aoi import AreaOfInterest as UtmArea
from pyproj.database import query_utm_crs_info
from pyproj.exceptions import CRSError
from pyproj.transformer import AreaOfInterest, TransformerGroup

from release.errors import PolicyError

if TYPE_CHECKING:
    from release.policy.models import Jurisdiction


@dataclass(frozen=True)
class Projector:
    """WGS84 <-> one metric CRS, built once and applied to whole arrays."""

    crs: CRS
    forward: Transformer
    inverse: Transformer

    @property
    def name(self) -> str:
        epsg = self.crs.to_epsg()
        return f"EPSG:{epsg}" if epsg else self.crs.name

    def to_metric(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _apply(self.forward, lon, lat)

    def to_degrees(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _apply(self.inverse, x, y)


def _apply(t: Transformer, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    n = len(a)
    if n == 0:
        return np.zeros(0), np.zeros(0)
    if n == 1:
        # pyproj takes a one-element array for a scalar point (deprecated in numpy): pass two.
        a, b = np.repeat(a, 2), np.repeat(b, 2)
    x, y = t.transform(a, b)
    return np.asarray(x, dtype=np.float64)[:n], np.asarray(y, dtype=np.float64)[:n]


_DATUM_STEPS = ("proj=helmert", "proj=cart", "gridshift", "proj=molodensky", "proj=deformation")


def _operations(crs: CRS, bbox: tuple[float, float, float, float]) -> tuple[Transformer, Transformer]:
    """WGS84 <-> crs by the projection alone when EPSG offers it for the area, else the best operation.

    A datum shift (e.g. WGS84 -> NAD83(CSRS), a Helmert step of about 1 m) moves every point of
    a city alike: distances between projected points change by millimetres, while the shift
    costs 4x the time of the projection itself. Both directions use the same operation, so a
    displaced point converted back lands exactly where it was placed.
    """
    aoi = AreaOfInterest(*bbox)
    fwd_ops = TransformerGroup("EPSG:4326", crs, always_xy=True, area_of_interest=aoi).transformers
    inv_ops = TransformerGroup(crs, "EPSG:4326", always_xy=True, area_of_interest=aoi).transformers

    def plain(ops: list[Transformer]) -> Transformer | None:
        return next((t for t in ops if not any(k in t.definition for k in _DATUM_STEPS)), None)

    fwd, inv = plain(fwd_ops), plain(inv_ops)
    if fwd is None or inv is None:
        return (Transformer.from_crs("EPSG:4326", crs, always_xy=True, area_of_interest=aoi),
                Transformer.from_crs(crs, "EPSG:4326", always_xy=True, area_of_interest=aoi))
    return fwd, inv


_CACHE: dict[tuple[int | None, tuple[float, ...]], Projector] = {}


def projector_for(jurisdiction: Jurisdiction) -> Projector:
    """The policy's EPSG code when given, else the UTM zone covering the jurisdiction's bbox."""
    key = (jurisdiction.crs, tuple(jurisdiction.bbox))
    if key in _CACHE:
        return _CACHE[key]
    if jurisdiction.crs is not None:
        try:
            crs = CRS.from_epsg(jurisdiction.crs)
        except CRSError as e:
            raise PolicyError(f"jurisdiction.crs: EPSG:{jurisdiction.crs} cannot be built as a coordinate"
                              f" reference system ({str(e).splitlines()[0]})") from None
        if not crs.is_projected:
            raise PolicyError(f"jurisdiction.crs: EPSG:{jurisdiction.crs} is not a projected (metric) CRS;"
                              " geomask distances are never computed in degrees")
        unit = crs.axis_info[0].unit_name if crs.axis_info else "metre"
        if unit not in ("metre", "meter"):
            raise PolicyError(f"jurisdiction.crs: EPSG:{jurisdiction.crs} is in {unit}, not metres")
    else:
        min_lon, min_lat, max_lon, max_lat = jurisdiction.bbox
        infos = query_utm_crs_info(datum_name="WGS 84",
                                   area_of_interest=UtmArea(min_lon, min_lat, max_lon, max_lat))
        # Several zones may touch a wide bbox: the one holding its centre distorts least.
        centre = (min_lon + max_lon) / 2
        zone = int((centre + 180) // 6) + 1
        south = (min_lat + max_lat) / 2 < 0
        code = (32700 if south else 32600) + zone
        pick = next((i for i in infos if i.code == str(code)), None)
        crs = CRS.from_epsg(int(pick.code) if pick else code)
    fwd, inv = _operations(crs, jurisdiction.bbox)
    p = Projector(crs=crs, forward=fwd, inverse=inv)
    _CACHE[key] = p
    return p
