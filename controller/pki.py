"""The node link's certificate authority: node certificates at enrolment, linkd's
server certificate, and the check of a node's certificate at each connection.

One EC P-256 CA per controller installation, kept in a directory shared by every
controller instance (``ca.key``, mode 0600, and ``ca.crt``, self-signed for ten years).
A node generates its own key and sends a CSR when it enrols with a claim code; the CA
signs it for a year with the node id as CN and as the URI SAN
``urn:branchline:node:<id>`` (``clientAuth`` only). What the CSR asks for besides its
key is ignored: the controller decides the identity. linkd gets a fresh server
certificate (``serverAuth``, DNS/IP SANs) from the same CA at every start, so nodes
need only the CA certificate to authenticate the controller.

A certificate proves possession of its key (the TLS handshake) and its issuer
(:meth:`CertificateAuthority.verify_node_cert`); whether it is still the node's
current one is the store's business (``LinkBackend.certificate_valid``, by
:func:`fingerprint`), which is how a re-enrolment revokes the old certificate.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.ids import ID_RE

log = logging.getLogger("branchline.pki")

NODE_URI_PREFIX = "urn:branchline:node:"
CA_LIFETIME = dt.timedelta(days=3650)
NODE_LIFETIME = dt.timedelta(days=365)
SERVER_LIFETIME = dt.timedelta(days=365)
CLOCK_SKEW = dt.timedelta(minutes=5)  # certificates start this much in the past
_CURVES = (ec.SECP256R1, ec.SECP384R1)  # node keys we sign


class PkiError(Exception):
    """A certificate or CSR is refused, or the CA's files are unusable; the message
    says why (and holds no key material)."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def fingerprint(cert: bytes | str | x509.Certificate) -> str:
    """``sha256:<hex>`` of the certificate's DER encoding."""
    if not isinstance(cert, x509.Certificate):
        cert = load_cert(cert)
    return "sha256:" + hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def load_cert(pem: bytes | str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
    except ValueError as exc:
        raise PkiError(f"not a PEM certificate: {exc}") from None


def load_csr(pem: bytes | str) -> x509.CertificateSigningRequest:
    """A node's CSR, checked: it parses, its self-signature is good, and its key is an
    EC key on P-256 or P-384."""
    try:
        csr = x509.load_pem_x509_csr(pem.encode() if isinstance(pem, str) else pem)
    except ValueError as exc:
        raise PkiError(f"not a PEM CSR: {exc}") from None
    try:
        signed = csr.is_signature_valid
        key = csr.public_key()
    except (ValueError, TypeError) as exc:  # unsupported key or signature algorithm
        raise PkiError(f"unusable CSR: {exc}") from None
    if not signed:
        raise PkiError("the CSR's signature is bad")
    if not (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, _CURVES)):
        raise PkiError("the CSR's key must be EC P-256 or P-384")
    return csr


def node_id_of(cert: x509.Certificate) -> str | None:
    """The node id a certificate names (URI SAN and CN agreeing), else None."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier)
            if u.startswith(NODE_URI_PREFIX)]
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if len(uris) != 1 or len(cns) != 1:
        return None
    node_id = uris[0][len(NODE_URI_PREFIX):]
    if cns[0] != node_id or not ID_RE.fullmatch(node_id):
        return None
    return node_id


class CertificateAuthority:
    """The CA key and certificate; see the module docstring."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self.key = key
        self.cert = cert
        self.cert_pem: bytes = cert.public_bytes(serialization.Encoding.PEM)

    def __repr__(self) -> str:
        return f"CertificateAuthority({self.cert.subject.rfc4514_string()!r})"

    @classmethod
    def load_or_create(cls, directory: Path, *,
                       name: str = "Branchline node link CA") -> CertificateAuthority:
        """The CA kept in ``directory`` (``ca.key``, ``ca.crt``), created on first use.

        Create it once (the first controller start) before several controller
        instances share the directory: two processes creating it at the same moment
        would race.
        """
        key_path, cert_path = directory / "ca.key", directory / "ca.crt"
        if key_path.exists() or cert_path.exists():
            if not (key_path.exists() and cert_path.exists()):
                raise PkiError(f"{directory}: ca.key and ca.crt must both exist")
            if key_path.stat().st_mode & 0o077:
                log.warning("%s is readable by other users; it should be mode 0600", key_path)
            try:
                key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            except (ValueError, TypeError) as exc:
                raise PkiError(f"{key_path}: not an unencrypted PEM key: {exc}") from None
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise PkiError(f"{key_path}: the CA key must be an EC key")
            cert = load_cert(cert_path.read_bytes())
            if cert.public_key() != key.public_key():
                raise PkiError(f"{directory}: ca.crt does not belong to ca.key")
            return cls(key, cert)

        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_new(key_path, _key_pem(key), 0o600)
        _write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        log.info("created the node link CA in %s (%s)", directory, fingerprint(cert))
        return cls(key, cert)

    # -- issuing ----------------------------------------------------------------------
    def issue_node_cert(self, node_id: str, csr_pem: bytes | str, *,
                        now: dt.datetime | None = None) -> bytes:
        """Sign the key of ``csr_pem`` as node ``node_id`` for a year (PEM)."""
        if not ID_RE.fullmatch(node_id):
            raise PkiError(f"{node_id!r} is not a node id")
        csr = load_csr(csr_pem)
        now = now or _now()
        cert = (
            self._builder(csr.public_key(), node_id, now, NODE_LIFETIME)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(NODE_URI_PREFIX + node_id)]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM)

    def server_cert(self, hostnames: Sequence[str]) -> tuple[bytes, bytes]:
        """A new key and certificate for linkd: ``(cert_pem, key_pem)``, with each of
        ``hostnames`` as a DNS or IP SAN (the name nodes dial must be among them)."""
        if not hostnames:
            raise PkiError("linkd's certificate needs at least one host name")
        names: list[x509.GeneralName] = []
        for host in hostnames:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            self._builder(key.public_key(), hostnames[0], _now(), SERVER_LIFETIME)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)

    def _builder(self, public_key: object, common_name: str, now: dt.datetime,
                 lifetime: dt.timedelta) -> x509.CertificateBuilder:
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise PkiError("only EC keys are signed")
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + lifetime)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
        )

    # -- checking ---------------------------------------------------------------------
    def verify_node_cert(self, cert: x509.Certificate | bytes | str, *,
                         now: dt.datetime | None = None) -> str:
        """The node id of a peer's certificate, if this CA issued it directly (issuer
        name and signature: ``verify_directly_issued_by``), it is within its validity
        period, and it is a node (client) certificate; else :class:`PkiError`."""
        if not isinstance(cert, x509.Certificate):
            cert = load_cert(cert)
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            raise PkiError("not issued by this controller's CA") from None
        now = now or _now()
        if now < cert.not_valid_before_utc:
            raise PkiError("certificate not valid yet")
        if now > cert.not_valid_after_utc:
            raise PkiError("certificate expired")
        try:
            basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
            usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound as exc:
            raise PkiError(f"not a node certificate ({exc})") from None
        if basic.ca or ExtendedKeyUsageOID.CLIENT_AUTH not in usage:
            raise PkiError("not a node certificate (no clientAuth)")
        node_id = node_id_of(cert)
        if node_id is None:
            raise PkiError("the certificate names no node")
        return node_id


def _key_usage(cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
        crl_sign=cert_sign, encipher_only=False, decipher_only=False,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` from the start (never readable by others, even
    briefly) and sync it; fails if it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
