"""minik8s."""
