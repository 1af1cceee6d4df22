"""Which S3 client should the data plane use? datastore's own (boto3 parts, FastS3 GETs) vs obstore.

Run (obstore is not a dependency: install it into the venv for the measurement only)::

    .venv/bin/python -m pip install obstore
    .venv/bin/python -m bench.s3_clients [--large-mb 512] [--small 10000] [--repeat 3]

One SeaweedFS on loopback (as in ``make bench``) and, in alternating order so neither gets a
warmer server, each client doing the same work:

- **upload**: one file of ``--large-mb`` MiB of random bytes into one object: ``s5cmd cp`` (the
  peer, its defaults as in ``make bench``: 50 MiB parts, 5 in flight), and with 8 MiB parts, 8 in
  flight, datastore's ``S3Store.blob_writer`` (boto3
  ``upload_part`` in a thread pool: botocore signs each part, which hashes its body with sha256
  over plain HTTP), and obstore's ``put`` fed the same 8 MiB chunks from Python (what the
  pipeline would hand it: it hashes every chunk itself on the way).
- **get**: ``--small`` objects of 10 KiB read back whole: datastore's ``FastS3.get`` on 16
  threads (hand-signed ``http.client``, what reads of S3 sources use) vs obstore's ``get`` on
  16 threads and obstore's async ``get_async`` with 64 requests in flight.

Measured: wall seconds (median of ``--repeat``), and the process's CPU seconds (user + system)
in that time: on 2 cores shared with SeaweedFS, CPU per byte is what bounds the transfer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.harness import s5cmd_binary

MiB = 1024 * 1024
PART = 8 * MiB


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its waited-for children) of one call."""
    c0, t0 = _cpu(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, _cpu() - c0


def chunks(path: Path):
    with open(path, "rb") as fh:
        while data := fh.read(PART):
            yield data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--large-mb", type=int, default=512)
    p.add_argument("--small", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()

    import obstore
    from obstore.store import S3Store as ObStore

    from datastore.backends.s3 import FastS3, client
    from datastore.settings import Settings
    from datastore.store.s3 import S3Store
    from datastore.testing.servers import seaweedfs

    root = Path(tempfile.mkdtemp(prefix="bench-s3-clients-"))
    try:
        big = root / "large.bin"
        with open(big, "wb") as fh:
            for _ in range(args.large_mb):
                fh.write(os.urandom(MiB))
        with contextlib.ExitStack() as stack:
            s3 = stack.enter_context(seaweedfs(root / "weed"))
            os.environ.update(s3.env())
            boto = s3.client()
            boto.create_bucket(Bucket="bench")
            ob = ObStore("bench", endpoint=s3.endpoint, access_key_id=s3.access_key,
                         secret_access_key=s3.secret_key, region="us-east-1",
                         client_options={"allow_http": True, "pool_max_idle_per_host": "64"})
            store = S3Store("s3://bench/ds", Settings(part_bytes=PART, part_workers=8))
            env = {**os.environ, **s3.env()}

            def s5cmd_up() -> None:
                # As make bench runs it: s5cmd's defaults (50 MiB parts, 5 in flight).
                subprocess.run([str(s5cmd_binary()), "--endpoint-url", s3.endpoint, "--log", "error", "cp", str(big),
                                "s3://bench/s5cmd/large.bin"], env=env, check=True, capture_output=True)

            def datastore_up() -> None:
                w = store.blob_writer(big.stat().st_size)
                for c in chunks(big):
                    w.write(c)
                w.commit("0" * 64)

            def obstore_up() -> None:
                obstore.put(ob, "obstore/large.bin", chunks(big), chunk_size=PART, max_concurrency=8)

            print(f"upload of {args.large_mb} MiB (8 MiB parts, 8 in flight), {args.repeat} runs each:")
            uploads = {"s5cmd": s5cmd_up, "datastore (boto3 parts)": datastore_up, "obstore put": obstore_up}
            report(uploads, args.repeat, args.large_mb)

            keys = [f"small/{i:06d}" for i in range(args.small)]
            with ThreadPoolExecutor(32) as pool:
                list(pool.map(lambda k: boto.put_object(Bucket="bench", Key=k, Body=os.urandom(10_240)), keys))
            fast = FastS3(client)

            def fast_get() -> None:
                with ThreadPoolExecutor(16) as pool:
                    assert all(len(b) == 10_240 for b in pool.map(lambda k: fast.get("bench", k), keys))

            def ob_get() -> None:
                with ThreadPoolExecutor(16) as pool:
                    assert all(len(b) == 10_240 for b in pool.map(lambda k: obstore.get(ob, k).bytes(), keys))

            def ob_async() -> None:
                async def run() -> list:
                    sem = asyncio.Semaphore(64)

                    async def one(k: str) -> int:
                        async with sem:
                            r = await obstore.get_async(ob, k)
                            return len(await r.bytes_async())

                    return await asyncio.gather(*(one(k) for k in keys))

                assert all(n == 10_240 for n in asyncio.run(run()))

            print(f"GET of {args.small:,} objects of 10 KiB:")
            gets = {"datastore FastS3, 16 threads": fast_get, "obstore get, 16 threads": ob_get,
                    "obstore get_async, 64 in flight": ob_async}
            report(gets, args.repeat, args.small * 10_240 / MiB, files=args.small)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def report(runs: dict[str, Callable[[], None]], repeat: int, mib: float, files: int = 0) -> None:
    """Run each ``repeat`` times, alternating; print the median wall, CPU and rate of each."""
    got: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, fn in runs.items():
            got[name].append(timed(fn))
    for name, results in got.items():
        wall = statistics.median(w for w, _ in results)
        cpu = statistics.median(c for _, c in results)
        rate = f"{files / wall:,.0f} objects/s" if files else f"{mib / wall:,.0f} MiB/s"
        print(f"  {name:34s} {wall:7.2f} s  CPU {cpu:6.2f} s  {rate}")


if __name__ == "__main__":
    main()
