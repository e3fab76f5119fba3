"""Experiment trackers: ``none`` or Weights & Biases (offline unless configured)."""

from cxrad.logger.tracking import NullTracker, WandbTracker, tracker

__all__ = ["NullTracker", "WandbTracker", "tracker"]
