"""The product catalogue beside an index: one SQLite table of items, safe to share between threads.

Each item has an `id` (text primary key), an `image` (a path or URL), a `label`, `labels` (a
JSON object of any other label columns), a `text` (product name or description) and
`created`/`updated` timestamps (ISO 8601, UTC). SQLite is embedded, so a catalogue is a single
file (or `":memory:"`); `backup(path)` copies a live database consistently with SQLite's
online backup, which is how `Gallery.save` snapshots it. Every statement is parameterised.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

FIELDS = ("image", "label", "labels", "text")
COLUMNS = ("id", *FIELDS, "created", "updated")
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY NOT NULL,
    image TEXT,
    label TEXT,
    labels TEXT NOT NULL DEFAULT '{}',
    text TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
)
"""
# Ids per `IN (...)` query, below SQLite's limit on bound parameters.
_IN_BATCH = 500


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")


def _check_id(id: Any) -> str:
    if not isinstance(id, str) or not id:
        raise ValueError(f"Item ids must be non-empty strings. Received: id={id!r}")
    return id


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _check_text(name: str, value: str) -> str:
    """`value`, or a ValueError when SQLite could not store it (lone surrogates are not UTF-8)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{name} must be valid Unicode text: it holds {error.object[error.start:error.end]!r} at position "
            f"{error.start} (a lone surrogate, e.g. from bytes that were not UTF-8)."
        ) from None
    return value


def check_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Validated field values (ValueError naming the field), with `labels` as JSON text.

    Text must be encodable as UTF-8; labels must be a dict with string keys whose values are
    standard JSON (no NaN or infinity, which JSON has no words for).
    """
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise ValueError(
            f"Unknown catalogue field(s): {', '.join(unknown)}. Fields: id, {', '.join(FIELDS)} "
            "(put other label columns in labels)."
        )
    out = {}
    for name, value in fields.items():
        if name == "labels":
            if value is None:
                value = {}
            if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
                raise ValueError(f"labels must be a dict with string keys. Received: labels={_short(value)}")
            try:
                text = json.dumps(dict(value), sort_keys=True, ensure_ascii=False, allow_nan=False)
            except RecursionError:
                raise ValueError("labels nest too deeply to be stored as JSON.") from None
            except (TypeError, ValueError) as error:
                raise ValueError(f"labels must hold JSON values ({error}). Received: labels={_short(value)}") from None
            out[name] = _check_text(name, text)
        elif value is not None and not isinstance(value, str):
            raise ValueError(f"{name} must be a string or None. Received: {name}={_short(value)}")
        else:
            out[name] = value if value is None else _check_text(name, value)
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Standard JSON only: NaN and Infinity, which Python's json reads by default, are refused.
_STRICT_JSON = json.JSONDecoder(parse_constant=_reject_constant)


def _saved_problem(row: Sequence[Any]) -> str | None:
    """Why a stored row (COLUMNS order) would be served wrong, or None. For files from elsewhere."""
    item = dict(zip(COLUMNS, row))
    for name in COLUMNS:
        value = item[name]
        if name in ("image", "label", "text") and value is None:
            continue
        if not isinstance(value, str):
            kind = {bytes: "blob", int: "integer", float: "real", type(None): "null"}.get(type(value), "other")
            return f"{name} is {kind}, not text"
    return _labels_problem(item["labels"])


def _labels_problem(text: str) -> str | None:
    """Why stored labels text would be served wrong (not a standard JSON object), or None."""
    try:
        labels = _STRICT_JSON.decode(text)
    except (ValueError, RecursionError):
        return "labels are not valid JSON"
    if not isinstance(labels, dict):
        return "labels are not a JSON object"
    return None


def _item(row: Sequence[Any]) -> dict[str, Any]:
    item = dict(zip(COLUMNS, row))
    item["labels"] = json.loads(item["labels"])
    return item


class Catalogue:
    """Product records in SQLite, shared safely between threads (one connection, one lock).

    Args:
        path: str. Database file, created if needed, or ":memory:" (the default).

    Example:

    >>> catalogue = Catalogue()
    >>> catalogue.add({"id": "p1", "image": "images/p1.jpg", "label": "dress",
    ...                "labels": {"colour": "red"}, "text": "red striped cotton dress"})
    >>> catalogue.get("p1")["labels"]
    {'colour': 'red'}
    """

    def __init__(self, path: str = ":memory:"):
        self.path = str(path)
        self._lock = threading.RLock()
        self._connection = sqlite3.connect(self.path, check_same_thread=False)
        with self._lock, self._connection:
            self._connection.execute(_SCHEMA)
            version = self._connection.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                self._connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version > SCHEMA_VERSION:
                raise ValueError(
                    f"{self.path} has catalogue schema version {version}; this visnet reads up to {SCHEMA_VERSION}."
                )

    # -- reading ------------------------------------------------------------------------------

    def __len__(self) -> int:
        with self._lock:
            return self._connection.execute("SELECT COUNT(*) FROM items").fetchone()[0]

    def __contains__(self, id: object) -> bool:
        if not isinstance(id, str):
            return False
        with self._lock:
            return self._connection.execute("SELECT 1 FROM items WHERE id = ?", (id,)).fetchone() is not None

    def ids(self) -> list[str]:
        """Every id, in insertion order."""
        with self._lock:
            return [row[0] for row in self._connection.execute("SELECT id FROM items ORDER BY rowid")]

    def get(self, id: str) -> dict[str, Any] | None:
        """The item as a dict (id, image, label, labels, text, created, updated), or None when absent."""
        if not isinstance(id, str):
            return None  # SQLite would compare 3 with the text '3'
        with self._lock:
            row = self._connection.execute(
                f"SELECT {', '.join(COLUMNS)} FROM items WHERE id = ?", (id,)).fetchone()
        return None if row is None else _item(row)

    def get_many(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """{id: item} for the ids that are present (absent ones are left out)."""
        ids = list(dict.fromkeys(id for id in ids if isinstance(id, str)))
        found: dict[str, dict[str, Any]] = {}
        with self._lock:
            for start in range(0, len(ids), _IN_BATCH):
                part = ids[start : start + _IN_BATCH]
                marks = ", ".join("?" * len(part))
                for row in self._connection.execute(
                        f"SELECT {', '.join(COLUMNS)} FROM items WHERE id IN ({marks})", part):
                    found[row[0]] = _item(row)
        return found

    # -- writing ------------------------------------------------------------------------------

    def add(self, item: Mapping[str, Any], upsert: bool = False) -> None:
        """Adds one item (a dict with "id" and any of image, label, labels, text).

        Args:
            item: dict. The record; missing fields are stored as None (labels as {}).
            upsert: bool. Replace an existing item's fields (keeping `created`) instead of
                raising ValueError.
        """
        self.add_many([item], upsert=upsert)

    @staticmethod
    def check_items(items: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """Validates items as `add_many` does, changing nothing: their rows (id, *FIELDS), or ValueError."""
        rows, seen = [], set()
        for item in items:
            if not isinstance(item, Mapping) or "id" not in item:
                raise ValueError(f"Each item must be a dict with an 'id'. Received: item={_short(item)}")
            id = _check_id(item["id"])
            if id in seen:
                raise ValueError(f"Duplicate id in one call: {id!r}.")
            seen.add(id)
            fields = check_fields({**dict.fromkeys(FIELDS), **{k: v for k, v in item.items() if k != "id"}})
            rows.append((id, *(fields[name] for name in FIELDS)))
        return rows

    def add_many(self, items: Iterable[Mapping[str, Any]], upsert: bool = False) -> int:
        """Adds items in one transaction, all or none; returns how many."""
        rows = self.check_items(items)
        seen = {row[0] for row in rows}
        now = _now()
        with self._lock:
            if not upsert:
                present = self.get_many(seen)
                if present:
                    first = next(id for id, *_ in rows if id in present)
                    raise ValueError(
                        f"Id {first!r} is already in the catalogue; pass upsert=True to replace it. "
                        f"Received: id={first!r}"
                    )
            conflict = (" ON CONFLICT(id) DO UPDATE SET image = excluded.image, label = excluded.label, "
                        "labels = excluded.labels, text = excluded.text, updated = excluded.updated") if upsert else ""
            with self._connection:
                self._connection.executemany(
                    f"INSERT INTO items ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?){conflict}",
                    [(*row, now, now) for row in rows],
                )
        return len(rows)

    def update(self, id: str, **fields: Any) -> dict[str, Any]:
        """Changes some fields of a known item and its `updated` time (KeyError when unknown).

        Returns:
            dict. The item as it is now.
        """
        values = check_fields(fields)
        with self._lock:
            if id not in self:  # False for an id that is not a string
                raise KeyError(f"Unknown id: {id!r} is not in the catalogue.")
            # Column names come from FIELDS (checked above); values are bound.
            assignments = "".join(f"{name} = ?, " for name in values)
            with self._connection:
                self._connection.execute(
                    f"UPDATE items SET {assignments}updated = ? WHERE id = ?", (*values.values(), _now(), id)
                )
            return self.get(id)

    def remove(self, id: str) -> None:
        """Removes a known item (KeyError when unknown)."""
        if not isinstance(id, str):
            raise KeyError(f"Unknown id: {id!r} is not in the catalogue.")
        with self._lock, self._connection:
            if self._connection.execute("DELETE FROM items WHERE id = ?", (id,)).rowcount == 0:
                raise KeyError(f"Unknown id: {id!r} is not in the catalogue.")

    # -- files --------------------------------------------------------------------------------

    def backup(self, path: str) -> None:
        """Copies the whole database to a new file at `path`, consistently, while it stays in use."""
        if pathlib.Path(path).exists():
            raise FileExistsError(f"backup() writes a new file; {path!r} exists.")
        target = sqlite3.connect(str(path))
        try:
            with self._lock:
                self._connection.backup(target)
        finally:
            target.close()

    @classmethod
    def restore(cls, backup_path: str, path: str = ":memory:") -> Catalogue:
        """A catalogue at `path` (":memory:" by default) with the contents of a backup file.

        The backup file itself is only read, so it can stay checksummed inside a saved gallery.
        """
        if not pathlib.Path(backup_path).is_file():
            raise FileNotFoundError(f"No catalogue backup at {backup_path!r}.")
        catalogue = cls(path)
        source = sqlite3.connect(pathlib.Path(backup_path).resolve().as_uri() + "?mode=ro", uri=True)
        try:
            with catalogue._lock:
                source.backup(catalogue._connection)
        except BaseException:
            catalogue.close()
            raise
        finally:
            source.close()
        return catalogue

    def verify(self) -> None:
        """Checks a catalogue that came from a file (schema and every row): ValueError naming the
        first item that would be served wrong. `Gallery.load` calls it on the saved catalogue."""
        with self._lock:
            version = self._connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ValueError(f"catalogue schema version {version}; this visnet reads up to {SCHEMA_VERSION}.")
            columns = tuple(row[1] for row in self._connection.execute("PRAGMA table_info(items)"))
            if columns != COLUMNS:
                raise ValueError(f"the items table has columns {columns}; expected {', '.join(COLUMNS)}.")
            # Column types in SQL (fast); the rows it flags and every non-empty labels text in Python.
            typed = " AND ".join([
                "typeof(id) = 'text' AND id != ''",
                *(f"typeof({name}) IN ('text', 'null')" for name in ("image", "label", "text")),
                *(f"typeof({name}) = 'text'" for name in ("labels", "created", "updated")),
            ])
            flagged = self._connection.execute(
                f"SELECT {', '.join(COLUMNS)} FROM items WHERE NOT ({typed}) ORDER BY rowid LIMIT 1").fetchone()
            if flagged:
                if not isinstance(flagged[0], str) or not flagged[0]:
                    raise ValueError(f"an item has the id {_short(flagged[0])}; ids are non-empty text.")
                raise ValueError(f"item {_short(flagged[0])}: {_saved_problem(flagged)}.")
            for id, labels in self._connection.execute(
                    "SELECT id, labels FROM items WHERE labels != '{}' ORDER BY rowid"):
                problem = _labels_problem(labels)
                if problem:
                    raise ValueError(f"item {_short(id)}: {problem}.")

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def __enter__(self) -> Catalogue:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Catalogue(path={self.path!r}, items={len(self)})"
