"""The controller's CA: node certificates, linkd's certificate, and the node check."""

from __future__ import annotations

import base64
import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controller.pki import (
    CertificateAuthority,
    PkiError,
    fingerprint,
    load_csr,
    node_id_of,
)


def csr_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
            cn: str = "whatever-the-box-says") -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def csr_from_der(der: bytes) -> bytes:
    return (b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(der)
            + b"-----END CERTIFICATE REQUEST-----\n")


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path / "pki")


def test_created_once_then_loaded(tmp_path: Path) -> None:
    first = CertificateAuthority.load_or_create(tmp_path / "pki")
    assert stat.S_IMODE((tmp_path / "pki" / "ca.key").stat().st_mode) == 0o600
    again = CertificateAuthority.load_or_create(tmp_path / "pki")
    assert fingerprint(again.cert) == fingerprint(first.cert)
    basic = first.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca
    life = first.cert.not_valid_after_utc - first.cert.not_valid_before_utc
    assert life >= dt.timedelta(days=3650)


def test_half_a_ca_is_an_error(tmp_path: Path) -> None:
    CertificateAuthority.load_or_create(tmp_path / "pki")
    (tmp_path / "pki" / "ca.crt").unlink()
    with pytest.raises(PkiError, match="both"):
        CertificateAuthority.load_or_create(tmp_path / "pki")


def test_node_certificate(ca: CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = ca.issue_node_cert("branch-1", csr_pem(key))
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.public_key() == key.public_key()
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "branch-1"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "urn:branchline:node:branch-1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=365) <= life <= dt.timedelta(days=366)
    assert ca.verify_node_cert(pem) == "branch-1"
    assert node_id_of(cert) == "branch-1"
    assert fingerprint(pem) == fingerprint(cert)
    assert fingerprint(pem).startswith("sha256:") and len(fingerprint(pem)) == 71


def test_certificate_from_another_ca_is_refused(ca: CertificateAuthority,
                                                tmp_path: Path) -> None:
    other = CertificateAuthority.load_or_create(tmp_path / "other",
                                                name="Branchline node link CA")
    pem = other.issue_node_cert("branch-1", csr_pem())  # same CA name, other key
    with pytest.raises(PkiError, match="not issued by this controller's CA"):
        ca.verify_node_cert(pem)


def test_expired_and_future_certificates_are_refused(ca: CertificateAuthority) -> None:
    pem = ca.issue_node_cert("branch-1", csr_pem())
    now = dt.datetime.now(dt.UTC)
    with pytest.raises(PkiError, match="expired"):
        ca.verify_node_cert(pem, now=now + dt.timedelta(days=400))
    with pytest.raises(PkiError, match="not valid yet"):
        ca.verify_node_cert(pem, now=now - dt.timedelta(days=1))


def test_server_certificate_is_not_a_node_certificate(ca: CertificateAuthority) -> None:
    cert_pem, key_pem = ca.server_cert(["controller.example", "127.0.0.1"])
    cert = x509.load_pem_x509_certificate(cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["controller.example"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert key.public_key() == cert.public_key()
    with pytest.raises(PkiError, match="not a node certificate"):
        ca.verify_node_cert(cert)


def test_csr_with_a_bad_signature_is_refused(ca: CertificateAuthority) -> None:
    good = csr_pem()
    der = bytearray(x509.load_pem_x509_csr(good).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    with pytest.raises(PkiError):
        ca.issue_node_cert("branch-1", csr_from_der(bytes(der)))


def test_csr_whose_signature_is_not_its_key_is_refused(ca: CertificateAuthority) -> None:
    # a CSR carrying one key but signed by another: the holder of the key never signed
    key, signer = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    honest = x509.load_pem_x509_csr(csr_pem(key))
    forged = x509.load_pem_x509_csr(csr_pem(signer))
    # splice: key from one, signature from the other (DER surgery on the TBS part)
    tbs_key = honest.tbs_certrequest_bytes
    forged_der = forged.public_bytes(serialization.Encoding.DER)
    swapped = forged_der.replace(forged.tbs_certrequest_bytes, tbs_key)
    with pytest.raises(PkiError, match="signature is bad"):
        load_csr(csr_from_der(swapped))
    with pytest.raises(PkiError, match="signature is bad"):
        ca.issue_node_cert("branch-1", csr_from_der(swapped))


@pytest.mark.parametrize("pem", [b"", b"not a csr", b"-----BEGIN CERTIFICATE REQUEST-----\n"
                                 b"AAAA\n-----END CERTIFICATE REQUEST-----\n"])
def test_garbage_csr_is_refused(ca: CertificateAuthority, pem: bytes) -> None:
    with pytest.raises(PkiError):
        ca.issue_node_cert("branch-1", pem)


def test_rsa_key_and_bad_node_id_are_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(PkiError, match="EC P-256"):
        ca.issue_node_cert("branch-1", csr_pem(rsa.generate_private_key(65537, 2048)))
    with pytest.raises(PkiError, match="not a node id"):
        ca.issue_node_cert("../etc", csr_pem())
