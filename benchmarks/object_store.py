"""Object store benchmark: publishing and pulling a stage output through S3 vs copying it on the local disk.

    .venv/bin/python -m benchmarks.object_store [--megabytes 64] [--files 16]

A stage output of FILES files (random bytes, as incompressible as Parquet and token shards) is published to a
moto S3 server on loopback (upload under an attempt prefix + the commit object), pulled into an empty folder,
and pulled again (the copy already mirrors the commit: nothing is downloaded); each is set side by side with a
local `shutil.copytree` of the same folder. moto keeps objects in its own Python process, so these ratios are
an upper bound of the protocol's overhead on this machine, not a real store's throughput.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from fineforge.tasks.common.committed import publish, pull
from testkit.s3_store import s3_store


def timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def make_output(folder: Path, megabytes: int, files: int) -> None:
    folder.mkdir(parents=True)
    for index in range(files):
        (folder / f"part-{index:05d}.bin").write_bytes(os.urandom(megabytes * (1 << 20) // files))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=64)
    parser.add_argument("--files", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, s3_store(Path(tmp) / "s3") as store:
        root = Path(tmp)
        os.environ.update(store.env(root / "staging"))
        uri = store.make_bucket("bench") + "/work/dump/filtered"
        make_output(root / "output", args.megabytes, args.files)
        local = timed(lambda: shutil.copytree(root / "output", root / "copy"))
        published = timed(lambda: publish(root / "output", uri, "bench", {}))
        pulled = timed(lambda: pull(uri, root / "pulled"))
        again = timed(lambda: pull(uri, root / "pulled"))
    print(f"{args.megabytes} MB in {args.files} files")
    print(f"{'operation':<34}{'seconds':>9}{'MB/s':>9}{'x local copy':>14}")
    for name, seconds in [("local copytree", local), ("publish (upload + commit)", published),
                          ("pull into an empty folder", pulled), ("pull again (already mirrored)", again)]:
        print(f"{name:<34}{seconds:>9.3f}{args.megabytes / seconds:>9.1f}{seconds / local:>14.1f}")


if __name__ == "__main__":
    main()
