"""One progress figure for a whole sync: rsync's --info=progress2 lines and --stats block
parsed, and every host's progress added up (pure)."""

from __future__ import annotations

from farmhand.fleet import sync_progress as sp
from farmhand.fleet.sync_progress import RsyncProgress, RsyncStats

STATS = """
Number of files: 31 (reg: 30, dir: 1)
Number of created files: 0
Number of regular files transferred: 1
Total file size: 9,000,002 bytes
Total transferred file size: 300,002 bytes
"""


def test_progress2_lines_give_bytes_sent_and_entries_left_to_check() -> None:
    assert sp.parse_progress("      1,200,000  13%  101.20MB/s    0:00:00 (xfr#4, to-chk=26/31)") == \
        RsyncProgress(1_200_000, 26, 31)
    assert sp.parse_progress("         32,768   0%    0.00kB/s    0:00:00  ") == RsyncProgress(32_768)
    assert sp.parse_progress("              0   0%    0.00kB/s    0:00:00 (xfr#0, ir-chk=3/9)") == \
        RsyncProgress(0, 3, 9)
    for other in ("Number of files: 31 (reg: 30, dir: 1)", "sent 300,572 bytes  received 31 bytes", ""):
        assert sp.parse_progress(other) is None


def test_updates_split_on_carriage_returns_and_newlines_keeping_the_unfinished_rest() -> None:
    lines, rest = sp.split_updates("\r   0   0%  0.00kB/s  0:00:00\r  10 100%  1kB/s  0:00:00 (xfr#1, to-chk=0/2)\n\nNumb")
    assert len(lines) == 2 and rest == "Numb"


def test_stats_say_files_and_bytes_transferred_or_none_when_rsync_failed_first() -> None:
    assert sp.parse_stats(STATS) == RsyncStats(files=1, bytes=300_002, entries=31)
    assert sp.parse_stats("rsync: connection unexpectedly closed") is None


def test_the_whole_sync_counts_entries_checked_over_every_host() -> None:
    tally = sp.Tally(["h1", "h2", "h3"])
    assert tally.overall().entries is None, "nothing known yet: no total"
    tally.update("h1", RsyncProgress(100, 26, 31))
    now = tally.overall()
    assert (now.checked, now.entries, now.bytes) == (5, 93, 100), "hosts not reporting yet count as the same tree"
    tally.update("h1", RsyncProgress(150))  # a line with no to-chk keeps the last count
    tally.update("h2", RsyncProgress(50, 0, 31))
    tally.finish("h3", None)  # failed before its rsync: counted as done, nothing sent
    now = tally.overall()
    assert (now.checked, now.entries, now.bytes, now.hosts_done) == (5 + 31 + 31, 93, 200, 1)
    tally.finish("h1", RsyncStats(files=2, bytes=160, entries=31))
    tally.finish("h2", RsyncStats(files=1, bytes=50, entries=31))
    now = tally.overall()
    assert (now.checked, now.entries, now.bytes, now.hosts_done, now.hosts) == (93, 93, 210, 3, 3)


def test_the_plain_summary_adds_up_what_every_host_transferred() -> None:
    stats = [RsyncStats(3, 2_500_000, 31), None, RsyncStats(0, 0, 31)]
    assert sp.summary(stats, 3) == "3 hosts: 3 files (2.5 MB) transferred, 62 entries checked"
    assert sp.summary([RsyncStats(1, 12, 2)], 1) == "1 host: 1 file (12 bytes) transferred, 2 entries checked"
