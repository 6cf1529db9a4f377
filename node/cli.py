"""The `smu` command line."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smu", description="SMU key transparency node")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="tell the account story on local replicas")
    demo.add_argument("--json", action="store_true", dest="json_sub", help="JSON Lines output")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from node import demo as demo_module

        return demo_module.run(as_json=args.json or args.json_sub)
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
