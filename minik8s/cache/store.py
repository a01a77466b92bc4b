"""The local cache an informer fills and controllers read instead of the API server.

Reading from memory keeps reconcile loops cheap and takes load off the API server; indexes
answer the questions controllers ask over and over ("the pods of this namespace", "the pods
bound to this node") without a scan. The store keeps the objects it is given, not copies:
copying every object on every event and every read would dominate the cost of a cache, so the
contract is the one client-go's indexer has — **callers must not mutate objects they put in or
get out** (``minik8s.api.meta.deepcopy`` one first). Everything runs on one event loop, so there
is no locking.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Mapping

from minik8s.api.meta import Obj, get_path, key_of, labels_of, namespace_of

IndexFunc = Callable[[Obj], list[str]]
KeyFunc = Callable[[Obj], str]

NAMESPACE_INDEX = "namespace"


def namespace_index(obj: Obj) -> list[str]:
    """Index by ``metadata.namespace`` (cluster-scoped objects index under ``""``)."""
    return [namespace_of(obj)]


def field_index(path: str) -> IndexFunc:
    """Index by one dotted field, e.g. ``field_index("spec.nodeName")``. Objects where the field
    is missing or empty are not indexed; list values index under each element."""

    def index(obj: Obj) -> list[str]:
        value = get_path(obj, path)
        if value is None or value == "":
            return []
        if isinstance(value, (list, tuple)):
            return [str(v) for v in value if v is not None and v != ""]
        return [str(value)]

    index.__name__ = f"field_index({path})"
    return index


def label_index(label: str) -> IndexFunc:
    """Index by the value of one label; objects without the label are not indexed."""

    def index(obj: Obj) -> list[str]:
        value = labels_of(obj).get(label)
        return [] if value is None else [value]

    index.__name__ = f"label_index({label})"
    return index


class Store:
    """Objects by ``namespace/name`` plus any number of secondary indexes."""

    def __init__(self, indexers: Mapping[str, IndexFunc] | None = None, *,
                 key_func: KeyFunc = key_of):
        self._key_func = key_func
        self._items: dict[str, Obj] = {}
        self._indexers: dict[str, IndexFunc] = {}
        # index name -> indexed value -> keys
        self._indices: dict[str, dict[str, set[str]]] = {}
        self.add_indexers(indexers or {})

    # --- indexers -------------------------------------------------------------------

    def add_indexers(self, indexers: Mapping[str, IndexFunc]) -> None:
        """Add indexes; existing objects are indexed at once. Re-adding the same function
        under the same name is a no-op; a different one under a taken name is an error."""
        for name, fn in indexers.items():
            if name in self._indexers:
                if self._indexers[name] is not fn:
                    raise ValueError(f"indexer {name!r} already exists")
                continue
            self._indexers[name] = fn
            index: dict[str, set[str]] = {}
            self._indices[name] = index
            for key, obj in self._items.items():
                for value in fn(obj):
                    index.setdefault(value, set()).add(key)

    @property
    def indexers(self) -> dict[str, IndexFunc]:
        return dict(self._indexers)

    def by_index(self, index_name: str, value: str) -> list[Obj]:
        """The objects whose index function returned ``value``."""
        return [self._items[k] for k in sorted(self._index(index_name).get(value, ()))]

    def index_keys(self, index_name: str, value: str) -> list[str]:
        """The keys of the objects whose index function returned ``value``."""
        return sorted(self._index(index_name).get(value, ()))

    def index_values(self, index_name: str) -> list[str]:
        """Every value under which at least one object is indexed."""
        return sorted(self._index(index_name))

    def _index(self, name: str) -> dict[str, set[str]]:
        try:
            return self._indices[name]
        except KeyError:
            raise KeyError(f"no indexer named {name!r}") from None

    def _unindex(self, key: str, obj: Obj) -> None:
        for name, fn in self._indexers.items():
            index = self._indices[name]
            for value in fn(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]

    def _reindex(self, key: str, obj: Obj) -> None:
        for name, fn in self._indexers.items():
            index = self._indices[name]
            for value in fn(obj):
                index.setdefault(value, set()).add(key)

    # --- objects --------------------------------------------------------------------

    def key(self, obj: Obj) -> str:
        return self._key_func(obj)

    def add(self, obj: Obj) -> None:
        """Insert or replace the object under its key."""
        key = self._key_func(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        self._reindex(key, obj)

    update = add

    def delete(self, obj_or_key: Obj | str) -> Obj | None:
        """Remove by object or key; the removed object (``None`` when absent)."""
        key = obj_or_key if isinstance(obj_or_key, str) else self._key_func(obj_or_key)
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def get(self, obj_or_key: Obj | str) -> Obj | None:
        """The stored object with this key (or with the key of the given object)."""
        key = obj_or_key if isinstance(obj_or_key, str) else self._key_func(obj_or_key)
        return self._items.get(key)

    def get_by_key(self, key: str) -> Obj | None:
        return self._items.get(key)

    def list(self) -> list[Obj]:
        return list(self._items.values())

    def keys(self) -> list[str]:
        return list(self._items)

    def replace(self, items: Iterable[Obj]) -> None:
        """Make the store hold exactly ``items`` (what a fresh list returned)."""
        self._items = {}
        for index in self._indices.values():
            index.clear()
        for obj in items:
            self.add(obj)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[Obj]:
        return iter(list(self._items.values()))


__all__ = ["Store", "IndexFunc", "KeyFunc", "NAMESPACE_INDEX", "namespace_index", "field_index",
           "label_index"]
