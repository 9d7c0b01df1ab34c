"""Releases on a host, as POSIX sh scripts (pure string builders, tested without a host).

Layout under a destination DEST:

    DEST/releases/<name>/   one folder per sync; <name> is a UTC timestamp, so names sort by age
    DEST/current            a symlink to releases/<name>, switched with one rename (atomic)

A new release starts as a hard-linked copy of the current one (``cp -al``): rsync then finds
unchanged files unchanged and sends only the rest, and writes a changed file as a new file
(never in place), so the running release is never touched. Old releases beyond ``keep`` are
removed, never the one ``current`` points to.
"""

from __future__ import annotations

import re
import shlex
import time

RELEASE_NAME = re.compile(r"^[0-9]{8}T[0-9]{6}\.[0-9]{3}Z$")
NO_PREVIOUS = 3
"""Exit status of the rollback script when there is no older release to go back to."""


def q(text: str) -> str:
    return shlex.quote(text)


def release_name(now: float | None = None) -> str:
    """``20261129T222700.123Z``: sortable, the same on every host of one sync."""
    now = time.time() if now is None else now
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def prepare_script(dest: str, release: str) -> str:
    """Make DEST/releases/<release>, seeded with hard links of the current release."""
    return f"""set -e
d={q(dest)}; r={q(release)}
mkdir -p "$d/releases"
if [ -e "$d/releases/$r" ]; then echo "release $r already exists" >&2; exit 1; fi
if [ -d "$d/current/" ]; then cp -al "$d/current/." "$d/releases/$r.tmp"; else mkdir "$d/releases/$r.tmp"; fi
mv "$d/releases/$r.tmp" "$d/releases/$r"
"""


def after_script(dest: str, release: str, command: str) -> str:
    """``command`` in the new release's folder, before the switch (RELEASE and DEST set)."""
    path = f"{dest.rstrip('/')}/releases/{release}"
    return f"cd {q(path)} && RELEASE={q(path)} DEST={q(dest)} exec /bin/sh -c {q(command)}"


def switch_script(dest: str, release: str, keep: int) -> str:
    """Point DEST/current at the release with one rename, then prune to ``keep`` releases."""
    return f"""set -e
d={q(dest)}; r={q(release)}
[ -d "$d/releases/$r" ] || {{ echo "no release $r in $d/releases" >&2; exit 1; }}
ln -sfn "releases/$r" "$d/.current.$$"
mv -T "$d/.current.$$" "$d/current"
{_prune(keep)}
"""


def _prune(keep: int) -> str:
    return f"""cur=$(readlink "$d/current" | sed 's|^releases/||')
n=0
for rel in $(ls -1 "$d/releases" | grep -E '^[0-9]{{8}}T[0-9]{{6}}\\.[0-9]{{3}}Z$' | sort -r); do
  n=$((n + 1))
  if [ "$n" -gt {int(keep)} ] && [ "$rel" != "$cur" ]; then rm -rf "$d/releases/$rel"; fi
done"""


def discard_script(dest: str, release: str) -> str:
    """Remove a release that was not switched to (its ``after`` failed), unless current."""
    return f"""d={q(dest)}; r={q(release)}
[ "$(readlink "$d/current")" = "releases/$r" ] || rm -rf "$d/releases/$r"
"""


def rollback_script(dest: str) -> str:
    """Switch DEST/current to the newest release older than the current one; print it."""
    return f"""set -e
d={q(dest)}
cur=$(readlink "$d/current" 2>/dev/null | sed 's|^releases/||') || cur=
[ -n "$cur" ] || {{ echo "$d/current is not a release link" >&2; exit 1; }}
prev=$(ls -1 "$d/releases" | grep -E '^[0-9]{{8}}T[0-9]{{6}}\\.[0-9]{{3}}Z$' | sort | awk -v c="$cur" '$0 < c' | tail -n 1)
[ -n "$prev" ] || {{ echo "no release older than $cur in $d/releases" >&2; exit {NO_PREVIOUS}; }}
ln -sfn "releases/$prev" "$d/.current.$$"
mv -T "$d/.current.$$" "$d/current"
echo "$prev"
"""


def current_script(dest: str) -> str:
    return f"readlink {q(dest.rstrip('/') + '/current')} | sed 's|^releases/||'"
