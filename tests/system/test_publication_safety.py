"""Crash-safe publication (issue 11, item 7): everything that can fail happens before the rename; ids never clash."""

from __future__ import annotations

import errno
from datetime import UTC, datetime
from pathlib import Path

import pytest

from release import engine, registry
from release.engine import run_release
from release.errors import UsageError
from tests.system.mini import mini_policy, mini_records, write_policy


@pytest.fixture
def mini(tmp_path: Path) -> tuple[Path, Path, Path]:
    pol = write_policy(tmp_path / "mini.yaml", mini_policy())
    inp = tmp_path / "in.csv"
    mini_records(120).to_csv(inp, index=False)
    return pol, inp, tmp_path / "out"


def bundles(out: Path) -> list[Path]:
    return [b for d in out.iterdir() for b in d.iterdir()] if out.exists() else []


def test_disk_full_while_writing_the_internal_report_publishes_nothing(mini: tuple[Path, Path, Path],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pol, inp, out = mini

    def full(*_a: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(registry, "PRE_PUBLISH", [full, *registry.PRE_PUBLISH])
    with pytest.raises(UsageError, match="No space left on device.*nothing was published"):
        run_release(pol, inp, out, seed=1)
    assert bundles(out) == [] and not any(p.name.startswith(".staging") for p in out.rglob("*"))


def test_internal_folder_that_cannot_be_made_publishes_nothing(mini: tuple[Path, Path, Path]) -> None:
    pol, inp, out = mini
    (out.parent / "out.internal").write_text("a file where the internal folder should be")
    with pytest.raises(UsageError, match="cannot write internal diagnostics"):
        run_release(pol, inp, out, seed=1)
    assert bundles(out) == []


def test_internal_folder_inside_the_publication_folder_is_refused(mini: tuple[Path, Path, Path]) -> None:
    pol, inp, out = mini
    cfg = pol.parent / "inside.toml"
    cfg.write_text('[approval]\nrequired = false\n[internal]\nfolder = "out/internal"\n')
    with pytest.raises(UsageError, match="inside the publication folder"):
        run_release(pol, inp, out, seed=1, options={"config": str(cfg)})
    assert not out.exists()


def test_a_release_id_that_exists_gets_a_new_one(mini: tuple[Path, Path, Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    pol, inp, out = mini
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    tokens = iter(["deadbeef", "deadbeef", "cafebabe"])
    real = engine.secrets.token_hex
    monkeypatch.setattr(engine.secrets, "token_hex", lambda n: next(tokens, None) or real(n))
    taken = out / "mini" / "20261201T120000Z-deadbeef"
    taken.mkdir(parents=True)
    res = run_release(pol, inp, out, seed=1, now=now)
    assert res.bundle is not None and res.bundle.name == "20261201T120000Z-cafebabe"
    assert list(taken.iterdir()) == []
