"""Storage classes whose objects cannot be read until they are restored: import rejects such an
object, and conversion refuses a bucket that holds one. Defined once, for both.

S3's `GLACIER` and `DEEP_ARCHIVE` (not `GLACIER_IR`, read at once), OSS's `Archive`,
`ColdArchive` and `DeepColdArchive`, and `ARCHIVE` as COS and other S3-compatible stores spell it.
"""

from __future__ import annotations

ARCHIVE_CLASSES = frozenset(
    {"GLACIER", "DEEP_ARCHIVE", "ARCHIVE", "Archive", "ColdArchive", "DeepColdArchive"}
)
