"""The client side of the API: typed async REST calls, watches and kubeconfig handling."""

from minik8s.api.errors import (AlreadyExists, BadRequest, Conflict, Forbidden, Gone, Invalid,
                                NotFound, StatusError, Unauthorized)
from minik8s.client.kubeconfig import ClientConfig, load_kubeconfig, write_kubeconfig
from minik8s.client.rest import PATCH_TYPES, Client

__all__ = ["Client", "ClientConfig", "load_kubeconfig", "write_kubeconfig", "PATCH_TYPES",
           "StatusError", "NotFound", "AlreadyExists", "Conflict", "Invalid", "Gone",
           "BadRequest", "Forbidden", "Unauthorized"]
