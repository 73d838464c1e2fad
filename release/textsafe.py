"""Text safe for terminals and CI logs: strips control and escape sequences from untrusted strings.

Every string that came from data, a policy or a bundle (column names, file names, messages that
quote them) goes through `safe_text` before it is printed, so a value cannot retitle a terminal
(OSC), move the cursor (CSI), reorder what is shown (bidi overrides) or start a new line that a
CI runner reads as a workflow command (`\\n::warning::...`).
"""

from __future__ import annotations

import re

# ESC-introduced sequences first, so their parameters go with them (an OSC title, a CSI colour):
# OSC/DCS/SOS/PM/APC run to BEL or ST; CSI to its final byte; any other ESC takes one character.
_ESCAPES = re.compile(
    r"(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|\x1b[ -/]*[0-~]?"
)
# C0 (but tab and newline, handled below), DEL, C1, bidi embeddings/overrides/isolates and marks,
# zero-width characters and the Unicode line/paragraph separators.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069\ufeff]")
_NEWLINES = re.compile(r"\r\n|[\r\n]")

# The same set as a plain character class, for checks that refuse rather than strip.
UNSAFE_CHARS = "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u202a-\u202e\u2066-\u2069]"
"Characters never published: C0 controls except tab and LF, DEL, C1 controls, bidi overrides."


def safe_text(value: object, *, multiline: bool = False) -> str:
    """The printable part of `value`: escape sequences and control characters removed.

    Newlines become ' ⏎ ' unless `multiline`, so one finding or error stays one line and nothing
    that follows a newline in untrusted text can begin a line of its own; tabs become spaces.
    """
    s = str(value)
    s = _ESCAPES.sub("", s)
    s = _CONTROLS.sub("", s)
    s = s.replace("\t", " ")
    if multiline:
        # Each line of untrusted multi-line text is indented, so none starts a workflow command.
        return "\n".join(line if i == 0 else "  " + line for i, line in enumerate(_NEWLINES.split(s)))
    return _NEWLINES.sub(" \u23ce ", s)


def is_safe(value: str) -> bool:
    """True when printing `value` needs no cleaning (no controls, escapes or newlines)."""
    return safe_text(value) == value
