"""When a big farm at rest moves its long-lived objects out of the collector's way."""

from __future__ import annotations

import gc

from farmhand.controller.heap import MIN_NODES, REFREEZE_EVERY, HeapKeeper, should_freeze


def test_a_small_farm_keeps_pythons_defaults() -> None:
    assert not should_freeze(MIN_NODES - 1, None, None, 0.0)


def test_a_big_farm_freezes_once_then_again_after_a_change_of_a_quarter_or_an_hour() -> None:
    assert should_freeze(10_000, None, None, 0.0)
    assert not should_freeze(10_000, 10_000, 0.0, 10.0)
    assert not should_freeze(12_500, 10_000, 0.0, 10.0)
    assert should_freeze(12_501, 10_000, 0.0, 10.0)
    assert should_freeze(7_499, 10_000, 0.0, 10.0)
    assert should_freeze(10_000, 10_000, 0.0, REFREEZE_EVERY)


def test_freezing_moves_living_objects_to_the_permanent_generation_and_refreezing_unfreezes_first() -> None:
    keeper = HeapKeeper()
    try:
        kept = [[i] for i in range(20_000)]  # long-lived objects, as a farm's records are
        assert keeper.at_rest(MIN_NODES, 0.0)
        frozen = gc.get_freeze_count()
        assert frozen >= len(kept)
        assert not keeper.at_rest(MIN_NODES, 1.0)
        assert gc.get_freeze_count() <= frozen  # nothing frozen again (frozen objects may still die)
        del kept
        assert keeper.at_rest(MIN_NODES, REFREEZE_EVERY)  # what died meanwhile is not frozen again
        assert gc.get_freeze_count() < frozen
    finally:
        gc.unfreeze()
