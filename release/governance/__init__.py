"""Governance: signed policy approval, the approval configuration, gate output formats (JUnit, annotations)."""
