"""The user file (`datas_user.txt`): AniList user names, one a line.

Lenient about how the file was saved (UTF-8 with or without BOM, UTF-16 from Windows Notepad,
CRLF or LF) and about what a line holds: blank lines and `#` comments are skipped, names are
trimmed, a leading "@" or a pasted profile URL (https://anilist.co/user/Name/) gives the name.
Strict about the names themselves: AniList names are letters and digits, so anything else is
reported with its line number and skipped. A name given twice (in any case) counts once.
"""

from __future__ import annotations

import codecs
import os
import re
from dataclasses import dataclass, field

# AniList names are 2-20 letters and digits; allow a little either side in case old accounts
# differ, but never spaces or punctuation, which no account has.
NAME_PATTERN = re.compile(r"[A-Za-z0-9]{1,30}")
PROFILE_URL = re.compile(r"^(?:https?://)?(?:www\.)?anilist\.co/user/([^/?#\s]+)", re.IGNORECASE)


class UserFileError(Exception):
    """The file is missing or unreadable; the message says which and what to do."""


@dataclass(frozen=True)
class BadLine:
    line: int
    text: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.text!r} {self.reason}"


@dataclass
class UserNames:
    names: list[str] = field(default_factory=list)  # in file order, first spelling kept
    bad_lines: list[BadLine] = field(default_factory=list)
    repeated: list[BadLine] = field(default_factory=list)  # names already given above


def read_user_file(path: str | os.PathLike[str]) -> UserNames:
    """Read and parse the user file at `path`; raises UserFileError if it cannot be read."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise UserFileError(
            f"user file not found: {path}. Create it with one AniList user name per line "
            "(the datas_user.txt that ships with the project is a template), or pass --users."
        ) from None
    except OSError as exc:
        raise UserFileError(f"cannot read the user file {path}: {exc.strerror}") from None
    try:
        text = decode_text(raw)
    except UnicodeDecodeError as exc:
        raise UserFileError(
            f"{path} is not UTF-8 text (byte {exc.start}). Save it as UTF-8 and run again."
        ) from None
    return parse_user_names(text)


def decode_text(raw: bytes) -> str:
    """UTF-16 when the file starts with its byte-order mark, else UTF-8 (BOM or not)."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16")
    return raw.decode("utf-8-sig")


def parse_user_names(text: str) -> UserNames:
    result = UserNames()
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        name, problem = _name_from(content)
        if problem:
            result.bad_lines.append(BadLine(number, content, problem))
        elif name.lower() in seen:
            result.repeated.append(BadLine(number, name, "is already listed above"))
        else:
            seen.add(name.lower())
            result.names.append(name)
    return result


def _name_from(content: str) -> tuple[str, str | None]:
    """(name, None) for a usable line, else ("", why not)."""
    try:
        return parse_user_name(content), None
    except BadUserName as exc:
        return "", exc.reason


class BadUserName(ValueError):
    """What was typed is no AniList user name; `reason` says why, after the text."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"{text!r} {reason}")
        self.reason = reason


def parse_user_name(text: str) -> str:
    """The user name in what someone typed or pasted: NAME, @NAME or a profile address
    (https://anilist.co/user/NAME/, with or without the scheme, www. or a page after the name).
    The one parser of user names: the user file, recommend.py --user and 4_recommend's prompt."""
    content = text.strip()
    url = PROFILE_URL.match(content)
    name = url.group(1) if url else content.removeprefix("@")
    if any(c.isspace() for c in name):
        raise BadUserName(content, "holds spaces: AniList names have none (a file has one a line)")
    if not NAME_PATTERN.fullmatch(name):
        raise BadUserName(
            content,
            "is not an AniList user name (letters and digits only, up to 20) nor a profile "
            "address (https://anilist.co/user/NAME/)",
        )
    return name
