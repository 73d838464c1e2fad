"""The Spark runner: the same policy, steps and bundle as the local runner, with records in Spark partitions.

session.py builds the session from `[engine]`; source.py reads Parquet and catalog tables; stages.py runs
the engine's row functions (mapInArrow) and accumulators (partial states merged on the driver); dp.py
bounds contributions and counts the DP key grid with Spark group-bys; runner.py runs a whole release.
"""
