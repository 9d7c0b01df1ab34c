"""Fleet answers without hosts: gathering equal outputs, exit statuses, the release scripts."""

from __future__ import annotations

from farmhand.fleet import gather, releases
from farmhand.fleet.gather import HostResult


def _result(host: str, output: str, status: int = 0) -> HostResult:
    return HostResult(host, status, output.encode())


def test_equal_answers_gather_under_their_folded_hosts() -> None:
    results = [_result(f"h{i}", "Linux 6.1\n") for i in range(1, 11)]
    results[4] = _result("h5", "oops\n", 2)
    results.append(HostResult("h11", gather.UNREACHABLE, error="connection refused by 10.213.0.20:22"))
    groups = gather.gather(results)
    assert [(g.nodes, g.count, g.status) for g in groups] == [("h[1-4,6-10]", 9, 0), ("h5", 1, 2)]
    text = gather.gathered_text(results)
    assert "h[1-4,6-10] (9)\n" in text and "h5 (1, exit 2)\n" in text and text.count("Linux 6.1") == 1
    assert gather.exit_status(results) == 255
    problems = gather.problems_text(results)
    assert "unreachable: h11: connection refused by 10.213.0.20:22" in problems
    assert "exit 2: h5" in problems


def test_prefixed_lines_and_progress() -> None:
    assert gather.prefixed(_result("h1", "a\nb")) == ["h1: a", "h1: b"]
    assert gather.progress_text(8, 10, ["h3", "h4"]) == "8/10 done; waiting for h[3-4]"
    assert gather.exit_status([]) == 0


def test_results_survive_json() -> None:
    result = HostResult("h1", 124, b"partial\n", timed_out=True, seconds=1.5)
    assert HostResult.from_json(result.to_json()) == result


def test_release_names_sort_by_time() -> None:
    first, second = releases.release_name(1_700_000_000.001), releases.release_name(1_700_000_000.5)
    assert first < second
    assert releases.RELEASE_NAME.fullmatch(first)


def test_release_scripts_quote_what_they_are_given() -> None:
    script = releases.switch_script("/srv/my app", "20261129T000000.000Z", 3)
    assert "d='/srv/my app'" in script and "mv -T" in script and "-gt 3" in script
    assert "'echo $HOME; rm x'" in releases.after_script("/srv/a", "r", "echo $HOME; rm x")
