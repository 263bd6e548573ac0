"""The collaborators every entry point works with, injectable for tests and the CLI.

Defaults are the cached real adapters: boto3 for objects, cos-python-sdk-v5 for CI, and the
settings and rules parsed once per cold start.
"""

from __future__ import annotations

from typing import Optional

from .ci import CiJobs
from .rules import RuleSet, get_rules
from .settings import Settings, get_settings
from .storage import Storage


class Ports:
    def __init__(self, storage: Optional[Storage] = None, ci: Optional[CiJobs] = None,
                 settings: Optional[Settings] = None, rules: Optional[RuleSet] = None):
        self.storage = storage or Storage()
        self.ci = ci or CiJobs()
        self.settings = settings or get_settings()
        self.rules = rules or get_rules()
