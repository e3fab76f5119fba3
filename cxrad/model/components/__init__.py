"""Model parts shared by several detectors."""
