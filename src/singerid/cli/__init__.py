"""`singerid` command line: thin commands over the library. `main(argv)` is callable in-process."""
from __future__ import annotations

import logging
import sys

from .. import cpu
from ..audio import AudioError
from ..data.manifest import ManifestError
from . import product, research  # noqa: F401  (importing registers the commands)
from .parser import build_parser as _parser
from .registry import COMMANDS

log = logging.getLogger("singerid")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)
    try:
        cpu.configure(args.threads)
        if getattr(args, "vad", None):  # --vad PATH: this model chooses the windows of unseparated audio
            from ..vad import use_vad

            use_vad(args.vad)
        return COMMANDS[args.command](args)
    except (AudioError, ManifestError, FileNotFoundError, FileExistsError, ValueError, ImportError) as e:
        print(f"singerid {args.command}: error: {e}", file=sys.stderr)
        return 2
