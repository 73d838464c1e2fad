"""Small-cell protection for published tables: primary and secondary suppression and the LP audit."""
