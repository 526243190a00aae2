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


def _serve_once(config: Path) -> subprocess.CompletedProcess[str]:
    import sys

    root = Path(__file__).resolve().parent.parent
    return subprocess.run([sys.executable, "-m", "etf_engine.cli", "serve", "--config", str(config)],
                          env={**os.environ, "PYTHONPATH": str(root)}, text=True, capture_output=True, timeout=60)


@pytest.mark.parametrize(("tls", "names"), [
    ('cert = "server.pem"\nkey = "client.key"', ("tls.key", "client.key", "does not match", "server.pem")),
    ('cert = "server.key"\nkey = "server.key"', ("tls.cert", "server.key", "not a readable PEM certificate")),
    ('cert = "server.pem"\nkey = "server.pem"', ("tls.key", "server.pem", "not a readable PEM private key")),
    ('cert = "server.pem"\nkey = "server.key"\nclient_ca = "garbage.pem"',
     ("tls.client_ca", "garbage.pem", "not a readable PEM certificate")),
], ids=["key-of-another-cert", "cert-is-a-key", "key-is-a-cert", "garbage-client-ca"])
def test_bad_tls_material_is_one_line_and_exit_2(pki: Path, tmp_path: Path, tls: str, names: tuple[str, ...]) -> None:
    """grpc would say only "Failed to bind to address": the config names the file and the problem."""
    (pki / "garbage.pem").write_text("not a certificate\n")
    config = tmp_path / "bad-tls.toml"
    config.write_text(f'listen = "127.0.0.1:0"\ndata_dir = "{tmp_path / "data"}"\n[tls]\n{tls}\n'
                      .replace('"server', f'"{pki}/server').replace('"client', f'"{pki}/client')
                      .replace('"garbage', f'"{pki}/garbage'))
    result = _serve_once(config)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for name in names:
        assert name in lines[0], lines[0]
    assert not (tmp_path / "data").exists()  # refused before anything was created


def test_good_tls_material_passes_the_check(pki: Path) -> None:
    config = pki / "ok.toml"
    config.write_text(f'[tls]\ncert = "{pki}/server.pem"\nkey = "{pki}/server.key"\nclient_ca = "{pki}/ca.pem"\n')
    assert load_config(config).tls is not None
