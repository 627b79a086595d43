"""Reading a request's header block: strictly, and without the email parser.

``http.server`` parses headers with :mod:`email`'s feed parser, which costs more than the
policy's inference. Here each line is split once and
checked against RFC 9112: a field name is a token followed directly by ``:`` (so
``Content-Length : 5`` and a NUL in a name are refused), obsolete line folding is refused, a
line is at most 64 KiB and a request has at most 100 header lines. A refusal is an
:class:`HttpError` that closes the connection: after a malformed header block the server cannot
know where the body ends.
"""

from __future__ import annotations

import re

from qagent.serve.errors import HttpError

MAX_LINE = 65536
MAX_HEADERS = 100
TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class Headers:
    """A request's header fields, looked up without regard to case (what the handler and http.server ask of them)."""

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self._fields: dict[str, list[str]] = {}
        for name, value in fields:
            self._fields.setdefault(name.lower(), []).append(value)

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self._fields.get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str) -> list[str] | None:
        return self._fields.get(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fields

    def __len__(self) -> int:
        return sum(len(values) for values in self._fields.values())


class HeaderReader:
    """Takes a request's header lines one at a time (:meth:`feed`) until the empty line that ends them."""

    def __init__(self) -> None:
        self.fields: list[tuple[str, str]] = []

    def feed(self, line: bytes) -> bool:
        """One line, with its line ending; True at the end of the header block. Malformed: :class:`HttpError`."""
        if len(line) > MAX_LINE:
            raise HttpError(431, f"a header line is longer than {MAX_LINE} bytes")
        if line in (b"\r\n", b"\n", b""):
            return True
        if len(self.fields) >= MAX_HEADERS:
            raise HttpError(431, f"more than {MAX_HEADERS} header lines")
        if line[:1] in (b" ", b"\t"):
            raise HttpError(400, "a folded header line (obsolete line folding); send each field on one line")
        name, colon, value = line.partition(b":")
        if not colon or not TOKEN.fullmatch(name):
            raise HttpError(400, "a malformed header line; each is 'Name: value', with no space before the ':'")
        self.fields.append((name.decode("ascii"), value.strip(b" \t\r\n").decode("iso-8859-1")))
        return False

    @property
    def headers(self) -> Headers:
        return Headers(self.fields)
