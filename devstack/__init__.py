"""The local stack: object store, CI emulator and SCF runner on loopback. Never deployed."""

import sys
from pathlib import Path

# The ciflow layer is importable the way SCF makes it importable from /opt.
_LAYER = str(Path(__file__).resolve().parent.parent / "layers" / "ciflow")
if _LAYER not in sys.path:
    sys.path.insert(0, _LAYER)
