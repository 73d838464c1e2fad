"""Every bundled policy on local[2] Spark publishes what the local runner publishes (test-mode run key).

Records and `table` files byte for byte, k-anonymity's chosen node and suppressions, the steps'
evidence and the validation report; for DP tables the key sets, the noise scales, the kept rows after
contribution bounding and the true cell totals (internal report). Only OpenDP's noise differs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from tests.conftest import POLICIES, TPS, internal_dir

N = 3000
"Records per synthetic input: the demo's size (every bundled policy passes its gate on it)."
NOISY_KINDS = ("dp-table", "indices")


def _inputs(work: Path) -> tuple[dict[str, Path], dict[str, str]]:
    from release.demo import demo_inputs

    setup = demo_inputs(work, N, lambda _m: None)
    inputs = {k: Path(v) for k, v in setup["inputs"].items()}
    tps = TPS / "rbdc_uof_gender.csv"
    if tps.is_file():
        # The published TPS table is CSV; both runners read the same Parquet copy of what the CSV
        # reader reads from it.
        from release.io.readers import read_arrow

        pq.write_table(read_arrow(tps), work / "rbdc.parquet")
        inputs["published TPS table"] = work / "rbdc.parquet"
    else:
        inputs.pop("published TPS table", None)
    return inputs, dict(setup["options"])


def _kind(policy_path: Path, inputs: dict[str, Path]) -> str | None:
    from release.policy.loader import load_policy

    declared = set(load_policy(policy_path).input.columns)
    return next((k for k, p in inputs.items() if set(pq.read_schema(p).names) == declared), None)


@pytest.fixture(scope="module")
def demo_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], dict[str, str]]:
    return _inputs(tmp_path_factory.mktemp("spark-inputs"))


@pytest.fixture(scope="module")
def runs(spark: Any, demo_inputs: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both runners over every bundled policy, once for the module."""
    from release.engine import run_release
    from release.errors import BlockedError
    from release.spark.runner import run_release_spark

    base = tmp_path_factory.mktemp("spark-equivalence")
    inputs, options = demo_inputs
    out: dict[str, Any] = {}
    for pol in sorted(POLICIES.glob("*.yaml")):
        kind = _kind(pol, inputs)
        if kind is None:
            out[pol.stem] = None
            continue
        got = {}
        for name, fn in (("local", run_release), ("spark", run_release_spark)):
            opts = {**options, "ledger": str(base / f"ledger-{name}-{pol.stem}.sqlite")}
            try:
                got[name] = fn(pol, inputs[kind], base / f"out-{name}-{pol.stem}", options=opts, seed=11)
            except BlockedError as e:
                got[name] = e
        out[pol.stem] = got
    return out


def _policies() -> list[str]:
    return sorted(p.stem for p in POLICIES.glob("*.yaml"))


def _no_seconds(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _no_seconds(v) for k, v in x.items() if not k.endswith("seconds")}
    if isinstance(x, list):
        return [_no_seconds(v) for v in x]
    return x


@pytest.mark.parametrize("policy", _policies())
def test_spark_bundle_equals_local_bundle(runs: dict[str, Any], policy: str) -> None:
    got = runs[policy]
    if got is None:
        pytest.skip(f"{policy}: no input with its columns here (the TPS table is absent)")
    local, spark = got["local"], got["spark"]
    assert type(local) is type(spark), f"{policy}: local {type(local).__name__}, spark {type(spark).__name__}"
    if not hasattr(local, "bundle"):  # blocked by the gate in both runners: the same findings
        assert hasattr(local, "report"), f"{policy}: {local.render()}"
        assert _no_seconds(local.report["findings"]) == _no_seconds(spark.report["findings"])
        return
    lb, sb = local.bundle, spark.bundle
    ra, rb = json.loads((lb / "report.json").read_text()), json.loads((sb / "report.json").read_text())
    assert ra["verdict"] == rb["verdict"] == "pass"
    assert ra["validation"] == rb["validation"]
    assert _no_seconds(ra["steps"]) == _no_seconds(rb["steps"]), "steps' evidence (chosen node, suppressions...)"
    man_l, man_s = (json.loads((b / "manifest.json").read_text()) for b in (lb, sb))
    assert man_s["engine"] == "release-engine on Apache Spark" and man_s["spark"]["version"].startswith("4.")
    assert man_l["input_sha256"] == man_s["input_sha256"]
    noisy = set()
    from release.policy.loader import load_policy

    discovered = {c for o in load_policy(POLICIES / f"{policy}.yaml").outputs
                  if getattr(o, "discovers_keys", lambda: False)() for c in o.discover_columns()}
    for oa, ob in zip(ra["outputs"], rb["outputs"], strict=True):
        assert oa["files"] == ob["files"]
        if oa["kind"] in NOISY_KINDS:
            noisy.update(oa["files"])
            if oa["kind"] == "dp-table":
                assert oa["evidence"]["dp"] == ob["evidence"]["dp"], "noise scale, mechanism, key source"
        else:
            assert _no_seconds(oa["evidence"]) == _no_seconds(ob["evidence"])
            assert _no_seconds(oa["figures"]) == _no_seconds(ob["figures"])
    for f in sorted(set(man_l["files"]) | set(man_s["files"])):
        if f.endswith((".csv", ".parquet", ".geojson")) and f not in noisy:
            assert (lb / f).read_bytes() == (sb / f).read_bytes(), f"{policy}: {f} differs"
        elif f.endswith(".csv"):
            ka, kb = (pacsv.read_csv(b / f, convert_options=pacsv.ConvertOptions(strings_can_be_null=False))
                      for b in (lb, sb))
            keys = [c for c in ka.column_names if not pa.types.is_integer(ka.schema.field(c).type)
                    and not pa.types.is_floating(ka.schema.field(c).type) and c not in discovered]
            # Public keys: the same grid. Keys discovered by a noisy threshold differ with the noise.
            assert ({tuple(r.values()) for r in ka.select(keys).to_pylist()} ==
                    {tuple(r.values()) for r in kb.select(keys).to_pylist()}), f"{policy}: key set of {f} differs"
    ia, ib = (json.loads((internal_dir(b) / f"{b.name}.json").read_text()) if (internal_dir(b) / f"{b.name}.json")
              .is_file() else {} for b in (lb, sb))
    for name, oi in ia.get("outputs", {}).items():
        si = ib["outputs"][name]
        assert oi.get("bounding") == si.get("bounding"), f"{policy}: kept rows after bounding of {name} differ"
        if "discovery" in oi:
            # Discovered keys (and so the cells a true total covers) depend on the noisy threshold.
            assert ({c: d["values_in_data"] for c, d in oi["discovery"].items()} ==
                    {c: d["values_in_data"] for c, d in si["discovery"].items()})
        else:
            assert oi.get("true_total") == si.get("true_total"), f"{policy}: true total of {name} differs"


def test_step_secrets_come_from_the_driver(spark: Any, demo_inputs: Any, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Executors take the pseudonym key the driver has (their own environment is not the driver's), and a key
    the driver lacks fails the run as a usage error (exit 2), as in the local runner."""
    from release.engine import run_release
    from release.errors import UsageError
    from release.spark.runner import run_release_spark

    inputs, options = demo_inputs
    pol = POLICIES / "hate-crimes.yaml"
    # Set after the Spark workers started: only the shipped value can reach them.
    monkeypatch.setenv("RELEASE_PSEUDONYM_KEY", "a-key-the-workers-never-saw-0123456789abcdef")
    got = [fn(pol, inputs["crimes"], tmp_path / f"out-{i}", options=options, seed=3).bundle
           for i, fn in enumerate((run_release, run_release_spark))]
    stems = [f.name for f in got[0].iterdir() if f.suffix in (".csv", ".parquet")]
    assert stems and all((got[0] / s).read_bytes() == (got[1] / s).read_bytes() for s in stems)
    monkeypatch.delenv("RELEASE_PSEUDONYM_KEY")
    with pytest.raises(UsageError, match="RELEASE_PSEUDONYM_KEY is not set"):
        run_release_spark(pol, inputs["crimes"], tmp_path / "out-missing", options=options, seed=3)
    assert not (tmp_path / "out-missing").exists()


def test_executors_read_the_files_the_driver_read(spark: Any, demo_inputs: Any, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The network, address points and area layer reach the executors as the copies the driver read and
    hashed (SparkContext.addFile), not through the paths given: with those paths gone once the driver has
    read them, the Spark run still publishes what the local runner publishes. A copy whose sha256 is not the
    one the driver recorded stops the run as an input error naming the file (exit 2), nothing published."""
    import shutil

    from release import registry
    from release.engine import run_release
    from release.errors import InputError
    from release.spark import files as F
    from release.spark.runner import run_release_spark

    inputs, options = demo_inputs
    given = tmp_path / "given"
    shutil.copytree(Path(options["network"]).parent, given)
    opts = {k: str(given / Path(v).name) if Path(v).parent == Path(options["network"]).parent else v
            for k, v in options.items()}
    pol = POLICIES / "crime-indicators.yaml"
    local = run_release(pol, inputs["crimes"], tmp_path / "local", options={**opts, "ledger": str(tmp_path / "l.db")},
                        seed=5).bundle
    gone: list[str] = []

    def take_the_files_away(policy: Any, policy_path: Any, options: dict[str, Any]) -> None:
        # Runs after the approval and geomask preflight hooks: the driver has its copies by now.
        given.rename(tmp_path / "moved")
        gone.append("before the row stage")

    def give_them_back(policy: Any, ctx: Any) -> None:
        # After every step ran on the executors; the assessment names the verifier's files by path.
        (tmp_path / "moved").rename(given)
        gone.append("after the steps")

    monkeypatch.setattr(registry, "PRE_RUN", [*registry.PRE_RUN, take_the_files_away])
    monkeypatch.setattr(registry, "PRE_OUTPUT", [give_them_back, *registry.PRE_OUTPUT])
    sp = run_release_spark(pol, inputs["crimes"], tmp_path / "spark",
                           options={**opts, "ledger": str(tmp_path / "s.db")}, seed=5).bundle
    assert gone == ["before the row stage", "after the steps"]
    monkeypatch.setattr(registry, "PRE_RUN", [h for h in registry.PRE_RUN if h is not take_the_files_away])
    monkeypatch.setattr(registry, "PRE_OUTPUT", [h for h in registry.PRE_OUTPUT if h is not give_them_back])
    ra, rb = (json.loads((b / "report.json").read_text()) for b in (local, sp))
    assert _no_seconds(ra["steps"]) == _no_seconds(rb["steps"])
    assert any(s["type"] == "geomask-snap" for s in rb["steps"])
    man_l, man_s = (json.loads((b / "manifest.json").read_text()) for b in (local, sp))
    assert man_l["network"] == man_s["network"] and man_s["network"]["addresses"]["file"] == "addresses.csv"
    files = [f for f in man_l["files"] if f.endswith((".csv", ".geojson"))]
    assert files and all((local / f).read_bytes() == (sp / f).read_bytes() for f in files)

    real = F.ship

    def damaged(spark_: Any, trusted: Any) -> Any:
        got = real(spark_, trusted)
        net = got.files["network"]
        # The executor receives the driver's bytes; the recorded hash is another file's.
        return F.ShippedFiles({**got.files, "network": F.Shipped(net.name, net.kind, net.file, net.staged,
                                                                  "0" * 64)})

    monkeypatch.setattr(F, "ship", damaged)
    with pytest.raises(InputError, match=r"network file nodes\.csv \(network\): the copy this executor received"
                                         r" has sha256 [0-9a-f]{64}, not 0{64}"):
        run_release_spark(pol, inputs["crimes"], tmp_path / "spark-bad",
                          options={**opts, "ledger": str(tmp_path / "b.db")}, seed=5)
    assert not (tmp_path / "spark-bad").exists()
