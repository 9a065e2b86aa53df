"""Shared fixtures. ``triton_server``: one real tritonserver per test session, on free ports.

It serves the cpu repository in the ensemble layout (whose composing models many serving tests inspect)
generated from ``models/default`` (trained and exported first if missing) into a temporary directory, so
tests never touch the committed ``model_repository/`` or ports another server uses; ``serving`` without a
layout serves the cpu default (one-hop). Tests reach it through ``.http_url``, ``.grpc_url``,
``.metrics_url`` ("127.0.0.1:PORT"), ``.pid`` and ``.repository``; it is stopped (SIGTERM, then SIGKILL) at
the end of the session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest


@contextmanager
def serving(root: Path, extra_args: list[str] | None = None, **options) -> Iterator:
    """A real tritonserver on a repository generated under ``root`` from models/default with ``options``
    (``RepositoryOptions`` fields), stopped on exit; its log is ``root/tritonserver.log``."""
    from moe_ids.triton.ops.bootstrap import ensure_model
    from moe_ids.triton.ops.server import TritonServer
    from moe_ids.triton.repository import build_repository, options_for_model

    model_dir = ensure_model()
    repository = build_repository(model_dir, root / "repository", options_for_model(model_dir, **options))
    with TritonServer(repository, log_path=root / "tritonserver.log", extra_args=extra_args) as server:
        yield server


@pytest.fixture(scope="session")
def triton_serving() -> Callable[..., AbstractContextManager]:
    """``serving`` for the test modules that need a server with settings of their own."""
    return serving


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    with serving(tmp_path_factory.mktemp("triton"), layout="ensemble") as server:
        yield server


@pytest.fixture
def repeated_header_csv(tmp_path: Path) -> Callable[..., Path]:
    """A real flow CSV written again with its header line repeated after row ``at``, as CSE-CIC-IDS2018's day
    files have it where CSVs were concatenated."""
    import gzip

    def make(src: str | Path, at: int = 100) -> Path:
        with gzip.open(src, "rt", encoding="utf-8", errors="replace") as fh:
            lines = fh.readlines()
        dst = tmp_path / f"repeated-header-{Path(src).name.removesuffix('.gz')}"
        dst.write_text("".join(lines[:at + 1] + [lines[0]] + lines[at + 1:]))
        return dst

    return make


@pytest.fixture
def attempted_csv(tmp_path: Path) -> Path:
    """Real corrected-release rows, 40 benign and 65 DoS Hulk flows, the last 25 relabelled the way the corrected
    release labels the attack tool's flows that delivered nothing (``DoS Hulk - Attempted``)."""
    import pandas as pd

    from moe_ids.data.loading import bundled_data_dir

    flows = pd.read_csv(bundled_data_dir() / "cicids2017-improved" / "flows.csv.gz")
    benign = flows[flows["Label"] == "BENIGN"].head(40)
    hulk = flows[flows["Label"] == "DoS Hulk"].head(65).copy()
    hulk.iloc[40:, hulk.columns.get_loc("Label")] = "DoS Hulk - Attempted"
    path = tmp_path / "with_attempted.csv"
    pd.concat([benign, hulk]).to_csv(path, index=False)
    return path


# Stratosphere's labelled conn.logs (IoT-23 ``conn.log.labeled``): the last three fields joined by
# three spaces instead of the separator, in the #fields line and in every record.
_IOT23_FIELDS = ("ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto service duration orig_bytes resp_bytes "
                 "conn_state local_orig local_resp missed_bytes history orig_pkts orig_ip_bytes resp_pkts "
                 "resp_ip_bytes").split() + ["tunnel_parents   label   detailed-label"]
_IOT23_TYPES = ("time string addr port addr port enum string interval count count string bool bool count string "
                "count count count count").split() + ["set[string]   string   string"]
_IOT23_RECORDS = [
    "1525879831.015811 CUmrqr4svHuSXJy5z7 192.168.100.103 51524 65.127.233.163 23 tcp - 2.999051 0 0 S0 - - 0 S "
    "3 180 0 0".split() + ["-   Malicious   PartOfAHorizontalPortScan"],
    "1525879832.100000 CH98aB1hFpwZ1k8Xa4 192.168.100.103 40391 192.168.100.1 53 udp dns 0.001187 34 50 SF - - 0 "
    "Dd 1 62 1 78".split() + ["-   Benign   -"],
    "1525879833.200000 Ck3Tz23sBzQcLp0vV1 192.168.100.103 40392 192.168.100.1 53 udp dns 0.001200 34 50 SF - - 0 "
    "Dd 1 62 1 78".split() + ["-   -   -"],
]
LABELLED_ZEEK_TSV = "".join([
    "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n",
    "\t".join(["#fields", *_IOT23_FIELDS]) + "\n", "\t".join(["#types", *_IOT23_TYPES]) + "\n",
    *("\t".join(r) + "\n" for r in _IOT23_RECORDS), "#close\t2018-05-09-16-00-00\n"])



@pytest.fixture
def labelled_conn_log(tmp_path: Path) -> Path:
    """A labelled Zeek conn.log in IoT-23's layout (records written by hand in that format; no sensor runs here):
    a port-scan SYN, a benign DNS exchange and a record without a label."""
    path = tmp_path / "conn.log.labeled"
    path.write_text(LABELLED_ZEEK_TSV)
    return path
