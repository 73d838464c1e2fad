"""Error types: user errors carry an exit code and a located message; bugs are separate."""

from __future__ import annotations

EXIT_OK = 0
EXIT_BLOCKED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70


class ReleaseError(Exception):
    """A user-facing error: printed without a traceback, with a distinct exit code."""

    exit_code: int = EXIT_USAGE
    kind: str = "error"

    def __init__(self, message: str, *, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details or [])

    def render(self) -> str:
        """Lines for the terminal: messages quote file and column names, which may be hostile."""
        from release.textsafe import safe_text

        lines = [f"{self.kind}: {safe_text(self.message)}"]
        lines.extend(f"  {safe_text(d)}" for d in self.details)
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"error": self.kind, "message": self.message, "details": self.details,
                "exit_code": self.exit_code}


class PolicyError(ReleaseError):
    """The policy file is malformed or inconsistent (exit 2)."""

    kind = "policy error"


class InputError(ReleaseError):
    """The input records (or a network/boundary file) break the declared schema (exit 2)."""

    kind = "input error"


class UsageError(ReleaseError):
    """Bad command-line usage or environment (missing secret, unreadable file) (exit 2)."""

    kind = "usage error"


class BlockedError(ReleaseError):
    """A gate, a check, an approval or a budget cap refused the release (exit 1)."""

    exit_code = 1
    kind = "blocked"


class InternalError(Exception):
    """A bug in the engine, never the user's fault."""
