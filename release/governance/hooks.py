"""Registers governance with the engine: approval before a run, in the manifest, in `release check`, in the demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from release import demo, registry
from release.errors import ReleaseError
from release.governance.approval import approve, pre_output, pre_run
from release.governance.config import load_approval_config
from release.governance.keys import Keyring, generate, load_private

DEMO_APPROVER = "Demo Privacy Office (demo key)"
DEMO_RELEASE_KEY = "Demo deployment release key"


DEMO_FILES = ("network", "addresses", "streets")
DEMO_LAYERS = ("neighbourhoods", "divisions")


def demo_setup(work: Path, policies: list[Path], options: dict[str, Any]) -> None:
    """The demo deployment in its work folder: keys at documented paths, release.toml, signed policies.

    keys/approver.pem signs the policies (the privacy office's key), keys/release.pem signs the
    bundles (the deployment's key); their public halves sit beside them as *.pub.pem and in the
    two keyrings release.toml names.
    """
    keys = work / "keys"
    for kind in ("approver", "release"):
        if not (keys / f"{kind}.pem").exists():
            generate(keys / f"{kind}.pem", kind=kind)
    approver = keys / "approver.pem"
    Keyring.add(keys / "approvers.json", load_private(approver).public_key(), DEMO_APPROVER, "approver")
    Keyring.add(keys / "release-keyring.json", load_private(keys / "release.pem").public_key(), DEMO_RELEASE_KEY,
                "release")
    files = [f"{k} = {json.dumps(str(Path(options[k]).resolve()))}" for k in DEMO_FILES if options.get(k)]
    layers = [f"{k} = {json.dumps(str(Path(options[k]).resolve()))}" for k in DEMO_LAYERS if options.get(k)]
    config = work / "release.toml"
    config.write_text("# Written by `release demo`: the demo deployment (keys, trusted files, internal folder).\n"
                      "[approval]\nrequired = true\nkeyring = \"keys/approvers.json\"\napprovals = \"approvals\"\n\n"
                      "[signing]\nkey = \"keys/release.pem\"\nkeyring = \"keys/release-keyring.json\"\n\n"
                      "[internal]\nfolder = \"internal\"\n\n"
                      "[files]\n" + "".join(f + "\n" for f in files) +
                      "\n[files.layers]\n" + "".join(f + "\n" for f in layers), encoding="utf-8")
    for k in (*DEMO_FILES, *DEMO_LAYERS):
        options.pop(k, None)
    options["config"] = str(config)
    cfg = load_approval_config(options)
    for pol in policies:
        try:
            approve(pol, approver, DEMO_APPROVER, cfg=cfg, options=options)
        except ReleaseError:
            # A policy that does not validate is not signed; its run reports the policy error itself.
            continue


# First of all pre-run hooks: an unapproved policy must not even have its network or ledger opened.
registry.add_hook(registry.PRE_RUN, pre_run, first=True)
registry.add_hook(registry.PRE_OUTPUT, pre_output)
registry.add_hook(demo.DEMO_SETUP, demo_setup)
