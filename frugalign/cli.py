"""``frugalign <command> ...``: every stage on files, with YAML + ``key=value`` settings.

Each command lives in ``frugalign/commands/<name>.py`` and exposes
``register(subparsers)``; modules are discovered, so adding a command is
adding a file. User errors print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import pkgutil
import sys

from . import __version__
from .errors import FrugalignError

STORAGE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR)

# Listed first in --help in this order; other command modules follow alphabetically.
FIRST = ["demo", "run", "study", "generate", "select", "label", "annotate", "train", "iterate", "score", "eval"]


def command_modules() -> list[str]:
    from . import commands

    names = [m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")]
    names.sort(key=lambda n: (FIRST.index(n) if n in FIRST else len(FIRST), n))
    return [f"frugalign.commands.{n}" for n in names]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="frugalign",
        description="Align a language model to human preferences while paying for few human labels.",
    )
    parser.add_argument("--version", action="version", version=f"frugalign {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in command_modules():
        importlib.import_module(name).register(sub)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Let ``key=value`` overrides sit between --flags (argparse's intermixed mode, per command)."""
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    if argv and argv[0] in commands:
        try:
            args = commands[argv[0]].parse_intermixed_args(argv[1:])
            args.command = argv[0]
            return args
        except TypeError:  # commands with their own sub-commands: plain parsing
            pass
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = _parse(parser, list(sys.argv[1:] if argv is None else argv))
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except FrugalignError as e:
        print(f"frugalign {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"frugalign {args.command}: interrupted; finished work is kept, rerun the same command to resume",
              file=sys.stderr)
        return 130
    except OSError as e:  # a full disk or an unwritable directory is the user's to fix, not a bug
        if e.errno not in STORAGE_ERRORS:
            raise
        where = f": {e.filename}" if e.filename else ""
        print(f"frugalign {args.command}: error: {e.strerror}{where}; nothing half-written was kept, fix it and "
              "rerun the same command", file=sys.stderr)
        return 2
    finally:
        from .distributed import shutdown

        shutdown()


if __name__ == "__main__":
    sys.exit(main())
