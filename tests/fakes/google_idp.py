"""A fake Google identity provider: a real HTTP server on 127.0.0.1, in a thread.

It speaks just enough of Google's OAuth2/OIDC for the gateway's JSON login flow:

- ``GET /authorize``: what the browser would visit. Records the PKCE challenge and redirects to
  ``redirect_uri?code=…&state=…`` for the identity in ``next_identity``.
- ``POST /token``: exchanges a code (single use, client id/secret, redirect uri and PKCE
  verifier checked) for ``{"access_token", "id_token", …}``.
- ``GET /certs``: the JWKS of an RSA key generated when the server starts.

ID tokens are real RS256 JWTs. Each code carries its own claims, so a test can mint a code
for any e-mail/name/sub, or with a wrong ``aud``/``iss``/``exp``, an unverified e-mail, a
token signed by another key or with another algorithm, no id_token, or an error answer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

KID = "fake-google-1"


@dataclass
class CodeGrant:
    claims: dict[str, Any]
    id_token: str | None = None  # a ready token overrides the minted one
    include_id_token: bool = True
    error: tuple[int, Any] | None = None  # (status, JSON body or raw bytes)
    code_challenge: str | None = None


@dataclass
class TokenRequest:
    form: dict[str, str]


@dataclass
class FakeGoogleIdP:
    client_id: str = "fake-client-id.apps.googleusercontent.com"
    client_secret: str = "fake-client-secret"
    redirect_uri: str = "http://127.0.0.1:3000/auth/google/callback"
    issuer: str = ""  # defaults to the server's own base URL
    codes: dict[str, CodeGrant] = field(default_factory=dict)
    token_requests: list[TokenRequest] = field(default_factory=list)
    certs_requests: int = 0
    next_identity: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        host, port = self._server.server_address[:2]
        self.base_url = f"http://{host!s}:{port}"
        if not self.issuer:
            self.issuer = self.base_url

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeGoogleIdP:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.codes.clear()
            self.token_requests.clear()
            self.next_identity = {}
            self.certs_requests = 0

    @property
    def authorize_url(self) -> str:
        return f"{self.base_url}/authorize"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    @property
    def certs_url(self) -> str:
        return f"{self.base_url}/certs"

    # --- test helpers ---------------------------------------------------------------------

    def claims_for(self, **overrides: Any) -> dict[str, Any]:
        """Google-like ID-token claims; pass a claim as None to leave it out."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.client_id,
            "azp": self.client_id,
            "sub": "1" + "".join(secrets.choice("0123456789") for _ in range(20)),
            "email": f"person{secrets.token_hex(4)}@gmail.example",
            "email_verified": True,
            "name": "Test Person",
            "iat": now,
            "exp": now + 3600,
        }
        claims.update(overrides)
        return {key: value for key, value in claims.items() if value is not None}

    def mint_id_token(
        self,
        claims: dict[str, Any],
        *,
        key: Any = None,
        algorithm: str = "RS256",
        kid: str | None = KID,
    ) -> str:
        headers = {"kid": kid} if kid else {}
        signing_key = self.private_key if key is None else key
        return jwt.encode(claims, signing_key, algorithm=algorithm, headers=headers)

    def issue_code(
        self,
        *,
        id_token: str | None = None,
        include_id_token: bool = True,
        error: tuple[int, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A code the token endpoint will exchange for an ID token with these claims."""
        code = "4/" + secrets.token_urlsafe(24)
        with self._lock:
            self.codes[code] = CodeGrant(
                claims=self.claims_for(**claims),
                id_token=id_token,
                include_id_token=include_id_token,
                error=error,
            )
        return code

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        jwk.update(kid=KID, alg="RS256", use="sig")
        return jwk

    # --- endpoint logic (called from the handler thread) -----------------------------------

    def _authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if query.get("client_id") != self.client_id or query.get("redirect_uri") != self.redirect_uri:
            return 400, {"Content-Type": "text/plain"}, b"invalid client or redirect_uri"
        if query.get("response_type") != "code":
            return 400, {"Content-Type": "text/plain"}, b"unsupported response_type"
        code = self.issue_code(**self.next_identity)
        with self._lock:
            self.codes[code].code_challenge = query.get("code_challenge")
        location = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query.get('state', '')})}"
        return 302, {"Location": location}, b""

    def _token(self, form: dict[str, str]) -> tuple[int, Any]:
        with self._lock:
            self.token_requests.append(TokenRequest(form=dict(form)))
            if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
                return 401, {
                    "error": "invalid_client",
                    "error_description": "The OAuth client was not found.",
                }
            if form.get("grant_type") != "authorization_code":
                return 400, {"error": "unsupported_grant_type"}
            grant = self.codes.pop(form.get("code", ""), None)  # codes are single use
        if grant is None:
            return 400, {"error": "invalid_grant", "error_description": "Malformed auth code."}
        if grant.error is not None:
            return grant.error
        if form.get("redirect_uri") != self.redirect_uri:
            return 400, {"error": "redirect_uri_mismatch"}
        if grant.code_challenge is not None:
            verifier = form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
            if digest.decode() != grant.code_challenge:
                return 400, {"error": "invalid_grant", "error_description": "Invalid code verifier."}
        body: dict[str, Any] = {
            "access_token": "ya29." + secrets.token_urlsafe(32),
            "expires_in": 3599,
            "scope": "openid https://www.googleapis.com/auth/userinfo.email",
            "token_type": "Bearer",
        }
        if grant.include_id_token:
            body["id_token"] = grant.id_token or self.mint_id_token(grant.claims)
        return 200, body

    def _certs(self) -> dict[str, Any]:
        with self._lock:
            self.certs_requests += 1
        return {"keys": [self.public_jwk()]}


def _handler_for(idp: FakeGoogleIdP) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            for name, value in (headers or {"Content-Type": "application/json"}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/certs":
                self._send(200, idp._certs())
            elif url.path == "/authorize":
                query = {key: values[0] for key, values in parse_qs(url.query).items()}
                status, headers, body = idp._authorize(query)
                self._send(status, body, headers)
            else:
                self._send(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode()
            if urlsplit(self.path).path != "/token":
                self._send(404, {"error": "not_found"})
                return
            form = {key: values[0] for key, values in parse_qs(raw).items()}
            status, body = idp._token(form)
            headers = None if not isinstance(body, bytes) else {"Content-Type": "text/html"}
            self._send(status, body, headers)

    return Handler
