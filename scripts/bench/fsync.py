#!/usr/bin/env python3
"""Time fdatasync on a file system: the floor under one durable SQLite commit.

Usage: fsync.py DIR [--count 50] [--size 4096] [--mode append|overwrite]

Writes SIZE bytes and calls os.fdatasync, COUNT times, in a scratch file inside
DIR (removed afterwards), and prints one line:

    fdatasync append 4096 B x50: median 1.234 ms, p90 2.345 ms, min 0.9 ms, max 3.1 ms

`append` grows the file on each write, as a SQLite WAL does between checkpoints
(the file size changes, so the file system must also commit its metadata);
`overwrite` rewrites the same block of an already allocated file.
"""

import argparse
import math
import os
import statistics
import sys
import tempfile
import time


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an already sorted list."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", help="directory on the file system to measure")
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--mode", choices=("append", "overwrite"), default="append")
    args = parser.parse_args()

    block = os.urandom(args.size)
    fd, path = tempfile.mkstemp(prefix="fsync-probe-", dir=args.dir)
    try:
        if args.mode == "overwrite":
            os.write(fd, block)
            os.fsync(fd)  # allocate the block and commit the size first
        samples = []
        for _ in range(args.count):
            if args.mode == "overwrite":
                os.pwrite(fd, block, 0)
            else:
                os.write(fd, block)
            start = time.perf_counter()
            os.fdatasync(fd)
            samples.append((time.perf_counter() - start) * 1000.0)
    finally:
        os.close(fd)
        os.unlink(path)

    samples.sort()
    print(
        f"fdatasync {args.mode} {args.size} B x{args.count}: "
        f"median {statistics.median(samples):.3f} ms, "
        f"p90 {percentile(samples, 0.90):.3f} ms, "
        f"min {samples[0]:.3f} ms, max {samples[-1]:.3f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
