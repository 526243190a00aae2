"""TLS and mutual TLS, with a throwaway CA and certificates made by the openssl CLI in the test,
configured through a TOML file as an operator would."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from etf_engine.api.auth import hash_token
from etf_engine.api.server import BackgroundServer
from etf_engine.client import EtfClient
from etf_engine.config import load_config
from etf_engine.ledger import make_ledger

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")

TOKEN = "tls-issuer-token"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(dir: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=dir)


def _leaf(dir: Path, name: str, ca: str, extensions: str) -> None:
    (dir / f"{name}.ext").write_text(extensions)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=dir)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=dir)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    _ca(d, "ca")
    _ca(d, "other-ca")
    _leaf(d, "server", "ca", "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                             "extendedKeyUsage=serverAuth\n")
    _leaf(d, "client", "ca", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    _leaf(d, "stranger", "other-ca", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    return d


def _server(pki: Path, mutual: bool) -> BackgroundServer:
    lines = ['listen = "127.0.0.1:0"', "[tls]", 'cert = "server.pem"', 'key = "server.key"']
    if mutual:
        lines.append('client_ca = "ca.pem"')
    lines += ["[[principals]]", 'name = "ops"', 'role = "issuer"', f'token_sha256 = "{hash_token(TOKEN)}"']
    path = pki / ("mtls.toml" if mutual else "tls.toml")
    path.write_text("\n".join(lines) + "\n")
    return BackgroundServer(load_config(path), ledger=make_ledger(os.environ.get("ETF_LEDGER", "auto")))


@pytest.fixture
def tls_server(pki: Path) -> Iterator[BackgroundServer]:
    with _server(pki, mutual=False) as server:
        yield server


@pytest.fixture
def mtls_server(pki: Path) -> Iterator[BackgroundServer]:
    with _server(pki, mutual=True) as server:
        yield server


def _code(client: EtfClient) -> grpc.StatusCode:
    try:
        client.ping()
    except grpc.RpcError as e:
        return e.code()  # type: ignore[attr-defined, no-any-return]
    finally:
        client.close()
    return grpc.StatusCode.OK


def test_tls(pki: Path, tls_server: BackgroundServer) -> None:
    ca = (pki / "ca.pem").read_bytes()
    target = tls_server.target
    assert _code(EtfClient(target, TOKEN, root_certificates=ca)) == grpc.StatusCode.OK
    assert _code(EtfClient(target, "wrong", root_certificates=ca)) == grpc.StatusCode.UNAUTHENTICATED
    # Plaintext, or a server certificate the client does not trust: no connection.
    assert _code(EtfClient(target, TOKEN, timeout=5)) == grpc.StatusCode.UNAVAILABLE
    other = (pki / "other-ca.pem").read_bytes()
    assert _code(EtfClient(target, TOKEN, root_certificates=other, timeout=5)) == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls(pki: Path, mtls_server: BackgroundServer) -> None:
    ca = (pki / "ca.pem").read_bytes()
    target = mtls_server.target

    def client(name: str | None, token: str = TOKEN) -> EtfClient:
        if name is None:
            return EtfClient(target, token, root_certificates=ca, timeout=5)
        return EtfClient(target, token, root_certificates=ca, private_key=(pki / f"{name}.key").read_bytes(),
                         certificate_chain=(pki / f"{name}.pem").read_bytes(), timeout=5)

    assert _code(client("client")) == grpc.StatusCode.OK
    assert _code(client("client", "wrong")) == grpc.StatusCode.UNAUTHENTICATED  # a certificate is not a token
    assert _code(client(None)) == grpc.StatusCode.UNAVAILABLE
    assert _code(client("stranger")) == grpc.StatusCode.UNAVAILABLE
