"""State: models, versions, stage aliases, usage plans, API keys and usage, in SQLite.

One SQLite database in WAL mode under the state directory (``./.lambdaserve`` by
default, ``--state-dir`` or ``$LAMBDASERVE_HOME``), plus content-addressed model files.
The CLI writes it directly, with or without a server running; a running server notices
other writers' commits (``PRAGMA data_version``) and reloads what changed.
"""

from lambdaserve.store.records import Alias, ApiKey, ModelVersion, UsagePlan
from lambdaserve.store.store import Store, default_state_dir

__all__ = ["Alias", "ApiKey", "ModelVersion", "Store", "UsagePlan", "default_state_dir"]
