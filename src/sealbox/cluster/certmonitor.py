"""``kmipCertificateFault``: raised while a key server's CA or client certificate expires within
30 days or has expired, resolved by itself once good certificates are installed.

Checked at start, after every key server change, and periodically by the cluster's monitor.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from sealbox.cluster.faults import Fault, FaultService, FaultType, Severity
from sealbox.cluster.keyservers import SERVERS
from sealbox.kmip.certs import common_name, days_until_expiry, parse_ca_bundle
from sealbox.store.base import ConfigStore, Doc

CODE = "kmipCertificateFault"
WARN_DAYS = 30


def _problems(doc: Doc, now: dt.datetime) -> list[tuple[bool, str]]:
    """``(expired, description)`` for each certificate of ``doc`` that needs attention."""
    found: list[tuple[bool, str]] = []
    labelled: list[tuple[str, x509.Certificate]] = []
    try:
        labelled += [(f"CA certificate {i + 1}", c)
                     for i, c in enumerate(parse_ca_bundle(doc["caPem"]))]
        labelled += [("client certificate", c) for c in parse_ca_bundle(doc["clientCertPem"])]
    except Exception:  # stored certificates were validated; this only guards the monitor
        return [(True, "its certificates can no longer be parsed")]
    for label, cert in labelled:
        days = days_until_expiry(cert, now)
        if days < WARN_DAYS:
            when = cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
            state = "expired on" if days < 0 else f"expires in {days} days, on"
            found.append((days < 0, f"{label} ({common_name(cert)}) {state} {when}"))
    return found


class CertificateMonitor:
    def __init__(self, store: ConfigStore, faults: FaultService) -> None:
        self._store = store
        self._faults = faults

    def check(self, now: dt.datetime | None = None) -> None:
        now = now or dt.datetime.now(dt.UTC)
        with self._store.write() as txn:
            servers = txn.list(SERVERS)
            flagged: set[str] = set()
            for server_id, doc in servers:
                issues = _problems(doc, now)
                subject = f"keyserver:{server_id}"
                if not issues:
                    continue
                flagged.add(subject)
                expired = any(e for e, _ in issues)
                self._faults.raise_fault(Fault(
                    CODE, Severity.ERROR if expired else Severity.WARNING, FaultType.CLUSTER,
                    f"Key server {server_id} ({doc['name']}): " + "; ".join(d for _, d in issues)
                    + ". Install renewed certificates with ModifyKeyServerKmip.",
                    subject=subject, data={"keyServerID": server_id},
                ), txn)
            for subject in self._faults.open_subjects(txn, CODE):
                if subject not in flagged:
                    self._faults.resolve(CODE, subject, txn)
