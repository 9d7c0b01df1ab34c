"""The store: intent and history (nodes asked for, their states, events).

Drivers tell what really runs; the store tells what was wanted. Every state change is
written here before it is acted on, so a controller that dies at any point recovers.
"""

from farmhand.store.base import Store
from farmhand.store.sqlite import SqliteStore

__all__ = ["SqliteStore", "Store"]
