"""The Spark standalone example farm (examples/mapreduce/spark.toml, issue 16) brought up
once for the module with the real `farmhand` command: the classic word count is right to the
last word, and a worker killed with -9 mid-job neither loses the job nor stays dead."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.farmkit import Farm, free_port, wait_for
from tests.integration.mapreduce.corpus import EXAMPLES, example_farm, write_corpus

pytest.importorskip("pyspark")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900),
              pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java 17 (openjdk-17-jre-headless)")]
SLOW = 300.0  # JVMs on two shared cores: a master, workers, executors and the driver each take seconds


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Farm, str, str]]:
    master_port, ui_port = free_port(), free_port()
    farm = example_farm(tmp_path_factory.mktemp("spark") / "farm", "spark.toml",
                        {"7077": master_port, "8080": ui_port})
    status_url = f"http://127.0.0.1:{ui_port}/json/"
    try:
        farm.up(timeout=SLOW)
        farm.wait_ready("master", 1, timeout=SLOW)
        wait_for(lambda: master(status_url)["aliveworkers"] >= 1, SLOW, "a worker registered with the master")
        yield farm, f"spark://127.0.0.1:{master_port}", status_url
    finally:
        farm.cleanup()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Counter[str]]:
    folder = tmp_path_factory.mktemp("corpus")
    return folder, write_corpus(folder, files=8, lines=3000)


def master(url: str) -> dict[str, Any]:
    status: dict[str, Any] = httpx.get(url, timeout=5, trust_env=False).json()
    return status


def word_count(farm: Farm, url: str, paths: list[str], out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(EXAMPLES / "wordcount_spark.py"), url, *paths, "--counts", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=farm.env)


def finish(job: subprocess.Popen[str]) -> str:
    try:
        stdout, stderr = job.communicate(timeout=SLOW)
    finally:
        job.kill()
    assert job.returncode == 0, stderr[-3000:]
    return stdout


def test_the_word_count_matches_a_direct_count(cluster: tuple[Farm, str, str],
                                               corpus: tuple[Path, Counter[str]]) -> None:
    farm, url, _ = cluster
    folder, expected = corpus
    out = folder.parent / "spark-counts.json"
    stdout = finish(word_count(farm, url, [str(folder / "*.txt")], out))
    assert json.loads(out.read_text()) == dict(expected)
    top_word, top_count = expected.most_common(1)[0]
    assert f"{top_count:>12,}  {top_word}" in stdout


def test_a_worker_killed_mid_job_costs_neither_the_job_nor_the_worker(
        cluster: tuple[Farm, str, str], corpus: tuple[Path, Counter[str]]) -> None:
    farm, url, status_url = cluster
    folder, expected = corpus
    out = folder.parent / "spark-counts-killed.json"
    paths = [str(p) for p in sorted(folder.glob("*.txt"))] * 20  # each file read 20 times: a long job
    job = word_count(farm, url, paths, out)
    try:
        def busy_worker() -> dict[str, Any] | None:
            ports = {w["port"] for w in master(status_url)["workers"] if w["state"] == "ALIVE" and w["coresused"]}
            return next((n for n in farm.ready_nodes("workers") if n["port"] in ports), None)

        victim = wait_for(busy_worker, SLOW, "a worker running the job's executor", interval=0.2)
        os.kill(victim["pid"], signal.SIGKILL)
        assert job.poll() is None, "the job ended before the worker was killed: make the corpus larger"
    finally:
        stdout = finish(job)
    assert json.loads(out.read_text()) == {word: 20 * count for word, count in expected.items()}, stdout
    wait_for(lambda: any(e["kind"] == "node.failed" and e["node"] == victim["id"] for e in farm.events()),
             SLOW, f"farmhand to see {victim['id']} die")

    def back(node: str = victim["id"]) -> bool:
        now = next((n for n in farm.nodes("workers") if n["id"] == node), None)
        return now is not None and now["pid"] != victim["pid"] and now["state"] == "running"

    # restarted in its slot, unless the autoscaler removed that slot since: then it is stopped
    wait_for(lambda: back() or any(e["kind"] == "node.stopped" and e["node"] == victim["id"] for e in farm.events()),
             SLOW, f"{victim['id']} running again")
