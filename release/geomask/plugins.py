"""Registers the geomask steps and the location assessor (one PLUGINS line for the whole package)."""

from release.geomask import area, assess, donut, hooks, snap, withhold

__all__ = ["area", "assess", "donut", "hooks", "snap", "withhold"]
