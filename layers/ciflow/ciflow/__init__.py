"""ciflow: content checks for COS uploads, run as Cloud Infinite jobs from SCF functions."""

__version__ = "0.1.0"
