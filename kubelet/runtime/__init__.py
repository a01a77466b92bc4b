"""Container runtimes the kubelet can drive (Docker, and a fake for unit tests)."""

from kubelet.runtime.base import (APP, INIT, SANDBOX, ContainerConfig, ContainerInfo,
                                  ContainerRuntime, ExecResult, ImageInfo, Mount)

__all__ = ["ContainerRuntime", "ContainerInfo", "ContainerConfig", "ImageInfo", "Mount",
           "ExecResult", "SANDBOX", "INIT", "APP"]
