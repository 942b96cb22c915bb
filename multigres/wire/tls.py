"""TLS for both sides of a Postgres connection: SSL contexts, libpq's sslmode, channel binding.

- ``make_server_context``: what we present to clients that send SSLRequest.
- ``make_client_context``: how we talk to Postgres, with libpq's ``sslmode`` meanings.
- ``channel_binding_data``: the ``tls-server-end-point`` data (RFC 5929) of a certificate,
  which SCRAM-SHA-256-PLUS binds into the proof, so that a man in the middle that terminates
  TLS cannot relay a login.
- ``make_self_signed_cert``: a key and certificate for tests and for a local cluster.

TLS 1.2 is the floor on both sides, as in libpq and Postgres (ssl_min_protocol_version).
"""

from __future__ import annotations

import enum
import hashlib
import os
import shutil
import ssl
import subprocess
from pathlib import Path

MIN_TLS_VERSION = ssl.TLSVersion.TLSv1_2
# libpq (17+) sends this ALPN name and Postgres 17 requires it on direct TLS connections; older
# peers ignore it.
ALPN_PROTOCOL = "postgresql"


class SslMode(enum.Enum):
    """libpq's sslmode: whether to use TLS and what to check of the server's certificate."""

    DISABLE = "disable"
    ALLOW = "allow"  # plaintext first, TLS if the server insists
    PREFER = "prefer"  # TLS first, plaintext if the server has no TLS
    REQUIRE = "require"  # TLS, certificate not checked (unless a root certificate is given)
    VERIFY_CA = "verify-ca"  # TLS, certificate signed by a trusted CA
    VERIFY_FULL = "verify-full"  # ... and issued for the host name we connect to

    @classmethod
    def parse(cls, text: str) -> SslMode:
        try:
            return cls(text.strip().lower())
        except ValueError:
            names = ", ".join(m.value for m in cls)
            raise ValueError(f"invalid sslmode {text!r}: use one of {names}") from None

    @property
    def tls_first(self) -> bool:
        """True when the connection starts with SSLRequest."""
        return self not in (SslMode.DISABLE, SslMode.ALLOW)

    @property
    def tls_required(self) -> bool:
        """True when a server without TLS must be refused."""
        return self in (SslMode.REQUIRE, SslMode.VERIFY_CA, SslMode.VERIFY_FULL)


def make_server_context(
    cert_file: str | os.PathLike[str],
    key_file: str | os.PathLike[str],
    *,
    ca_file: str | os.PathLike[str] | None = None,
    min_version: ssl.TLSVersion = MIN_TLS_VERSION,
) -> ssl.SSLContext:
    """The context for client connections: our certificate and key.

    With ``ca_file``, clients are asked for a certificate signed by it (as Postgres does with
    ssl_ca_file); a client without one can still connect, and its certificate is checked when
    it sends one.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = min_version
    try:
        ctx.load_cert_chain(os.fspath(cert_file), os.fspath(key_file))
    except (OSError, ssl.SSLError) as e:
        raise ValueError(
            f"cannot load the TLS certificate {cert_file} with key {key_file}: {e}"
        ) from e
    if ca_file is not None:
        ctx.load_verify_locations(cafile=os.fspath(ca_file))
        ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols([ALPN_PROTOCOL])
    return ctx


def make_client_context(
    sslmode: SslMode | str,
    *,
    root_cert: str | os.PathLike[str] | None = None,
    cert_file: str | os.PathLike[str] | None = None,
    key_file: str | os.PathLike[str] | None = None,
    min_version: ssl.TLSVersion = MIN_TLS_VERSION,
) -> ssl.SSLContext | None:
    """The context for connections to a server, or None for ``disable``.

    As libpq: ``allow``/``prefer``/``require`` encrypt without checking the certificate, except
    that ``require`` with a ``root_cert`` checks it as ``verify-ca`` does. ``verify-ca`` and
    ``verify-full`` check it against ``root_cert``, or the system's CAs when none is given
    (libpq's sslrootcert=system). With ``verify-full``, wrap with ``server_hostname`` set to
    the host connected to. ``cert_file``/``key_file`` is a client certificate.
    """
    mode = SslMode.parse(sslmode) if isinstance(sslmode, str) else sslmode
    if mode is SslMode.DISABLE:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = min_version
    verify = mode in (SslMode.VERIFY_CA, SslMode.VERIFY_FULL) or (
        mode is SslMode.REQUIRE and root_cert is not None
    )
    if verify:
        ctx.check_hostname = mode is SslMode.VERIFY_FULL
        ctx.verify_mode = ssl.CERT_REQUIRED
        if root_cert is not None:
            ctx.load_verify_locations(cafile=os.fspath(root_cert))
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert_file is not None:
        ctx.load_cert_chain(os.fspath(cert_file), os.fspath(key_file) if key_file else None)
    ctx.set_alpn_protocols([ALPN_PROTOCOL])
    return ctx


# -- channel binding (tls-server-end-point) --------------------------------------------------------

# Signature algorithm OID -> the hash that tls-server-end-point uses: the certificate's own
# signature hash, except that MD5 and SHA-1 are upgraded to SHA-256 (RFC 5929 section 4.1).
_SIGNATURE_HASHES = {
    "1.2.840.113549.1.1.4": "sha256",  # md5WithRSAEncryption
    "1.2.840.113549.1.1.5": "sha256",  # sha1WithRSAEncryption
    "1.2.840.113549.1.1.11": "sha256",  # sha256WithRSAEncryption
    "1.2.840.113549.1.1.12": "sha384",
    "1.2.840.113549.1.1.13": "sha512",
    "1.2.840.113549.1.1.14": "sha224",
    "1.2.840.10045.4.1": "sha256",  # ecdsa-with-SHA1
    "1.2.840.10045.4.3.1": "sha224",
    "1.2.840.10045.4.3.2": "sha256",
    "1.2.840.10045.4.3.3": "sha384",
    "1.2.840.10045.4.3.4": "sha512",
    "1.2.840.10040.4.3": "sha256",  # dsa-with-sha1
    "2.16.840.1.101.3.4.3.1": "sha224",  # dsa-with-sha224
    "2.16.840.1.101.3.4.3.2": "sha256",  # dsa-with-sha256
}
_RSASSA_PSS = "1.2.840.113549.1.1.10"
_DIGEST_OIDS = {
    "1.3.14.3.2.26": "sha256",  # sha1, upgraded
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
    "2.16.840.1.101.3.4.2.4": "sha224",
}


def _der(data: bytes, pos: int) -> tuple[int, int, int]:
    """The DER element at ``pos``: (tag, start of contents, end of contents)."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _oid(data: bytes) -> str:
    if not data:
        raise ValueError("empty OID")
    # The first byte packs two arcs: 40 * first + second (first is 0, 1 or 2).
    arcs = [data[0] // 40, data[0] % 40] if data[0] < 80 else [2, data[0] - 80]
    value = 0
    for byte in data[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    return ".".join(map(str, arcs))


def _signature_hash(der_cert: bytes) -> str:
    # Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm AlgorithmIdentifier, ... }
    tag, start, _ = _der(der_cert, 0)
    if tag != 0x30:
        raise ValueError("not a DER certificate")
    _, _, tbs_end = _der(der_cert, start)
    tag, alg_start, alg_end = _der(der_cert, tbs_end)
    if tag != 0x30:
        raise ValueError("not a DER certificate")
    tag, oid_start, oid_end = _der(der_cert, alg_start)
    if tag != 0x06:
        raise ValueError("not a DER certificate")
    oid = _oid(der_cert[oid_start:oid_end])
    if oid == _RSASSA_PSS:
        # RSASSA-PSS-params ::= SEQUENCE { hashAlgorithm [0] AlgorithmIdentifier DEFAULT sha1, ...}
        digest = "sha256"
        if oid_end < alg_end:
            tag, p_start, p_end = _der(der_cert, oid_end)
            if tag == 0x30 and p_start < p_end:
                tag, h_start, _ = _der(der_cert, p_start)
                if tag == 0xA0:
                    _, a_start, _ = _der(der_cert, h_start)
                    _, o_start, o_end = _der(der_cert, a_start)
                    name = _DIGEST_OIDS.get(_oid(der_cert[o_start:o_end]))
                    if name is None:
                        raise ValueError("unknown RSASSA-PSS hash algorithm")
                    digest = name
        return digest
    name = _SIGNATURE_HASHES.get(oid)
    if name is None:
        raise ValueError(
            f"channel binding is not defined for the certificate's signature algorithm {oid} "
            "(for example Ed25519); use an RSA or ECDSA certificate, or channel_binding=disable"
        )
    return name


def channel_binding_data(der_cert: bytes) -> bytes:
    """tls-server-end-point data of a server certificate (DER): its hash, as SCRAM binds it."""
    return hashlib.new(_signature_hash(der_cert), der_cert).digest()


def cert_file_channel_binding_data(cert_file: str | os.PathLike[str]) -> bytes:
    """Channel-binding data of our own certificate (the first one in a PEM file)."""
    der = ssl.PEM_cert_to_DER_cert(Path(cert_file).read_text())
    return channel_binding_data(der)


def peer_channel_binding_data(conn: ssl.SSLObject | ssl.SSLSocket) -> bytes | None:
    """Channel-binding data of the server a TLS connection reached (None before handshake)."""
    der = conn.getpeercert(binary_form=True)
    return channel_binding_data(der) if der else None


# -- certificates for tests and local clusters -----------------------------------------------------


def make_self_signed_cert(
    directory: str | os.PathLike[str],
    cn: str = "localhost",
    *,
    days: int = 3650,
    digest: str = "sha256",
    name: str = "server",
) -> tuple[Path, Path]:
    """Write ``<name>.crt`` and ``<name>.key`` (mode 0600) into ``directory`` with openssl.

    An ECDSA P-256 certificate for ``cn`` that also names localhost, 127.0.0.1 and ::1, so
    that ``verify-full`` works over loopback with the certificate itself as root. Returns the
    paths (certificate, key).
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError(
            "the openssl command is needed to make a certificate (apt install openssl)"
        )
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    cert, key = out / f"{name}.crt", out / f"{name}.key"
    sans = ",".join(dict.fromkeys([f"DNS:{cn}", "DNS:localhost", "IP:127.0.0.1", "IP:::1"]))
    argv = [
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", str(days),
        "-subj", f"/CN={cn}", "-addext", f"subjectAltName={sans}", f"-{digest}",
    ]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl could not make a certificate: {proc.stderr.strip()}")
    # Postgres refuses a key that others can read.
    os.chmod(key, 0o600)
    return cert, key
