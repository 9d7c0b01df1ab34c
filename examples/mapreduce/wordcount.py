"""Word count with dask.bag on the farm's Dask cluster: read the text files, split each line
into words, flatten, count each word's frequency across the workers, print the top words and
the time it took. The map (split) runs where each block of text is read; the reduce
(frequencies) combines the per-block counts, as MapReduce does.

    python3 wordcount.py tcp://127.0.0.1:8786 'corpus/*.txt' [--top 10] [--counts out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import dask.bag as db
from distributed import Client


def word_counts(paths: list[str], blocksize: str | int | None = "16MiB") -> db.Bag:
    """The bag of (word, count) pairs for the words (split on white space) in ``paths``."""
    lines = db.read_text(paths, blocksize=blocksize)
    return lines.str.split().flatten().frequencies(sort=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scheduler", help="the scheduler's address, e.g. tcp://127.0.0.1:8786")
    parser.add_argument("paths", nargs="+", help="text files or globs")
    parser.add_argument("--top", type=int, default=10, help="how many of the most frequent words to print")
    parser.add_argument("--blocksize", default="16MiB", help="bytes of text per task")
    parser.add_argument("--counts", help="also write every word's count to this JSON file")
    args = parser.parse_args()
    with Client(args.scheduler, timeout=30) as client:
        started = time.perf_counter()
        counts = dict(word_counts(args.paths, args.blocksize).compute())
        elapsed = time.perf_counter() - started
        workers = len(client.scheduler_info()["workers"])
    for word, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[: args.top]:
        print(f"{count:>12,}  {word}")
    print(f"{sum(counts.values()):,} words, {len(counts):,} distinct, in {elapsed:.2f}s on {workers} worker(s)")
    if args.counts:
        with open(args.counts, "w") as out:
            json.dump(counts, out)


if __name__ == "__main__":
    main()
