"""The disclosure-risk report: report.html in every bundle and an internal report kept beside the bundles."""
