"""Synthetic internal records and a demo street network (seeded; test and demo data only)."""

from release.synth.enforcement import synth_enforcement
from release.synth.network import City, demo_city
from release.synth.records import synth_crimes, synth_use_of_force, write_records

__all__ = ["City", "demo_city", "synth_enforcement", "synth_crimes", "synth_use_of_force", "write_records"]
