"""The machinery every controller shares: work queue, reconcile loop, manager and leader
election, so that a controller module holds only its reconcile logic."""

from minik8s.runtime.controller import Controller, ReconcileFunc, Reconciler, Result
from minik8s.runtime.leaderelection import LeaderElector
from minik8s.runtime.manager import CacheSyncTimeout, LeadershipLost, Manager, Runnable
from minik8s.runtime.workqueue import (Clock, ItemExponentialFailureRateLimiter, RateLimiter,
                                       RealClock, ShutDown, WorkQueue)

__all__ = ["Controller", "Reconciler", "ReconcileFunc", "Result", "LeaderElector", "Manager",
           "Runnable", "LeadershipLost", "CacheSyncTimeout", "WorkQueue", "ShutDown", "Clock",
           "RealClock", "RateLimiter", "ItemExponentialFailureRateLimiter"]
