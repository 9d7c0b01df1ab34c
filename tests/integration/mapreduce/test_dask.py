"""The Dask example farm (examples/mapreduce/dask.toml, issue 16) brought up once for the
module with the real `farmhand` command: the word count is right to the last word, a worker
killed with -9 mid-job neither loses the job nor stays dead, and the workers role grows under a
backlog and shrinks back when idle, each leaving worker retired through its pre_stop so that
no finished task is lost (run again)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.farmkit import Farm, free_port, wait_for
from tests.integration.mapreduce.corpus import EXAMPLES, example_farm, write_corpus

distributed = pytest.importorskip("distributed")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # Dask processes on two shared cores
SLOW = 180.0  # two cores shared with other tests: Dask processes start in seconds, not ms


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Farm, str]]:
    scheduler_port, dashboard_port = free_port(), free_port()
    farm = example_farm(tmp_path_factory.mktemp("dask") / "farm", "dask.toml",
                        {"8786": scheduler_port, "8787": dashboard_port})
    try:
        farm.up()
        farm.wait_ready("scheduler", 1, timeout=SLOW)
        wait_for(lambda: farm.ready_nodes("workers"), SLOW, "a running worker")
        yield farm, f"tcp://127.0.0.1:{scheduler_port}"
    finally:
        farm.cleanup()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Counter[str]]:
    folder = tmp_path_factory.mktemp("corpus")
    return folder, write_corpus(folder, files=12, lines=4000)


def client(address: str) -> Any:
    return distributed.Client(address, timeout=60)


def role(farm: Farm, name: str) -> dict[str, Any]:
    return next(r for r in farm.status()["roles"] if r["name"] == name)


def wait_idle_at_min(farm: Farm) -> None:
    """The workers role back at its minimum of one running worker and nothing else."""
    wait_for(lambda: role(farm, "workers")["wanted"] == 1 and len(farm.nodes("workers")) == 1
             and len(farm.ready_nodes("workers")) == 1, SLOW, "the workers role idle at its minimum of 1")


def test_the_word_count_matches_a_direct_count(cluster: tuple[Farm, str], corpus: tuple[Path, Counter[str]]) -> None:
    farm, address = cluster
    folder, expected = corpus
    out = folder.parent / "dask-counts.json"
    result = subprocess.run([sys.executable, str(EXAMPLES / "wordcount.py"), address, str(folder / "*.txt"),
                             "--blocksize", "256KiB", "--counts", str(out)],
                            capture_output=True, text=True, timeout=SLOW, env=farm.env)
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text()) == dict(expected)
    top_word, top_count = expected.most_common(1)[0]
    assert f"{top_count:>12,}  {top_word}" in result.stdout
    assert f"{sum(expected.values()):,} words" in result.stdout


def test_a_worker_killed_mid_job_costs_neither_the_job_nor_the_worker(
        cluster: tuple[Farm, str], corpus: tuple[Path, Counter[str]]) -> None:
    farm, address = cluster
    folder, expected = corpus
    sys.path.insert(0, str(EXAMPLES))
    try:
        import wordcount  # the example's own map and reduce
    finally:
        sys.path.remove(str(EXAMPLES))
    workers = {f"tcp://127.0.0.1:{n['port']}": n for n in farm.ready_nodes("workers")}
    paths = [str(p) for p in sorted(folder.glob("*.txt"))] * 20  # each file read 20 times: a long job
    with client(address) as dask:
        job = dask.compute(wordcount.word_counts(paths, 64 * 1024))
        # a worker in the middle of the job's tasks
        busy = wait_for(lambda: next((a for a, tasks in dask.processing(workers=list(workers)).items() if tasks), None),
                        SLOW, "a worker running the job's tasks", interval=0.01)
        victim = workers[busy]
        os.kill(victim["pid"], signal.SIGKILL)
        assert not job.done(), "the job ended before the worker was killed: make the corpus larger"
        assert dict(job.result(timeout=SLOW)) == {word: 20 * count for word, count in expected.items()}

    def back(node: str = victim["id"]) -> bool:
        now = next((n for n in farm.nodes("workers") if n["id"] == node), None)
        return now is not None and now["pid"] != victim["pid"] and now["state"] == "running"

    wait_for(lambda: any(e["kind"] == "node.failed" and e["node"] == victim["id"] for e in farm.events()),
             SLOW, f"farmhand to see {victim['id']} die")
    # restarted in its slot, unless the autoscaler removed that slot since: then it is stopped
    wait_for(lambda: back() or any(e["kind"] == "node.stopped" and e["node"] == victim["id"] for e in farm.events()),
             SLOW, f"{victim['id']} running again")


def slow_task(marks: str) -> Callable[[int], tuple[int, str]]:
    """A task of half a second that leaves a mark for each time it runs. Made here so that it
    is sent by value: the scheduler and workers cannot import this test module."""

    def slow_square(number: int) -> tuple[int, str]:
        from distributed import get_worker

        Path(marks, f"{number}-{uuid.uuid4().hex}").touch()
        time.sleep(0.5)
        return number * number, str(get_worker().name)

    return slow_square


def test_workers_grow_under_a_backlog_and_shrink_back_retired_losing_no_task(
        cluster: tuple[Farm, str], tmp_path: Path) -> None:
    farm, address = cluster
    wait_idle_at_min(farm)
    first = {n["id"] for n in farm.nodes("workers")}
    marks = tmp_path / "marks"
    marks.mkdir()
    with client(address) as dask:
        futures = dask.map(slow_task(str(marks)), range(80), pure=False)
        wait_for(lambda: role(farm, "workers")["wanted"] > 1, SLOW, "the workers role to grow under the backlog")
        results = dask.gather(futures)
        assert [value for value, _ in results] == [n * n for n in range(80)]
        assert {worker for _, worker in results} - first, "no added worker ran a task"
        # the results stay held on the workers while the role shrinks back
        wait_idle_at_min(farm)
        removed = {e["node"] for e in farm.events() if e["kind"] == "node.stopped"} - first
        hooks = [e for e in farm.events() if e["kind"] == "node.pre_stop" and e["node"] in removed]
        assert removed and {e["node"] for e in hooks} == removed
        assert all("done" in e["message"] for e in hooks), hooks
        again = dask.gather(futures)
    assert again == results
    runs = Counter(mark.name.split("-")[0] for mark in marks.iterdir())
    assert runs == Counter({str(n): 1 for n in range(80)}), "a retired worker's results were computed again"
