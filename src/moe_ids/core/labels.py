"""Label normalisation: raw CIC-IDS2017 labels to Normal/Attack and to attack families.

Both releases spell labels differently (``Web Attack � Brute Force`` with a mangled dash in the original,
``Portscan`` vs ``PortScan``, ``Bot`` vs ``Botnet``), and the data sets a user scores next to it spell the same
attacks their own way: CSE-CIC-IDS2018 writes ``FTP-BruteForce``, ``Brute Force -XSS``, ``DoS attacks-Hulk`` and
``Infilteration``, CIC-DDoS2019 names each reflection attack (``DrDoS_DNS``, ``UDP-lag``), IoT-23's labelled
conn.logs name what a malicious flow was part of (``PartOfAHorizontalPortScan``, ``C&C-HeartBeat``,
``Okiru``). Families group labels by the behaviour a detector sees: ``Infiltration - Portscan`` in the
corrected release is a port scan launched from an infiltrated host, so its flows are port-scan flows and belong
to the PortScan family; the raw label is kept for per-label reports.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotation only: the Triton Python-backend models import this module without pandas
    import pandas as pd

BINARY_LABELS: tuple[str, ...] = ("Normal", "Attack")
FAMILIES: tuple[str, ...] = (
    "DoS",
    "DDoS",
    "PortScan",
    "BruteForce",
    "WebAttack",
    "Botnet",
    "Infiltration",
    "Heartbleed",
)

_NORMAL = {"benign", "normal", "0"}
# CSE-CIC-IDS2018's web attacks, spelled as CIC-IDS2017 spells them
_WEB_ATTACKS_2018 = {"brute force - web": "Web Attack - Brute Force", "brute force - xss": "Web Attack - XSS",
                     "sql injection": "Web Attack - SQL Injection"}
# CIC-DDoS2019's attack labels: reflection and flooding DDoS of each protocol, in its CSVs' spellings
_DDOS2019 = {"drdos_dns", "drdos_ldap", "drdos_mssql", "drdos_netbios", "drdos_ntp", "drdos_snmp", "drdos_ssdp",
             "drdos_udp", "syn", "tftp", "udp-lag", "udplag", "webddos", "ldap", "mssql", "netbios", "portmap",
             "udp"}


ATTEMPTED = " - Attempted"
_ATTEMPTED_RE = re.compile(r"^(.*\S)\s*-\s*attempted$", re.IGNORECASE)


def is_attempted(label: str) -> bool:
    """A corrected-release flow of an attack that carried none of it (``DoS Hulk - Attempted``): Engelen et al.
    label the attack tool's flows that never delivered a payload (a handshake, a refused connection) apart
    from the attack itself, because they look like the benign flows they are. Neither class fits them, so
    training leaves them out and evaluation reports them on their own."""
    return label.endswith(ATTEMPTED)


def attempted_mask(cleaned: Sequence[str] | np.ndarray) -> np.ndarray:
    """``is_attempted`` of every cleaned label at once (corpus rows, an evaluated file, a scored chunk)."""
    return np.char.endswith(np.asarray(cleaned, dtype=str), ATTEMPTED)


# IoT-23's detailed labels (Stratosphere's labelled conn.logs): command-and-control and the botnets it names
_IOT_BOTNETS = {"okiru", "okiru-attack", "mirai", "torii", "hajime", "hakai", "muhstik", "gagfyt"}


def clean_label(raw: object) -> str:
    """Canonical spelling of a raw label: stripped, dashes unified, known variants merged; an attempted
    attack keeps its suffix on the canonical attack name."""
    text = str(raw).strip()
    text = re.sub(r"[\u2013\u2014\ufffd\x96]", "-", text)
    text = re.sub(r"\s+-\s*|\s*-\s+", " - ", text)
    text = re.sub(r"\s+", " ", text)
    attempted = _ATTEMPTED_RE.match(text)
    if attempted:
        return clean_label(attempted.group(1)) + ATTEMPTED
    low = text.lower()
    if low in _NORMAL:
        return "BENIGN"
    if low == "1":
        return "Attack"
    if low in {"portscan", "port scan"}:
        return "PortScan"
    if low in {"bot", "botnet"}:
        return "Botnet"
    if low.startswith("web attack - sql"):
        return "Web Attack - SQL Injection"
    if low.startswith("web attack - brute"):
        return "Web Attack - Brute Force"
    if low.startswith("web attack - xss"):
        return "Web Attack - XSS"
    if low == "infiltration - portscan":
        return "Infiltration - Portscan"
    if low == "infilteration":  # CSE-CIC-IDS2018's spelling
        return "Infiltration"
    return _WEB_ATTACKS_2018.get(low, text)


def family_of(label: str) -> str | None:
    """Attack family of a cleaned label; None for normal traffic or a label with no known family."""
    if is_attempted(label):
        label = label[: -len(ATTEMPTED)]
    low = label.lower()
    if label == "BENIGN":
        return None
    if low.startswith("ddos"):
        return "DDoS"
    if low.startswith("dos"):
        return "DoS"
    if "portscan" in low:
        return "PortScan"
    if "patator" in low or low in {"ftp-bruteforce", "ssh-bruteforce"}:
        return "BruteForce"
    if low.startswith("web attack"):
        return "WebAttack"
    if low.startswith("bot") or low.startswith("c&c") or low in _IOT_BOTNETS:
        return "Botnet"
    if low.startswith("infiltration"):
        return "Infiltration"
    if low.startswith("heartbleed"):
        return "Heartbleed"
    if low in _DDOS2019:
        return "DDoS"
    return None


def encode(raw_labels: pd.Series) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Cleaned labels, binary targets (1 = attack) and family indices (-1 where unknown or normal)."""
    cleaned = raw_labels.map(clean_label)
    binary = (cleaned != "BENIGN").to_numpy(dtype=np.int64)
    fam_index = {f: i for i, f in enumerate(FAMILIES)}
    family = cleaned.map(lambda lab: fam_index.get(family_of(lab), -1)).to_numpy(dtype=np.int64)
    return cleaned, binary, family
