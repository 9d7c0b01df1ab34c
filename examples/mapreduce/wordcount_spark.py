"""Word count on the farm's Spark standalone cluster, the classic way: flatMap each line into
words, map each word to (word, 1), reduceByKey to add them up; print the top words and the time.

    python3 wordcount_spark.py spark://127.0.0.1:7077 'corpus/*.txt' [--top 10] [--counts out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

from pyspark.sql import SparkSession


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("master", help="the master's URL, e.g. spark://127.0.0.1:7077")
    parser.add_argument("paths", nargs="+", help="text files or globs")
    parser.add_argument("--top", type=int, default=10, help="how many of the most frequent words to print")
    parser.add_argument("--partitions", type=int, default=0, help="at least this many input splits (0: Spark's choice)")
    parser.add_argument("--counts", help="also write every word's count to this JSON file")
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    spark = (SparkSession.builder.master(args.master).appName("wordcount")
             .config("spark.driver.host", os.environ["SPARK_LOCAL_IP"])
             .config("spark.executor.memory", "512m")
             .config("spark.decommission.enabled", "true")
             .getOrCreate())
    spark.sparkContext.setLogLevel("WARN")
    try:
        started = time.perf_counter()
        lines = spark.sparkContext.textFile(",".join(args.paths), minPartitions=args.partitions or None)
        counts = dict(lines.flatMap(lambda line: line.split())
                           .map(lambda word: (word, 1))
                           .reduceByKey(lambda a, b: a + b)
                           .collect())
        elapsed = time.perf_counter() - started
        workers = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1  # less the driver
    finally:
        spark.stop()
    for word, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[: args.top]:
        print(f"{count:>12,}  {word}")
    print(f"{sum(counts.values()):,} words, {len(counts):,} distinct, in {elapsed:.2f}s on {workers} executor(s)")
    if args.counts:
        with open(args.counts, "w") as out:
            json.dump(counts, out)


if __name__ == "__main__":
    main()
