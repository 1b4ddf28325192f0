"""The `thespian-otp` command."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thespian-otp", description="OTP-style supervision for thespian actors.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser("demo", help="start a supervision tree, crash and kill children, show it recover")
    demo.add_argument("--base", default="multiprocTCPBase", choices=["multiprocTCPBase", "multiprocQueueBase", "simpleSystemBase"])
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console()
    if args.command == "demo":
        from actors.demo import run_demo

        return run_demo(console, base=args.base)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
