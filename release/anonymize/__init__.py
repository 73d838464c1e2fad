"""anonymize."""
