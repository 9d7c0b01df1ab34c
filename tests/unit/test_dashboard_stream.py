"""The dashboard's status stream at size (issue 12.3): above FOLD_AT nodes it carries the
folded view (counts per host and role, only the nodes that need attention), a listener that
has the previous version gets only the rows that changed, and a history point needs no node
row. Pure functions, plus the hub against a stand-in for the farm's status."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from farmhand.api import live


def node(node_id: str, host: str, state: str = "running", health: str = "healthy", uptime: float = 5.0) -> dict[str, Any]:
    return {"id": node_id, "role": node_id.split("-")[0], "host": host, "state": state, "health": health,
            "uptime": uptime, "restarts": 0, "pid": 1, "reason": ""}


def host(name: str, **states: int) -> dict[str, Any]:
    return {"name": name, "driver": "fake", "state": "up", "nodes": sum(states.values()), "states": states}


def farm_status(time: float = 100.0) -> dict[str, Any]:
    return {
        "time": time, "farm": "big", "nodes_total": 4, "nodes_complete": True,
        "roles": [{"name": "web", "states": {"running": 3, "starting": 1}, "requests_per_s": None}],
        "hosts": [host("sim-1", running=2), host("sim-2", running=1, starting=1)],
        "nodes": [node("web-1", "sim-1"), node("web-2", "sim-1"), node("web-3", "sim-2"),
                  node("web-4", "sim-2", "starting", "unknown")],
    }


def apply_patch(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """What the page does with a ``patch`` frame (web/app.js applyPatch): rows by key."""
    merged = {k: v for k, v in patch.items() if not k.endswith("_gone")}
    for field, key in live.KEYED_LISTS:
        fresh = {row[key]: row for row in patch[field]}
        gone = set(patch[f"{field}_gone"])
        rows = [fresh.pop(row[key], row) for row in base[field] if row[key] not in gone]
        merged[field] = rows + list(fresh.values())
    return merged


def steady(status: dict[str, Any]) -> str:
    return live.status_signature(status)


def test_a_patch_carries_only_what_changed_and_rebuilds_the_status() -> None:
    before = farm_status()
    after = copy.deepcopy(before)
    after["time"] = 101.0
    for row in after["nodes"]:
        row["uptime"] += 1.0  # the clock alone: not a change
    after["nodes"][3].update(state="running", health="healthy")  # web-4 became healthy
    after["hosts"][1]["states"] = {"running": 2}
    after["roles"][0]["states"] = {"running": 4}
    after["nodes"].append(node("web-5", "sim-1", "pending", "unknown"))
    after["hosts"][0]["states"] = {"running": 2, "pending": 1}
    del after["nodes"][0]  # web-1 left
    after["hosts"][0]["states"] = {"running": 1, "pending": 1}

    patch = live.status_patch(before, after)
    assert patch is not None
    assert [n["id"] for n in patch["nodes"]] == ["web-4", "web-5"]
    assert patch["nodes_gone"] == ["web-1"]
    assert [h["name"] for h in patch["hosts"]] == ["sim-1", "sim-2"] and patch["hosts_gone"] == []
    assert patch["roles"] == after["roles"] and patch["time"] == 101.0
    assert steady(apply_patch(before, patch)) == steady(after)


def test_an_unchanged_host_is_left_out_of_the_patch() -> None:
    before = farm_status()
    after = copy.deepcopy(before)
    after["nodes"][2]["health"] = "unhealthy"
    patch = live.status_patch(before, after)
    assert patch is not None
    assert patch["hosts"] == [] and [n["id"] for n in patch["nodes"]] == ["web-3"]
    assert len(json.dumps(patch)) < len(json.dumps(after))


def test_a_whole_status_when_there_is_nothing_to_patch_or_the_hosts_changed() -> None:
    assert live.status_patch(None, farm_status()) is None
    after = farm_status()
    after["hosts"].append(host("sim-3"))
    assert live.status_patch(farm_status(), after) is None  # a reload added a host


def test_a_folded_status_gives_the_same_history_point_as_the_full_one() -> None:
    full = farm_status()
    folded = {**copy.deepcopy(full), "nodes_complete": False,
              "nodes": [n for n in full["nodes"] if (n["state"], n["health"]) != ("running", "healthy")]}
    assert live.sample_from(folded) == live.sample_from(full)
    assert live.sample_from(full)["nodes"] == {"web": 4} and live.sample_from(full)["healthy"] == {"web": 3}


class StandIn:
    """The farm as the hub sees it through ``intents``: a size, and the calls made."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.asked: list[str] = []
        self.stopped = False

    async def status(self, _farm: object, nodes: str = "auto") -> dict[str, Any]:
        self.asked.append(nodes)
        listed = self.size if nodes == "all" else 1
        return {"time": float(len(self.asked)), "nodes_total": self.size, "nodes_complete": nodes == "all",
                "roles": [{"name": "web", "states": {"running": self.size - 1, "starting": 1}}],
                "hosts": [host("sim-1", running=self.size - 1, starting=1)],
                "nodes": [node(f"web-{i}", "sim-1") for i in range(listed)]}

    async def until_stopped(self, _farm: object, seconds: float) -> bool:
        await asyncio.sleep(0)
        return self.stopped


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> StandIn:
    farm = StandIn(size=live.FOLD_AT + 1)
    monkeypatch.setattr(live.intents, "status", farm.status)
    monkeypatch.setattr(live.intents, "until_stopped", farm.until_stopped)
    monkeypatch.setattr(live.intents, "is_stopped", lambda _farm: farm.stopped)
    monkeypatch.setattr(live.intents, "watched", lambda _farm: farm.asked.append("watched"))
    return farm


async def next_status_frame(frames: AsyncIterator[str]) -> str:
    """The next ``status`` or ``patch`` frame (samples and keepalives pass by)."""
    async for chunk in frames:
        for frame in chunk.split("\n\n"):
            if "\nevent: status\n" in frame or "\nevent: patch\n" in frame:
                return frame
    raise AssertionError("the stream ended")


async def test_a_large_farm_is_streamed_folded_and_a_small_one_whole(stand_in: StandIn) -> None:
    hub = live.LiveFarm(object())  # type: ignore[arg-type]
    status = await hub.status()
    assert stand_in.asked == ["summary"] and status["nodes_complete"] is False and len(status["nodes"]) == 1

    stand_in.size = live.FOLD_AT  # it shrank: one summary says so, then the whole list
    status = await hub.status()
    assert stand_in.asked[1:] == ["summary", "all"] and len(status["nodes"]) == live.FOLD_AT
    await hub.status()
    assert stand_in.asked[3:] == ["all"]  # known small: no summary first


async def test_a_listener_gets_the_status_then_patches(stand_in: StandIn) -> None:
    hub = live.LiveFarm(object())  # type: ignore[arg-type]
    frames = hub.frames()
    first = await next_status_frame(frames)
    assert first.startswith("id: 1\nevent: status\n")
    assert "watched" in stand_in.asked, "an open stream says someone is watching"
    stand_in.size += 1  # a new node: the host's and the role's counts change
    second = await next_status_frame(frames)
    event, data = second.split("\n")[1:3]
    assert event == "event: patch"
    patch = json.loads(data.removeprefix("data: "))
    assert [h["name"] for h in patch["hosts"]] == ["sim-1"] and patch["nodes"] == []
    stand_in.stopped = True
    await frames.aclose()
