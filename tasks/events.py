"""A bucket's event notifications (S3 → SQS), read by a stream import so that an object is
imported within a second of landing instead of at the next listing.

The queue carries S3's event records (directly, or wrapped by SNS). Each `ObjectCreated` record
of a key below the stream's prefix becomes a listing entry (size, ETag, time); everything else
(other prefixes, other buckets, removals, S3's test event) is let go. Messages are deleted only
once their objects are settled (`done`), so a task that dies re-reads them: at least once, and
an object already there is a skip. The stream's periodic listing stays, as the reconcile that
catches anything the events missed.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from urllib.parse import unquote_plus, urlsplit

from tasks.endpoints import BucketPrefix
from tasks.errors import UsageError
from tasks.listing import Entry, strip_etag


def _region(host: str, options: dict) -> str:
    """sqs.<region>.amazonaws.com, else the storage options' or the environment's region."""
    parts = host.split(".")
    if len(parts) >= 4 and parts[0] == "sqs" and parts[-2] == "amazonaws":
        return parts[1]
    client_kwargs = options.get("client_kwargs") or {}
    return (
        client_kwargs.get("region_name")
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or "us-east-1"
    )


class BucketEvents:
    """The queue at `queue_url`, for the objects of `bucket` (a prefix)."""

    def __init__(self, queue_url: str, bucket: BucketPrefix) -> None:
        import botocore.session

        parts = urlsplit(queue_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path in ("", "/"):
            raise UsageError(
                "not an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE)",
                where=queue_url,
            )
        options = dict(bucket.options or {})
        credentials = {
            "aws_access_key_id": options.get("key"),
            "aws_secret_access_key": options.get("secret"),
            "aws_session_token": options.get("token"),
        }
        self.url, self.bucket = queue_url, bucket
        self._client = botocore.session.get_session().create_client(
            "sqs",
            endpoint_url=f"{parts.scheme}://{parts.netloc}",
            region_name=_region(parts.hostname or "", options),
            **{k: v for k, v in credentials.items() if v},
        )
        self._pending: list[str] = []  # receipt handles of messages read, not yet settled
        try:
            self.backlog()
        except Exception as exc:  # noqa: BLE001 - one line, before the stream starts
            detail = " ".join(str(exc).split())[:200]
            raise UsageError(f"cannot read the events queue ({detail})", where=queue_url) from None

    def receive(self, wait: float) -> list[tuple[Entry, float]]:
        """The objects that landed, as (entry, seconds since it landed), waiting up to `wait`
        seconds (whole seconds: SQS's long poll) for the first message; the latest event of a
        key wins."""
        out = self._client.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=max(0, min(20, int(wait)))
        )
        found: dict[str, tuple[Entry, float]] = {}
        for message in out.get("Messages", []):
            self._pending.append(message["ReceiptHandle"])
            for entry, age in self._records(message.get("Body") or ""):
                found[entry.path] = (entry, age)
        return list(found.values())

    def _records(self, body: str):
        try:
            event = json.loads(body)
            if "Message" in event and "Records" not in event:  # delivered through SNS
                event = json.loads(event["Message"])
        except (ValueError, TypeError):
            return
        now = datetime.now().astimezone()
        for record in event.get("Records", []) if isinstance(event, dict) else []:
            s3 = record.get("s3") or {}
            if not str(record.get("eventName", "")).startswith("ObjectCreated"):
                continue
            if (s3.get("bucket") or {}).get("name") != self.bucket.bucket:
                continue
            obj = s3.get("object") or {}
            relative = self.bucket.relative(unquote_plus(obj.get("key", "")))
            if not relative:
                continue
            size = int(obj.get("size") or 0)
            marker = relative.endswith("/")
            try:
                landed = datetime.fromisoformat(record["eventTime"].replace("Z", "+00:00"))
                mtime_ns, age = int(landed.timestamp() * 1e9), (now - landed).total_seconds()
            except (KeyError, ValueError):
                mtime_ns, age = None, 0.0
            yield (
                Entry(
                    path=relative[:-1] if marker else relative,
                    kind="dir" if marker and size == 0 else "object",
                    size=size,
                    mtime_ns=mtime_ns,
                    etag=strip_etag(obj.get("eTag")),
                    holds_data=marker and size > 0,
                ),
                max(0.0, age),
            )

    def done(self) -> None:
        """The messages read so far are settled: delete them from the queue."""
        while self._pending:
            batch, self._pending = self._pending[:10], self._pending[10:]
            self._client.delete_message_batch(
                QueueUrl=self.url,
                Entries=[{"Id": str(n), "ReceiptHandle": h} for n, h in enumerate(batch)],
            )

    def backlog(self) -> int:
        """Messages waiting in the queue, and those read but not yet settled (approximate, as
        SQS counts)."""
        attributes = self._client.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes.get("ApproximateNumberOfMessages", 0)) + int(
            attributes.get("ApproximateNumberOfMessagesNotVisible", 0)
        )
