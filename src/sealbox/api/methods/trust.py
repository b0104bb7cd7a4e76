"""CreatePublicPrivateKeyPair, GetClientCertificateSignRequest: the cluster's identity."""

from __future__ import annotations

from sealbox.api.params import P
from sealbox.api.registry import CallContext, Params, Result, method
from sealbox.cluster.formation import require_cluster
from sealbox.cluster.keyservers import SERVERS
from sealbox.kmip.certs import Subject

_SUBJECT = tuple(
    P(name, "str", max_len=128)
    for name in ("commonName", "organization", "organizationalUnit", "locality", "state",
                 "country", "emailAddress")
)


@method("CreatePublicPrivateKeyPair", *_SUBJECT, category="clusterAdmin", mutates=True)
def create_public_private_key_pair(ctx: CallContext, params: Params) -> Result:
    c = ctx.cluster
    with c.store.read() as txn:
        cluster = require_cluster(txn)
        in_use = [i for i, _ in txn.list(SERVERS)]
    subject = Subject(
        common_name=params["commonName"] or f"sealbox-{cluster['uuid']}",
        organization=params["organization"],
        organizational_unit=params["organizationalUnit"],
        country=params["country"],
        locality=params["locality"],
        state=params["state"],
        email_address=params["emailAddress"],
    )
    c.trust.create_key_pair(subject, in_use)
    return {}


@method("GetClientCertificateSignRequest", category="clusterAdmin")
def get_client_certificate_sign_request(ctx: CallContext, params: Params) -> Result:
    return {"clientCertificateSignRequest": ctx.cluster.trust.csr()}
