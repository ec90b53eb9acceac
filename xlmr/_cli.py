"""What the command lines (``xlmr``, ``xlmr-embed``, ``xlmr-convert``) share: one-line errors."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that reports a bad argument in one line (no usage dump) and exits 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def parse_or_status(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace | int:
    """``parser``'s arguments, or the exit status of ``--help`` or of a bad argument (already reported
    in one line); from here on warnings print as ``warning: ...`` lines on stderr."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", stream=sys.stderr)
    return args


def report_error(err: BaseException) -> int:
    """Print ``err`` as one ``error: ...`` line on stderr (white space folded); returns 1, the exit status."""
    print(f"error: {' '.join(str(err).split()) or type(err).__name__}", file=sys.stderr)
    return 1
