"""``moe-ids score``: score a CIC-IDS2017 flow CSV against a running server and write one verdict per flow.

Streams the file in chunks, so its size does not matter; each chunk is written only once all its flows are
scored, in input order, so a server restart midway (the chunk is retried with backoff for up to
``--max-wait`` seconds) neither loses nor duplicates rows. Output goes to ``OUT.partial`` and is renamed to
``OUT`` on success. Client-only: needs numpy, pandas and tritonclient, not torch.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from moe_ids.cli.extractors import add_withhold_argument, withheld_features
from moe_ids.core.preprocessing import STRATEGIES
from moe_ids.data.extractors import AUTO, COLUMN_EXTRACTORS, DEFAULT_PROFILE
from moe_ids.data.extractors import RECORD_EXTRACTORS as SENSOR_KINDS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score a flow CSV on a running server, one output row per input row")
    p.add_argument("input", type=Path, help="flow CSV of any supported extractor, a Zeek conn.log (TSV or JSON "
                                            "lines), a Suricata eve.json or a pcap/pcapng capture (.gz fine)")
    p.add_argument("--extractor", default=AUTO, choices=(AUTO, *COLUMN_EXTRACTORS, *SENSOR_KINDS),
                   help="what wrote the file, so its values are converted into the model's semantics (default: "
                        "detected from its content and column names; see `moe-ids extractors`)")
    add_withhold_argument(p)
    p.add_argument("--output", "-o", type=Path, required=True, help="CSV to write")
    p.add_argument("--url", default=None, help="server host:port (default: 127.0.0.1 and the protocol's port)")
    p.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    p.add_argument("--model", default=None, help="Triton model name (default: the moe_ids ensemble)")
    p.add_argument("--batch-size", type=int, default=1024, help="flows per request (default 1024)")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    p.add_argument("--chunk-rows", type=int, default=16384, help="rows read, scored and written at a time")
    p.add_argument("--missing-strategy", choices=STRATEGIES, default=None,
                   help="imputation of missing features (default: the model's)")
    p.add_argument("--priority", choices=("bulk", "realtime"), default="bulk",
                   help="Triton queue priority (default bulk, so live traffic goes first)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    p.add_argument("--max-wait", type=float, default=120.0,
                   help="seconds to keep retrying a chunk while the server is down or overloaded (default 120)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from moe_ids.client import MoEClient, MoEClientError

    for name in ("batch_size", "concurrency", "chunk_rows"):
        if getattr(args, name) < 1:
            print(f"moe-ids score: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    if not args.input.is_file():
        print(f"moe-ids score: input file not found: {args.input}", file=sys.stderr)
        return 2
    # retries=0: score_chunk's deadline-bounded loop is the one retry policy of a run, not a layer on top
    kwargs: dict[str, Any] = {"protocol": args.protocol, "timeout": args.timeout, "retries": 0,
                              "concurrency": args.concurrency, "unknown": "ignore",
                              "withhold": withheld_features(args)}
    if args.model:
        kwargs["model_name"] = args.model
    client = MoEClient(args.url, **kwargs)
    try:
        summary = score_file(client, args)
    except MoEClientError as exc:
        print(f"moe-ids score: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError, EOFError) as exc:  # SensorLogError names the line; EOFError: a truncated gzip
        print(f"moe-ids score: {args.input}: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    summary["withheld"] = bool(kwargs["withhold"])
    print(format_summary(summary), file=sys.stderr)
    return 0


def score_file(client: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Stream INPUT through the server into OUTPUT; returns the run's counts for the summary."""
    import pandas as pd
    from tqdm import tqdm

    from moe_ids.client.flow_files import read_flow_file
    from moe_ids.core.labels import attempted_mask, clean_label

    partial = args.output.with_name(args.output.name + ".partial")
    partial.parent.mkdir(parents=True, exist_ok=True)
    counts: dict[str, Any] = {"flows": 0, "attacks": 0, "families": Counter(), "retries": 0,
                              "output": str(args.output), "labelled": 0, "agree": 0, "out_of_distribution": 0}
    started = time.perf_counter()
    chunks = read_flow_file(args.input, getattr(args, "extractor", None) or AUTO, args.chunk_rows, counts)
    try:
        with open(partial, "w", newline="") as out, tqdm(unit="flow", unit_scale=True, disable=args.quiet,
                                                          desc=args.input.name, file=sys.stderr) as bar:
            for i, (ids, features, labels) in enumerate(chunks):
                result = score_chunk(client, features, args, counts)
                rows = pd.concat([ids, result.reset_index(drop=True)], axis=1)
                rows.to_csv(out, header=(i == 0), index=False)
                out.flush()
                counts["flows"] += len(rows)
                attacks = result["prediction"] == "Attack"
                counts["attacks"] += int(attacks.sum())
                if "out_of_distribution" in result:
                    counts["out_of_distribution"] += int(result["out_of_distribution"].sum())
                if labels is not None:
                    cleaned = labels.map(clean_label)
                    # an attempted attack is neither Normal nor Attack; a record of a labelled log may carry none
                    judged = ~attempted_mask(cleaned) & labels.notna().to_numpy()
                    truth = (cleaned != "BENIGN").to_numpy()
                    counts["labelled"] += int(judged.sum())
                    counts["attempted"] = counts.get("attempted", 0) + int((~judged).sum())
                    counts["agree"] += int((truth == attacks.to_numpy())[judged].sum())
                if "family" in result:
                    counts["families"].update(result.loc[attacks, "family"].dropna())
                bar.update(len(rows))
    except BaseException:
        if counts["flows"] == 0:  # no empty OUT.partial left behind; one with rows keeps what was scored
            partial.unlink(missing_ok=True)
        raise
    partial.replace(args.output)
    counts["seconds"] = time.perf_counter() - started
    return counts


def score_chunk(client: Any, features: Any, args: argparse.Namespace, counts: dict[str, Any]) -> Any:
    """One chunk's results; transient failures (server down or restarting, queue full, timeout) are retried
    with exponential backoff and jitter until ``--max-wait`` seconds have passed without success."""
    from moe_ids.client import ModelNotReadyError
    from moe_ids.client.errors import TRANSIENT_ERRORS

    deadline = time.monotonic() + args.max_wait
    attempt = 0
    while True:
        try:
            return client.predict_batch(features, batch_size=args.batch_size, concurrency=args.concurrency,
                                        missing_strategy=args.missing_strategy, priority=args.priority,
                                        extractor=DEFAULT_PROFILE)  # converted already, by the file's profile
        except (*TRANSIENT_ERRORS, ModelNotReadyError) as exc:  # a restarting server first loses its models
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise type(exc)(f"{exc} (gave up after --max-wait {args.max_wait:g} s)") from exc
            delay = min(remaining, random.uniform(0.0, min(10.0, 0.25 * 2 ** attempt)))
            print(f"moe-ids score: {type(exc).__name__}: {exc}; retrying in {delay:.1f} s", file=sys.stderr)
            time.sleep(delay)
            attempt += 1
            counts["retries"] += 1


# An out-of-distribution share this far above the model's calibrated rate (its trust alpha) says the file is not
# the lab's traffic
UNFAMILIAR_SHARE = 0.1


def format_summary(counts: dict[str, Any]) -> str:
    flows, attacks, seconds = counts["flows"], counts["attacks"], counts.get("seconds", 0.0)
    share = attacks / flows if flows else 0.0
    lines = [f"scored {flows} flows in {seconds:.1f} s ({flows / seconds if seconds > 0 else 0:,.0f} flows/s) "
             f"-> {counts['output']}",
             f"extractor: {counts.get('extractor', 'cicflowmeter')}; attacks: {attacks} ({share:.1%})"]
    if counts.get("extractor_note"):
        lines.append(f"  {counts['extractor_note']}")
    if counts.get("out_of_distribution"):
        ood = counts["out_of_distribution"]
        lines.append(f"out-of-distribution: {ood} ({ood / flows if flows else 0:.1%}) flows unlike the training data")
        if ood >= UNFAMILIAR_SHARE * flows and not counts.get("withheld"):
            lines.append("  traffic like the training data is flagged at the model's calibrated rate (alpha in "
                         "metadata.json): treat the flagged verdicts as unknown. For a network other than "
                         "CIC-IDS2017's, a second run with "
                         "--withhold-host-features gives verdicts without the lab's host TCP parameters (it detects "
                         "about half of such attacks and flags fewer; README, 'The lab's hosts are in the model')")
    if counts["families"]:
        top = ", ".join(f"{name} {n}" for name, n in counts["families"].most_common(3))
        lines.append(f"top families: {top}")
    if counts.get("labelled"):
        lines.append(f"agreement with the file's labels (Normal/Attack): {counts['agree'] / counts['labelled']:.2%}"
                     f" of {counts['labelled']} flows" + (", attempted attacks left out" if counts.get("attempted")
                                                          else ""))
    if counts.get("skipped_events"):
        lines.append(f"skipped {counts['skipped_events']} events that are not flows")
    if counts.get("skipped_header_rows"):
        lines.append(f"skipped {counts['skipped_header_rows']} rows that repeat the header line")
    if counts["retries"]:
        lines.append(f"retried chunks: {counts['retries']}")
    return "\n".join(lines)
