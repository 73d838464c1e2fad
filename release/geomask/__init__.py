"""Geomasking: street networks, snap/donut/area masks, withheld locations and their evidence."""
