"""A stand-in for a cluster's service-account token issuer (the kube-apiserver's OIDC issuer): OIDC
discovery and a JWKS over HTTPS, with a CA of its own that the simulator is told to trust (--trust-ca), and
projected service-account tokens signed with its RS256 key. The simulator fetches the keys from it to
validate client assertions, as Entra does."""

import base64
import datetime
import http.server
import ipaddress
import json
import os
import ssl
import tempfile
import threading
import time

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KID = "sa-key-1"


def _b64(n):
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _certificates(directory):
    """A CA and a serving certificate for 127.0.0.1 signed by it; returns the CA, chain and key files."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test issuer CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = {}
    for name, data in [
        ("ca.pem", _pem(ca)),
        ("chain.pem", _pem(leaf) + _pem(ca)),
        ("key.pem", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())),
    ]:
        files[name] = os.path.join(directory, name)
        with open(files[name], "wb") as f:
            f.write(data)
    return files


class Issuer:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="idbind-issuer-")
        files = _certificates(self.dir)
        self.ca_file = files["ca.pem"]
        self.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = self.signing_key.public_key().public_numbers()
        jwks = {"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": KID, "n": _b64(numbers.n), "e": _b64(numbers.e)}]}
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/openid/v1/jwks", "id_token_signing_alg_values_supported": ["RS256"]}
                elif self.path == "/openid/v1/jwks":
                    body = jwks
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(files["chain.pem"], files["key.pem"])
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, subject, audience="api://AzureADTokenExchange", lifetime=3600):
        """A projected service-account token, as kubelet writes it to AZURE_FEDERATED_TOKEN_FILE."""
        now = int(time.time())
        claims = {"iss": self.url, "sub": subject, "aud": [audience], "iat": now, "nbf": now, "exp": now + lifetime}
        return jwt.encode(claims, self.signing_key, algorithm="RS256", headers={"kid": KID})

    def close(self):
        self.server.shutdown()
