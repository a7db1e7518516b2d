"""``cemp tls``: a consortium CA and per-node certificates for ``[tls]`` (``node.tls``), made with ``cryptography``.

Two ways to run a TLS consortium (both end in a ``[tls] ca`` file every node trusts):

- a consortium CA: ``cemp tls ca --dir tls`` once (``ca.key`` stays with whoever the orgs trust to sign), then
  ``cemp tls cert --ca-dir tls --name owner-1 --host owner-1.example.org --out tls`` per node; ``ca = tls/ca.crt``;
- pinned certificates, no CA at all: each org runs ``cemp tls cert --name owner-1 --host ... --out tls`` (without
  ``--ca-dir``: self-signed) and sends the ``.crt`` (never the key) to the others; every node's ``ca`` is the
  concatenation of all the nodes' ``.crt`` files (``cemp tls bundle``).

Keys are ECDSA P-256 (every TLS client, browsers included, speaks it), written 0600. Certificates name the node id
and every ``--host`` (DNS names or IP addresses) in subjectAltName, since peers check the host of the address they
dial. ``cemp deploy init`` makes a CA and the three nodes' certificates this way.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
CERT_DAYS = 825


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(path, 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CEMP consortium"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)  # a little slack for peers' clock skew


def make_ca(directory: Path, name: str = "CEMP consortium CA", days: int = CA_DAYS) -> tuple[Path, Path]:
    """``ca.key`` (0600) and ``ca.crt`` in ``directory``; an existing pair is kept."""
    key_path, crt_path = directory / "ca.key", directory / "ca.crt"
    if key_path.exists() and crt_path.exists():
        return key_path, crt_path
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now())
        .not_valid_after(_now() + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    _write_cert(crt_path, cert)
    return key_path, crt_path


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for h in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


def make_cert(
    out: Path, name: str, hosts: list[str], ca_dir: Path | None = None, days: int = CERT_DAYS
) -> tuple[Path, Path]:
    """``<name>.key`` (0600) and ``<name>.crt`` in ``out``: signed by the CA in ``ca_dir``, or self-signed (for
    pinning) without it. Valid for TLS server and client use, for ``name`` and every host."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(name)
    if ca_dir is not None:
        ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{ca_dir / 'ca.key'} is not an EC key made by cemp tls ca")
        issuer, signer = ca_cert.subject, ca_key
    else:
        issuer, signer = subject, key
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now())
        .not_valid_after(_now() + dt.timedelta(days=days))
        .add_extension(_san([name, *hosts]), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    )
    b = b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if ca_dir is not None:
        b = b.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
    cert = b.sign(signer, hashes.SHA256())
    key_path, crt_path = out / f"{name}.key", out / f"{name}.crt"
    _write_key(key_path, key)
    _write_cert(crt_path, cert)
    return key_path, crt_path


def bundle(certs: list[Path], out: Path) -> Path:
    """Concatenate certificates (each checked to parse) into one ``[tls] ca`` file of pinned certificates."""
    parts = []
    for c in certs:
        x509.load_pem_x509_certificate(c.read_bytes())
        parts.append(c.read_text().strip() + "\n")
    out.write_text("".join(parts))
    return out


def cmd_tls(args: argparse.Namespace) -> int:
    if args.tls_cmd == "ca":
        k, c = make_ca(Path(args.dir), days=args.days)
        print(json.dumps({"ca_key": str(k), "ca_cert": str(c)}))
    elif args.tls_cmd == "cert":
        k, c = make_cert(
            Path(args.out), args.name, args.host or [], Path(args.ca_dir) if args.ca_dir else None, args.days
        )
        print(json.dumps({"key": str(k), "cert": str(c), "signed_by": args.ca_dir or "self"}))
    else:
        print(json.dumps({"bundle": str(bundle([Path(p) for p in args.certs], Path(args.out)))}))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    t = sub.add_parser(
        "tls",
        help="a consortium CA and per-node TLS certificates for [tls] in the node TOML",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ts = t.add_subparsers(dest="tls_cmd", required=True)
    ca = ts.add_parser("ca", help="make the consortium CA (ca.key 0600, ca.crt) in --dir; kept if present")
    ca.add_argument("--dir", required=True)
    ca.add_argument("--days", type=int, default=CA_DAYS)
    ce = ts.add_parser(
        "cert", help="a node's key and certificate, signed by --ca-dir or self-signed (pinning)"
    )
    ce.add_argument("--name", required=True, help="the node id (also put in the certificate's names)")
    ce.add_argument(
        "--host",
        action="append",
        help="a DNS name or IP address peers and clients dial this node by (repeat); the host of its address",
    )
    ce.add_argument("--ca-dir", help="directory of ca.key and ca.crt (cemp tls ca); self-signed without it")
    ce.add_argument("--out", required=True, help="directory for <name>.key and <name>.crt")
    ce.add_argument("--days", type=int, default=CERT_DAYS)
    bu = ts.add_parser(
        "bundle", help="concatenate the nodes' self-signed certificates into one [tls] ca file"
    )
    bu.add_argument("certs", nargs="+")
    bu.add_argument("--out", required=True)
    t.set_defaults(func=cmd_tls)
