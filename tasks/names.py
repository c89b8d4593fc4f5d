"""The seed's name rules: which keys and paths a data stream can carry. Pure functions, no I/O.

The limits come from the data-flow product: a path of at most 1023 characters, a name of at most
255 bytes, no `..` name, no backslash, no name containing `/` (in a key: an empty segment).
"""

from __future__ import annotations

import os

MAX_PATH_CHARS = 1023
MAX_NAME_BYTES = 255
#: S3's own limit on a key, in UTF-8 bytes.
MAX_KEY_BYTES = 1024


def key_problem(relative: str) -> str | None:
    """Why an object key (relative to the imported prefix) cannot become a file, or None.

    `relative` is the key with the prefix removed; a trailing '/' (a directory marker) is allowed.
    """
    path = relative[:-1] if relative.endswith("/") else relative
    if not path:
        return "empty name"
    if len(path) > MAX_PATH_CHARS:
        return f"path longer than {MAX_PATH_CHARS} characters ({len(path)})"
    if "\\" in path:
        return "backslash in name"
    if "\x00" in path:
        return "NUL character in name"
    if path.startswith("/"):
        return "absolute path (key has an empty segment after the prefix)"
    for segment in path.split("/"):
        if segment == "":
            return "empty path segment ('//')"
        if segment == "..":
            return "'..' segment would leave the destination"
        if segment == ".":
            return "'.' segment"
        if len(segment.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            return f"name longer than {MAX_NAME_BYTES} bytes"
    return None


def path_problem(relative: str) -> str | None:
    """Why a path (relative to the exported directory) cannot become an object, or None."""
    if len(relative) > MAX_PATH_CHARS:
        return f"path longer than {MAX_PATH_CHARS} characters ({len(relative)})"
    if not is_utf8(relative):
        return NOT_UTF8
    if "\\" in relative:
        return "backslash in name"
    return None


#: The reason of a name that is not valid UTF-8; it says how the manifest writes such a name.
NOT_UTF8 = (
    "name is not valid UTF-8 (the manifest writes each undecodable byte as \\xNN and a "
    "backslash as \\\\)"
)


def is_utf8(text: str) -> bool:
    """False for a name read from the file system whose bytes are not UTF-8 (Python carries
    them as lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(text: str) -> str:
    """`text` as valid UTF-8, losslessly: a name that is already valid is unchanged; otherwise
    each undecodable byte becomes `\\xNN` and each backslash `\\\\` (so the original bytes
    can be recovered: `codecs.escape_decode`)."""
    if is_utf8(text):
        return text
    raw = os.fsencode(text).replace(b"\\", b"\\\\")
    return raw.decode("utf-8", "backslashreplace")


def key_too_long(key: str) -> str | None:
    size = len(key.encode("utf-8"))
    return (
        f"object key longer than {MAX_KEY_BYTES} bytes ({size})" if size > MAX_KEY_BYTES else None
    )
