"""``moe-ids extractors``: what each supported flow extractor's columns mean to the model, feature by feature."""

from __future__ import annotations

import argparse
import json


def add_withhold_argument(p: argparse.ArgumentParser) -> None:
    """``--withhold-host-features``, the same for every command that scores flows."""
    p.add_argument("--withhold-host-features", action="store_true",
                   help="send the TCP parameters a host chooses (initial windows, minimum forward header) as "
                        "missing: for flows of a network other than CIC-IDS2017's lab, whose hosts' values would "
                        "steer verdicts (see the README's figures)")


def withheld_features(args: argparse.Namespace) -> tuple[str, ...]:
    """The features ``--withhold-host-features`` sends as missing (none without it)."""
    from moe_ids.core.schema import HOST_TCP_FEATURES

    return HOST_TCP_FEATURES if getattr(args, "withhold_host_features", False) else ()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extractors", help="list the extractor profiles: per feature same / converted / unavailable")
    p.add_argument("name", nargs="?", default=None, help="one profile (default: all)")
    p.add_argument("--json", action="store_true", help="machine-readable")
    p.add_argument("--markdown", action="store_true", help="the Markdown of docs/extractors.md")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from moe_ids.data import extractors

    try:
        profiles = [extractors.get_profile(args.name)] if args.name else list(extractors.PROFILES.values())
    except ValueError as exc:
        print(f"moe-ids extractors: {exc}")
        return 2
    if args.json:
        print(json.dumps({p.name: {"title": p.title, "features": p.table(), "notes": list(p.notes)}
                          for p in profiles}, indent=1))
    elif args.markdown:
        print(extractors.docs_markdown(profiles), end="")
    else:
        for p in profiles:
            counts = {s: sum(r["status"] == s for r in p.table()) for s in ("same", "converted", "unavailable")}
            print(f"{p.name}: {p.title}")
            print("  " + ", ".join(f"{n} {s}" for s, n in counts.items()))
            for r in p.table():
                if r["status"] != "same":
                    print(f"    {r['feature']:<28} {r['status']:<11} {r['how']}")
    return 0
