"""`release keygen`: make an Ed25519 key pair, an approver's or the deployment's release key."""

from __future__ import annotations

from pathlib import Path

import click


def register(group: click.Group) -> None:
    @group.command("keygen")
    @click.option("--out", "out", required=True, type=click.Path(),
                  help="KEY.pem (public half written beside it as KEY.pub.pem), or a folder for the default names.")
    @click.option("--kind", type=click.Choice(["approver", "release"]), default="approver", show_default=True,
                  help="approver: signs policy approvals (the privacy office). release: signs bundles (the deployment).")
    @click.option("--keyring", type=click.Path(dir_okay=False), default=None,
                  help="Also trust the public key in this keyring file, for this kind only (created when absent).")
    @click.option("--name", default=None, help="Name shown for the key in the keyring (e.g. the approver).")
    def keygen_cmd(out: str, kind: str, keyring: str | None, name: str | None) -> None:
        """Make an Ed25519 key pair (private key mode 0600; never overwritten)."""
        from release.governance.keys import Keyring, generate, load_private

        priv, pub, kid = generate(Path(out), kind=kind)
        what = "signs policy approvals" if kind == "approver" else "signs every bundle this deployment publishes"
        click.echo(f"private key: {priv} (keep it secret; it {what})")
        click.echo(f"public key:  {pub}")
        click.echo(f"key id:      {kid} ({kind})")
        if keyring:
            Keyring.add(Path(keyring), load_private(priv).public_key(), name or kid, kind)
            click.echo(f"trusted as a {kind} key in keyring {keyring}")
