"""The store's state as a server reads it on every request: cached, reloaded when it changes."""

from __future__ import annotations

import hmac

from lambdaserve.store.captures import capture_rates
from lambdaserve.store.records import Alias, ApiKey, ModelVersion, UsagePlan
from lambdaserve.store.store import Store, hash_key


class Catalog:
    """The store's aliases, versions, keys, plans and capture rates, cached; reloaded when the store changes
    (another process, the CLI, committed), which costs one ``PRAGMA data_version`` to tell."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._seen = -1
        self.aliases: dict[tuple[str, str], Alias] = {}
        self.versions: dict[tuple[str, int], ModelVersion] = {}
        self.keys: dict[str, ApiKey] = {}
        self.plans: dict[str, UsagePlan] = {}
        self.captures: dict[tuple[str, str], float] = {}  # (model, stage) -> capture rate, when on
        self.refresh()

    def refresh(self, force: bool = False) -> bool:
        """Reload if the store changed (``force``: even if not); whether it reloaded."""
        seen = self.store.data_version()
        if seen == self._seen and not force:
            return False
        self._seen = seen
        self.versions = {(v.model, v.version): v for v in self.store.versions()}
        self.aliases = {(a.model, a.stage): a for a in self.store.aliases()}
        self.keys = {k.hash: k for k in self.store.api_keys()}
        self.plans = {p.id: p for p in self.store.plans()}
        self.captures = capture_rates(self.store)
        return True

    def key(self, value: str) -> ApiKey | None:
        """The enabled key with this value, or None."""
        digest = hash_key(value)
        key = self.keys.get(digest)
        if key is None or not key.enabled or not hmac.compare_digest(key.hash, digest):
            return None
        return key
