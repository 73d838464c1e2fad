"""`release keygen --out DIR`: make an Ed25519 approval key pair (and optionally trust it in a keyring)."""

from __future__ import annotations

from pathlib import Path

import click


def register(group: click.Group) -> None:
    @group.command("keygen")
    @click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
                  help="Folder for approval-key.pem (private, mode 0600) and approval-key.pub.pem.")
    @click.option("--keyring", type=click.Path(dir_okay=False), default=None,
                  help="Also add the public key to this keyring file (created when absent).")
    @click.option("--name", default=None, help="Name shown for the key in the keyring (e.g. the approver).")
    def keygen_cmd(out_dir: str, keyring: str | None, name: str | None) -> None:
        """Make an Ed25519 key pair for signing policy approvals."""
        from release.governance.keys import Keyring, generate, load_private

        priv, pub, kid = generate(Path(out_dir))
        click.echo(f"private key: {priv} (keep it secret; it signs approvals)")
        click.echo(f"public key:  {pub}")
        click.echo(f"key id:      {kid}")
        if keyring:
            Keyring.add(Path(keyring), load_private(priv).public_key(), name or kid)
            click.echo(f"trusted in keyring {keyring}")
