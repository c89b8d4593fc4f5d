"""A Google Cloud Storage endpoint on loopback for obstore's GCS client: moto's S3 server, which
also keeps GCS's user metadata headers.

obstore reaches GCS through its XML API, which Google made to interoperate with S3's (the same
paths, `ListBucketResult`, multipart uploads, ETags, `If-Match`). The GCS emulators on the package
registries speak only the JSON API or answer the XML one in part (no ETag, 501 on HEAD, listing and
multipart, `If-Match` ignored), so none can carry obstore's requests; moto's server carries every
one of them. Two differences matter, and this module makes moto take both: the metadata header
(`x-goog-meta-*`, not `x-amz-meta-*`) and a percent-encoded bucket name.

    python tests/gcs_xml.py -H 127.0.0.1 -p PORT      (moto.server's own arguments)
"""

from __future__ import annotations

import re
import sys

_GOOG_META = re.compile(r"^x-goog-meta-[a-zA-Z0-9\-_.]+$", re.IGNORECASE)


def speak_gcs_xml() -> None:
    """Make moto's S3 server take GCS's XML requests: user metadata under `x-goog-meta-*`, and a
    bucket name percent-encoded in the path (obstore writes `ferry-1` as `ferry%2D1`, which GCS
    decodes)."""
    from urllib.parse import unquote

    import moto.s3.responses as responses

    parse_bucket = responses.S3Response.parse_bucket_name_from_url

    def parse_bucket_name_from_url(self, request, url):
        return unquote(parse_bucket(self, request, url))

    responses.S3Response.parse_bucket_name_from_url = parse_bucket_name_from_url

    amz_only = responses.metadata_from_headers

    def metadata_from_headers(headers):
        metadata = amz_only(headers)
        for header in list(headers.keys()):
            if isinstance(header, str) and _GOOG_META.match(header):
                value = headers[header]
                metadata[header.lower()] = value[0] if isinstance(value, list) else value
        return metadata

    responses.metadata_from_headers = metadata_from_headers


def options(endpoint: str) -> dict[str, str]:
    """The storage options of a `gs://` URL on this endpoint (a static bearer token: without one,
    obstore asks the cloud's metadata server for credentials)."""
    return {"base_url": endpoint, "bearer_token": "ferry-test"}


def create_bucket(endpoint: str, name: str) -> None:
    import urllib.request

    request = urllib.request.Request(f"{endpoint}/{name}", method="PUT")
    with urllib.request.urlopen(request, timeout=30):
        pass


if __name__ == "__main__":
    speak_gcs_xml()
    from moto.server import main

    sys.exit(main(sys.argv[1:]))
