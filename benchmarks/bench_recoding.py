"""Recoding benchmark: local recoding vs full-domain generalization vs anonypy's Mondrian (GCP, DM, time)."""

from __future__ import annotations

from benchmarks.bench_anonymize import recoding_main


def main() -> None:
    recoding_main()


if __name__ == "__main__":
    main()
