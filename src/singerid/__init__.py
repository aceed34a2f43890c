"""singerid: singer identification that survives AI voice clones.

Results are an indication for a human decision, never a verdict."""
import os as _os
import sys as _sys

# Before torch loads OpenMP: threads spin only briefly at a barrier, then sleep (see singerid.cpu). Only takes effect
# when singerid is imported before torch, as in the CLI and the service.
SHORT_SPIN = "torch" not in _sys.modules and "GOMP_SPINCOUNT" not in _os.environ and "OMP_WAIT_POLICY" not in _os.environ
if SHORT_SPIN:
    _os.environ["GOMP_SPINCOUNT"] = "10000"

__version__ = "0.1.0"

CAVEAT = (
    "singerid gives an indication for a human to weigh, never a verdict: voices can be imitated, cloned or "
    "misattributed, and scores depend on the catalogue."
)
