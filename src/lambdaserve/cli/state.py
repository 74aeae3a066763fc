"""The state directory as commands open it: an error where there is none, unless asked to make it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from lambdaserve.errors import LambdaserveError

if TYPE_CHECKING:
    from lambdaserve.store import Store


# The store (sqlite3, secrets, hashlib, ...) is imported when a command uses it, not with the CLI.
def state_root(state_dir: Path | None) -> Path:
    from lambdaserve.store import default_state_dir

    return (state_dir or default_state_dir()).resolve()


@contextmanager
def open_store(state_dir: Path | None, *, create: bool = False) -> Iterator[Store]:
    """The store, closed afterwards; without ``create``, an error where there is none."""
    from lambdaserve.store import Store

    root = state_root(state_dir)
    if not create and not (root / "state.db").is_file():
        raise LambdaserveError(
            f"No lambdaserve state in {root}.",
            "Run this where you ran lambdaserve serve, or pass --state-dir (or set LAMBDASERVE_HOME).",
        )
    store = Store(root)
    try:
        yield store
    finally:
        store.close()


def require_model(store: Store, name: str) -> None:
    known = store.models()
    if name not in known:
        raise LambdaserveError(
            f"No model {name!r} in {store.root}.",
            f"Models here: {', '.join(known)}."
            if known
            else f"Push one first: lambdaserve models push MODEL_FILE --name {name}",
        )
