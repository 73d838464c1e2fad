"""Registers governance with the engine: approval before a run, in the manifest, in `release check`, in the demo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from release import demo, registry
from release.errors import ReleaseError
from release.governance.approval import approve, pre_output, pre_run
from release.governance.config import load_approval_config
from release.governance.gate import approval_bundle_check
from release.governance.keys import Keyring, generate, load_private

DEMO_APPROVER = "Demo Privacy Office (demo key)"


def demo_setup(work: Path, policies: list[Path], options: dict[str, Any]) -> None:
    """Make a demo key and keyring in the work dir, sign the bundled policies there, require approval."""
    keydir = work / "approval"
    if not (keydir / "approval-key.pem").exists():
        generate(keydir)
    key = keydir / "approval-key.pem"
    keyring = keydir / "keyring.json"
    Keyring.add(keyring, load_private(key).public_key(), DEMO_APPROVER)
    config = work / "release.toml"
    config.write_text("# Written by `release demo`: runs need a policy signed by the demo key.\n"
                      "[approval]\nrequired = true\nkeyring = \"approval/keyring.json\"\n"
                      "approvals = \"approval/approvals\"\n", encoding="utf-8")
    cfg = load_approval_config({"config": str(config)})
    for pol in policies:
        try:
            approve(pol, key, DEMO_APPROVER, cfg=cfg)
        except ReleaseError:
            # A policy that does not validate is not signed; its run reports the policy error itself.
            continue
    options["config"] = str(config)


# First of all pre-run hooks: an unapproved policy must not even have its network or ledger opened.
registry.add_hook(registry.PRE_RUN, pre_run, first=True)
registry.add_hook(registry.PRE_OUTPUT, pre_output)
registry.add_hook(registry.BUNDLE_CHECKS, approval_bundle_check)
registry.add_hook(demo.DEMO_SETUP, demo_setup)
