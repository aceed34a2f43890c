"""singerid: singer identification that survives AI voice clones.

Results are an indication for a human decision, never a verdict."""
__version__ = "0.1.0"

CAVEAT = (
    "singerid gives an indication for a human to weigh, never a verdict: voices can be imitated, cloned or "
    "misattributed, and scores depend on the catalogue."
)
