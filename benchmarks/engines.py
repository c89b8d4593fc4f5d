"""Benchmark: client CPU per S3 request, aiobotocore (through s3fs, ferry's data plane) vs obstore.

    uv run python benchmarks/engines.py                          # 3 rounds, ~20 min here
    uv run python benchmarks/engines.py --objects 200 --rounds 1

Starts its own moto S3 server on 127.0.0.1 (plain HTTP, `flows.local_s3`) and stops it at the
end. For each kind of request ferry makes, both engines run the same work with 32 requests in
flight (an `asyncio.Semaphore`), on the same event loop (s3fs's loop thread, as ferry runs):

- aiobotocore: s3fs's client built from ferry's own `tasks.endpoints.s3_options` (one attempt,
  128 pooled connections, unsigned payloads, no extra checksum trailers) and wrapped in ferry's
  `Requests`, with the arguments ferry's steps pass (Content-MD5 and user metadata on PUT, a CRC32
  and an MD5 computed per part as `tasks.upload` does, If-Match on GET).
- obstore: `obstore.store.S3Store(bucket, endpoint=…, allow_http, credentials, region,
  unsigned_payload=True)` with `max_retries: 0`; user metadata as `attributes`. obstore cannot send
  Content-MD5 per request; the `CPU +sha256` column sets `checksum_algorithm="sha256"` (a SHA-256
  header that S3 verifies, per part for multipart). Large GETs stream (`GetResult.stream`), as
  ferry streams ranges into the file.

CPU is `time.process_time()` of this process: every thread, so it includes s3fs's loop thread and
obstore's Rust (tokio) worker threads; moto runs in a child process and is not counted. Wall time
is the elapsed time divided by the requests (with 32 in flight it is the inverse of throughput,
and on this loopback mostly moto's). Each cell is the median over the rounds; the engines alternate
within a round, and the server is reset between rounds. "ratio" is aiobotocore's CPU over
obstore's: above 1.0, obstore spends less CPU per request.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import statistics
import sys
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import boto3
import fsspec
import fsspec.asyn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flows.local_s3 import DEMO_CREDENTIALS, local_s3, reset  # noqa: E402
from tasks.endpoints import Requests, s3_options  # noqa: E402

try:
    from obstore.store import S3Store
except ImportError:  # pragma: no cover - the docstring says how to run it
    sys.exit("obstore is missing: uv run --with 'obstore>=0.12,<0.13' python benchmarks/engines.py")

KiB, MiB = 2**10, 2**20
BUCKET = "engines"
IN_FLIGHT = 32
SMALL = 4 * KiB
BIG = 64 * MiB
PART = 8 * MiB  # ferry's PART_SIZE
METADATA = {"alihbr-sync-mtime": "1716487553", "mtime": "1716487553.250000000"}


@dataclass
class Sample:
    cpu: float
    wall: float
    requests: int


@dataclass
class Op:
    name: str
    unit: str  # what one "request" in the table is
    count: int


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


async def bounded(n: int, work: Callable[[int], Awaitable[object]]) -> list:
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(i: int):
        async with gate:
            return await work(i)

    return await asyncio.gather(*(one(i) for i in range(n)))


class Aiobotocore:
    """ferry's data plane: aiobotocore through s3fs with `s3_options`, called via `Requests`."""

    name = "aiobotocore"

    def __init__(self, endpoint: str) -> None:
        options = s3_options(
            {
                "endpoint_url": endpoint,
                "key": DEMO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                "secret": DEMO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                "client_kwargs": {"region_name": DEMO_CREDENTIALS["AWS_DEFAULT_REGION"]},
            }
        )
        self.fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
        self.client = None

    async def start(self) -> None:
        await self.fs.set_session()
        self.client = Requests(self.fs, await self.fs.get_s3(BUCKET))

    async def put_small(self, key: str, body: bytes) -> str:
        out = await self.client.put_object(
            Bucket=BUCKET, Key=key, Body=body, Metadata=METADATA, ContentMD5=md5_b64(body)
        )
        return out["ETag"].strip('"')

    async def get(self, key: str, etag: str | None = None, span=None) -> int:
        kwargs = {"IfMatch": f'"{etag}"'} if etag else {}
        if span:
            kwargs["Range"] = f"bytes={span[0]}-{span[1] - 1}"
        out = await self.client.get_object(Bucket=BUCKET, Key=key, **kwargs)
        async with out["Body"] as body:
            data = await body.read()
        out.get("Metadata")
        return len(data)

    async def head(self, key: str) -> int:
        out = await self.client.head_object(Bucket=BUCKET, Key=key)
        out.get("Metadata")
        return out["ContentLength"]

    head_with_metadata = head

    async def list(self, prefix: str) -> int:
        out = await self.client.list_objects_v2(Bucket=BUCKET, Prefix=prefix, MaxKeys=1000)
        return len(out.get("Contents", []))

    async def copy(self, source: str, key: str) -> None:
        await self.client.copy_object(
            Bucket=BUCKET, Key=key, CopySource={"Bucket": BUCKET, "Key": source}
        )

    async def delete(self, key: str) -> None:
        await self.client.delete_object(Bucket=BUCKET, Key=key)

    async def delete_many(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            objects = [{"Key": k} for k in keys[start : start + 1000]]
            await self.client.delete_objects(Bucket=BUCKET, Delete={"Objects": objects})

    async def put_multipart(self, key: str, data: bytes) -> str:
        """As `tasks.upload._upload_multipart`: CRC32 the store checks, MD5 checked per part."""
        client = self.client
        started = await client.create_multipart_upload(
            Bucket=BUCKET, Key=key, Metadata=METADATA, ChecksumAlgorithm="CRC32"
        )
        upload_id = started["UploadId"]
        view = memoryview(data)

        async def send(number: int, offset: int) -> dict:
            part = bytes(view[offset : offset + PART])
            digest = hashlib.md5(part).digest()
            crc = base64.b64encode(zlib.crc32(part).to_bytes(4, "big")).decode()
            out = await client.upload_part(
                Bucket=BUCKET,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=part,
                ChecksumCRC32=crc,
            )
            assert out["ETag"].strip('"') == digest.hex()
            return {"PartNumber": number, "ETag": out["ETag"], "ChecksumCRC32": crc}

        parts = await asyncio.gather(
            *(send(n + 1, off) for n, off in enumerate(range(0, len(data), PART)))
        )
        out = await client.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        return out["ETag"].strip('"')

    async def get_ranged_big(self, key: str, size: int, etag: str) -> int:
        async def fetch(start: int) -> int:
            end = min(start + PART, size) - 1
            out = await self.client.get_object(
                Bucket=BUCKET, Key=key, Range=f"bytes={start}-{end}", IfMatch=f'"{etag}"'
            )
            got = 0
            async with out["Body"] as body:
                while chunk := await body.read(MiB):
                    got += len(chunk)
            return got

        return sum(await asyncio.gather(*(fetch(s) for s in range(0, size, PART))))


class Obstore:
    """obstore's S3Store with the settings ferry would use (one attempt, unsigned payload)."""

    def __init__(self, endpoint: str, *, checksum: bool = False) -> None:
        self.name = "obstore+sha256" if checksum else "obstore"
        extra = {"checksum_algorithm": "sha256"} if checksum else {}
        self.store = S3Store(
            BUCKET,
            endpoint=endpoint,
            access_key_id=DEMO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            secret_access_key=DEMO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region=DEMO_CREDENTIALS["AWS_DEFAULT_REGION"],
            unsigned_payload=True,
            client_options={
                "allow_http": True,
                "connect_timeout": "10s",
                "timeout": "60s",
                "pool_max_idle_per_host": "128",
            },
            retry_config={"max_retries": 0},
            **extra,
        )

    async def start(self) -> None:
        pass

    async def put_small(self, key: str, body: bytes) -> str:
        out = await self.store.put_async(key, body, attributes=METADATA, use_multipart=False)
        return out["e_tag"].strip('"')

    async def get(self, key: str, etag: str | None = None, span=None) -> int:
        options = {"if_match": f'"{etag}"'} if etag else {}
        if span:
            options["range"] = span
        result = await self.store.get_async(key, options=options)
        data = await result.bytes_async()
        result.attributes  # noqa: B018 - the user metadata, as ferry reads it
        return len(data)

    async def head(self, key: str) -> int:
        return (await self.store.head_async(key))["size"]

    async def head_with_metadata(self, key: str) -> int:
        result = await self.store.get_async(key, options={"head": True})
        result.attributes  # noqa: B018
        return result.meta["size"]

    async def list(self, prefix: str) -> int:
        return len(await self.store.list(prefix).collect_async())

    async def copy(self, source: str, key: str) -> None:
        await self.store.copy_async(source, key)

    async def delete(self, key: str) -> None:
        await self.store.delete_async(key)

    async def delete_many(self, keys: list[str]) -> None:
        await self.store.delete_async(keys)

    async def put_multipart(self, key: str, data: bytes) -> str:
        out = await self.store.put_async(
            key,
            data,
            attributes=METADATA,
            use_multipart=True,
            chunk_size=PART,
            max_concurrency=IN_FLIGHT,
        )
        return out["e_tag"].strip('"')

    async def get_ranged_big(self, key: str, size: int, etag: str) -> int:
        async def fetch(start: int) -> int:
            end = min(start + PART, size)
            options = {"range": (start, end), "if_match": f'"{etag}"'}
            result = await self.store.get_async(key, options=options)
            got = 0
            async for chunk in result.stream(min_chunk_size=MiB):
                got += len(chunk)
            return got

        return sum(await asyncio.gather(*(fetch(s) for s in range(0, size, PART))))


def measure(loop, work: Callable[[], Awaitable[object]], requests: int) -> Sample:
    cpu, wall = time.process_time(), time.perf_counter()
    fsspec.asyn.sync(loop, work)
    return Sample(time.process_time() - cpu, time.perf_counter() - wall, requests)


def run_round(loop, engine, n: int, lists: int, bigs: int, payloads: list[bytes], big: bytes):
    """Every operation once for one engine, on objects it wrote itself; {op name: Sample}."""
    root = f"{engine.name}/"
    keys = [f"{root}small/{i:05d}" for i in range(n)]
    etags: list[str] = []
    out: dict[str, Sample] = {}
    fsspec.asyn.sync(loop, engine.start)

    async def warm():  # connections opened, code paths loaded, before anything is timed
        await bounded(IN_FLIGHT, lambda i: engine.put_small(f"{root}warm/{i}", payloads[i]))
        await bounded(IN_FLIGHT, lambda i: engine.get(f"{root}warm/{i}"))

    fsspec.asyn.sync(loop, warm)

    async def put():
        etags.extend(await bounded(n, lambda i: engine.put_small(keys[i], payloads[i])))

    out["put 4 KiB + metadata"] = measure(loop, put, n)
    assert etags[0] == hashlib.md5(payloads[0]).hexdigest(), (etags[0], engine.name)
    out["get 4 KiB whole"] = measure(loop, lambda: bounded(n, lambda i: engine.get(keys[i])), n)
    out["get 1 KiB range"] = measure(
        loop, lambda: bounded(n, lambda i: engine.get(keys[i], span=(KiB, 2 * KiB))), n
    )
    out["get If-Match ETag"] = measure(
        loop, lambda: bounded(n, lambda i: engine.get(keys[i], etags[i])), n
    )
    out["head"] = measure(loop, lambda: bounded(n, lambda i: engine.head(keys[i])), n)
    out["head + metadata"] = measure(
        loop, lambda: bounded(n, lambda i: engine.head_with_metadata(keys[i])), n
    )

    async def listing():
        counts = await bounded(lists, lambda i: engine.list(f"{root}small/"))
        assert all(c == min(n, 1000) for c in counts), counts

    out["list 1000 keys"] = measure(loop, listing, lists)
    copies = [f"{root}copy/{i:05d}" for i in range(n)]
    out["copy"] = measure(loop, lambda: bounded(n, lambda i: engine.copy(keys[i], copies[i])), n)
    out["delete (one key)"] = measure(
        loop, lambda: bounded(n, lambda i: engine.delete(copies[i])), n
    )
    out["delete 1000 keys (bulk)"] = measure(loop, lambda: engine.delete_many(keys), 1)

    big_keys = [f"{root}big/{i}" for i in range(bigs)]
    big_etags: list[str] = []

    async def put_big():
        for key in big_keys:  # one object at a time, its parts concurrently
            big_etags.append(await engine.put_multipart(key, big))

    out["multipart put 64 MiB"] = measure(loop, put_big, bigs)
    assert big_etags[0].endswith(f"-{BIG // PART}"), big_etags[0]

    async def get_big():
        for key, etag in zip(big_keys, big_etags, strict=True):
            assert await engine.get_ranged_big(key, BIG, etag) == BIG

    out["get 64 MiB, 8 MiB ranges"] = measure(loop, get_big, bigs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1000, help="small objects per operation")
    parser.add_argument("--lists", type=int, default=100, help="listings of the small objects")
    parser.add_argument("--bigs", type=int, default=2, help="64 MiB objects per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.update(DEMO_CREDENTIALS)
    payloads = [os.urandom(SMALL) for _ in range(max(args.objects, IN_FLIGHT))]
    big = os.urandom(BIG)
    samples: dict[str, dict[str, list[Sample]]] = {}
    with local_s3() as endpoint:
        engines = [Aiobotocore(endpoint), Obstore(endpoint), Obstore(endpoint, checksum=True)]
        loop = engines[0].fs.loop
        for r in range(args.rounds):
            reset(endpoint)
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
            order = engines if r % 2 == 0 else engines[::-1]
            for engine in order:
                got = run_round(loop, engine, args.objects, args.lists, args.bigs, payloads, big)
                for op, sample in got.items():
                    samples.setdefault(op, {}).setdefault(engine.name, []).append(sample)
                print(f"round {r + 1}/{args.rounds}: {engine.name} done", file=sys.stderr)
        names = [e.name for e in engines]
    print_table(samples, names, args)
    cpu = time.process_time()
    for offset in range(0, BIG, PART):
        part = big[offset : offset + PART]
        hashlib.md5(part).digest(), zlib.crc32(part)
    print(
        f"of aiobotocore's multipart row, ferry's own MD5 + CRC32 of the 64 MiB: "
        f"{1e3 * (time.process_time() - cpu):.1f} ms CPU"
    )


def print_table(samples, names, args) -> None:
    def cpu_ms(op, name):
        runs = samples[op].get(name)
        return statistics.median(1e3 * s.cpu / s.requests for s in runs) if runs else None

    def wall_ms(op, name):
        runs = samples[op].get(name)
        return statistics.median(1e3 * s.wall / s.requests for s in runs) if runs else None

    print(
        f"\nms per request, median of {args.rounds} rounds; {args.objects} small objects, "
        f"{args.lists} listings, {args.bigs} × 64 MiB per round; {IN_FLIGHT} in flight\n"
    )
    header = (
        f"{'operation':26} | {'CPU aiobotocore':>15} | {'CPU obstore':>11} | {'ratio':>5} | "
        f"{'CPU +sha256':>11} | {'wall aiobotocore':>16} | {'wall obstore':>12}"
    )
    print(header)
    print("-" * len(header))
    for op in samples:
        aio, obs, sha = (cpu_ms(op, n) for n in names)
        ratio = f"{aio / obs:5.2f}" if obs else "    -"
        print(
            f"{op:26} | {aio:15.3f} | {obs:11.3f} | {ratio} | {sha:11.3f} | "
            f"{wall_ms(op, names[0]):16.3f} | {wall_ms(op, names[1]):12.3f}"
        )
    print(
        "\nratio = CPU aiobotocore / CPU obstore (above 1.0: obstore cheaper). 'list' is per "
        "listing of 1000 keys; 'delete 1000 keys (bulk)' per DeleteObjects call; the 64 MiB rows "
        "per object (10 requests up, 8 down). +sha256: obstore with checksum_algorithm='sha256'."
    )


if __name__ == "__main__":
    main()
