"""A stand-in for a deployed endpoint: an HTTPS proxy on 127.0.0.1 that answers itself.

Moto has no API Gateway data plane, so a deployed stage's URL
(``https://{id}.execute-api.{region}.amazonaws.com/...``) answers nothing offline. Clients
that honour ``HTTPS_PROXY`` and ``SSL_CERT_FILE`` (httpx does) send their requests for it
through this proxy: it accepts the CONNECT, ends TLS with a certificate it made for
``*.execute-api.{region}.amazonaws.com`` (the file to trust is ``ca_file``), and answers
each request 200 with ``answer``, keeping what was asked: host, method, path, headers, body.
"""

from __future__ import annotations

import datetime
import socketserver
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Seen:
    host: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def write_certificate(directory: Path, region: str) -> tuple[Path, Path]:
    """A self-signed certificate for the region's execute-api names, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lambdaserve test endpoint")])
    now = datetime.datetime.now(datetime.timezone.utc)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(f"*.execute-api.{region}.amazonaws.com")]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "endpoint.pem", directory / "endpoint.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


@dataclass
class Tunnel:
    port: int
    ca_file: Path
    seen: list[Seen] = field(default_factory=list)
    server: Any = None

    @property
    def proxy(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_tunnel(directory: Path, region: str, answer: bytes) -> Tunnel:
    cert_file, key_file = write_certificate(directory, region)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    seen: list[Seen] = []

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            connect = self.rfile.readline().decode().split()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            if len(connect) < 2 or connect[0] != "CONNECT":
                self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            host = connect[1].rsplit(":", 1)[0]
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            with context.wrap_socket(self.request, server_side=True) as tls, tls.makefile("rwb") as stream:
                while request := stream.readline().decode().split():
                    headers = {}
                    while (line := stream.readline()) not in (b"\r\n", b"\n", b""):
                        name, _, value = line.decode().partition(":")
                        headers[name.strip().lower()] = value.strip()
                    body = stream.read(int(headers.get("content-length", "0")))
                    seen.append(Seen(host, request[0], request[1], headers, body))
                    stream.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        + f"Content-Length: {len(answer)}\r\n\r\n".encode()
                        + answer
                    )
                    stream.flush()

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return Tunnel(server.server_address[1], cert_file, seen, server)
