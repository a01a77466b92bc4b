"""minik8s: the library every daemon imports (API model, client, caches, runtime, PKI, CLI)."""

__version__ = "0.1.0"
