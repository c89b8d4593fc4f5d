"""Content checksums comparable with S3 ETags. Pure apart from reading the file.

A single-part object's ETag is the MD5 of its bytes; a multipart object's is the MD5 of its parts'
MD5s followed by `-<parts>`. The part size is not stored, so it is found among the sizes common
tools use (16 MiB first, then ferry's 8 MiB) that give the right number of parts.
"""

from __future__ import annotations

import hashlib
import math

MiB = 2**20
COMMON_PART_SIZES = (16, 8, 5, 32, 50, 64, 100, 128, 256, 512)
BLOCK = 4 * MiB


def md5_file(path: str) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _multipart_etag(path: str, part_size: int) -> str:
    digests = []
    with open(path, "rb") as f:
        while True:
            part = hashlib.md5()
            remaining = part_size
            while remaining and (block := f.read(min(BLOCK, remaining))):
                part.update(block)
                remaining -= len(block)
            if remaining == part_size:
                break
            digests.append(part.digest())
    return hashlib.md5(b"".join(digests)).hexdigest() + f"-{len(digests)}"


def part_sizes(size: int, parts: int) -> list[int]:
    """Part sizes that split `size` bytes into exactly `parts` parts, most likely first."""
    candidates = [n * MiB for n in COMMON_PART_SIZES]
    candidates.append(math.ceil(size / parts / MiB) * MiB)
    candidates.append(math.ceil(size / parts))
    seen: list[int] = []
    for candidate in candidates:
        if candidate > 0 and math.ceil(size / candidate) == parts and candidate not in seen:
            seen.append(candidate)
    return seen


def file_matches_etag(path: str, size: int, etag: str) -> bool | None:
    """Whether the file's bytes are those of an object with this ETag; None when that cannot be
    told: a multipart ETag that no usual part size reproduces may be the same bytes cut in other
    parts (then the CRC64NVME decides, `tasks.verify`)."""
    if "-" not in etag:
        return md5_file(path) == etag
    try:
        parts = int(etag.rsplit("-", 1)[1])
    except ValueError:
        return None
    if any(_multipart_etag(path, part_size) == etag for part_size in part_sizes(size, parts)):
        return True
    return None


# -- full-object CRC64NVME ----------------------------------------------------------------------
#
# Every exported object carries the CRC64NVME of its bytes, computed while the file is read: a
# multipart upload as S3's own full-object checksum (x-amz-checksum-crc64nvme, ChecksumType
# FULL_OBJECT: the store checks it when the upload completes), a single PUT as ferry metadata
# (`ferry-crc64nvme`; obstore, which carries single PUTs, can send no x-amz-checksum-* of its
# own). Import checks it while it writes; verify and overwrite="checksum" compare it.

#: The metadata key of a single PUT's checksum (the value is S3's form: base64, big-endian).
CRC_KEY = "ferry-crc64nvme"


def crc64(data, previous: int = 0) -> int:
    from awscrt import checksums

    return checksums.crc64nvme(data, previous)


def combine(first: int, second: int, second_length: int) -> int:
    """The CRC64NVME of two byte runs one after the other, from theirs."""
    from awscrt import checksums

    return checksums.combine_crc64nvme(first, second, second_length)


def encoded(crc: int) -> str:
    import base64

    return base64.b64encode(crc.to_bytes(8, "big")).decode()


def crc64_file(path: str) -> str:
    """The encoded CRC64NVME of a file's bytes."""
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            crc = crc64(block, crc)
    return encoded(crc)


def stored_crc(metadata: dict | None, header: str | None = None) -> str | None:
    """An object's full-object CRC64NVME: S3's own (`header`, from a HEAD with checksum mode),
    else ferry's metadata; None when it has neither."""
    if header:
        return header
    meta = {k.lower(): v for k, v in (metadata or {}).items()}
    return meta.get(CRC_KEY)
