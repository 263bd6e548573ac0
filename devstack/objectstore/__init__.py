"""The local object store: moto's S3 with COS's rules, switches for COS's unverified behaviour, injected
faults, and COS trigger events for every object create."""

from .events import EVENT_FORMS, KEY_ENCODINGS, Created, cos_event, split_bucket
from .server import ObjectStore
from .switches import COPY_LIMIT_BYTES, DELETE_IF_MATCH, IF_NONE_MATCH, S3_COPY_CONDITIONS, VERSIONING, Faults, Switches

__all__ = ["COPY_LIMIT_BYTES", "DELETE_IF_MATCH", "EVENT_FORMS", "IF_NONE_MATCH", "KEY_ENCODINGS",
           "S3_COPY_CONDITIONS", "VERSIONING", "Created", "Faults", "ObjectStore", "Switches", "cos_event",
           "split_bucket"]
