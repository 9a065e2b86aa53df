"""The ``moe-ids`` command line: one sub-command per module in ``moe_ids.cli``.

Each command module defines ``register(subparsers)``; modules import their heavy dependencies (torch,
onnxruntime, locust) inside the command, so ``moe-ids score`` works on a client-only install.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: tuple[str, ...] = (
    "train",
    "evaluate",
    "importance",
    "export",
    "repository",
    "serve",
    "bench",
    "score",
    "stream",
    "extractors",
    "loadtest",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moe-ids", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"moe_ids.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("moe_ids.cli"):
                continue  # command not part of this build
            raise
        module.register(sub)
    return parser


# commands that train models or compute the figures the README quotes (evaluate trains its baseline and the
# --leave-one-out models): their kernels are pinned before any command module loads numpy, since numpy's OpenBLAS
# reads its setting once, at load (moe_ids.model.numerics)
PINNED_COMMANDS = frozenset({"train", "evaluate", "importance"})


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    if words and words[0] in PINNED_COMMANDS:
        from moe_ids.model.numerics import pin_environment

        for problem in pin_environment():
            print(f"moe-ids: numerics: {problem}", file=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
