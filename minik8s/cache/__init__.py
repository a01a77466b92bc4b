"""Client-side caches: a store with indexes, and informers that keep it current from a
watch so controllers read memory instead of asking the API server."""

from minik8s.cache.informer import HandlerRegistration, Informer, InformerFactory
from minik8s.cache.store import (NAMESPACE_INDEX, IndexFunc, Store, field_index, label_index,
                                 namespace_index)

__all__ = ["Store", "IndexFunc", "NAMESPACE_INDEX", "namespace_index", "field_index",
           "label_index", "Informer", "InformerFactory", "HandlerRegistration"]
