#!/usr/bin/env python3
"""Points MSAL for Python's confidential client at the emulator: client
credentials with a secret, with a certificate (PEM with a SHA-1 thumbprint:
RS256 and `x5t`; PKCS#12: PS256 and `x5t#S256`), and with a federated token
(workload identity). If MSAL gets tokens and reads the refusals, the
emulator's client-credentials grant speaks Entra ID.

Run by tests/tests/emulator_sp.rs with:
  AKSCRED_EMU_LOGIN_URL   https://127.0.0.1:PORT
  AKSCRED_EMU_TENANT      tenant as written in the authority
  AKSCRED_EMU_CA          path of the emulator's CA (PEM)
  AKSCRED_EMU_SECRET_ID, AKSCRED_EMU_SECRET       service principal with a secret
  AKSCRED_EMU_CERT_ID, AKSCRED_EMU_CERT_PEM, AKSCRED_EMU_CERT_P12,
  AKSCRED_EMU_CERT_P12_PASSWORD                   service principal with a certificate
  AKSCRED_EMU_WORKLOAD_ID, AKSCRED_EMU_FEDERATED_TOKEN
                                                  workload identity

Each app is used for one token only: MSAL for Python reuses a signed client
assertion for up to nine minutes, which Entra allows and the emulator (on
purpose) does not.

Exit codes: 0 all checks passed, 1 a check failed, 3 msal or requests is not
installed.
"""

import base64
import hashlib
import json
import os
import sys
from urllib.parse import urlsplit

try:
    import msal
    import requests
    from requests.adapters import HTTPAdapter
except ImportError as e:
    print(f"MISSING: the Python module {e.name!r} is not installed", file=sys.stderr)
    sys.exit(3)

ARM_SCOPE = "https://management.core.windows.net//.default"
AKS_SCOPE = "6dae42f8-4368-4678-94ff-3960e28e3630/.default"

ENV = os.environ
LOGIN = ENV["AKSCRED_EMU_LOGIN_URL"].rstrip("/")
AUTHORITY = f"{LOGIN}/{ENV['AKSCRED_EMU_TENANT']}"

sent = []


class LoopbackOnly(HTTPAdapter):
    """Refuses everything but the emulator, and notes each request."""

    def send(self, request, **kwargs):
        if urlsplit(request.url).hostname not in ("127.0.0.1", "localhost"):
            raise requests.ConnectionError(f"refusing non-emulator URL {request.url}")
        sent.append(request.body if isinstance(request.body, str) else "")
        return super().send(request, **kwargs)


def session():
    s = requests.Session()
    # Otherwise REQUESTS_CA_BUNDLE overrides `verify`, and proxy variables
    # could send loopback requests elsewhere.
    s.trust_env = False
    s.verify = ENV["AKSCRED_EMU_CA"]
    s.mount("https://", LoopbackOnly())
    s.mount("http://", LoopbackOnly())
    return s


def app(client_id, credential):
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=credential,
        authority=AUTHORITY,
        http_client=session(),
        instance_discovery=False,
    )


def claims(jwt):
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def header_of_last_assertion():
    body = dict(p.split("=", 1) for p in sent[-1].split("&") if "=" in p)
    assertion = requests.utils.unquote(body.get("client_assertion", ""))
    head = assertion.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))


failures = []


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f": {detail}" if not ok else ""))
    if not ok:
        failures.append(name)


def token_for(name, client_id, credential, scope, appidacr):
    result = app(client_id, credential).acquire_token_for_client([scope])
    token = result.get("access_token")
    check(name, token is not None, json.dumps(result)[:600])
    if token:
        c = claims(token)
        check(
            f"{name}: app-only claims",
            c.get("appid") == client_id
            and c.get("idtyp") == "app"
            and c.get("appidacr") == appidacr
            and "upn" not in c,
            json.dumps(c),
        )


secret_id = ENV["AKSCRED_EMU_SECRET_ID"]
token_for("secret", secret_id, ENV["AKSCRED_EMU_SECRET"], ARM_SCOPE, "1")
bad = app(secret_id, "wrong").acquire_token_for_client([ARM_SCOPE])
check(
    "wrong secret is invalid_client 7000215",
    bad.get("error") == "invalid_client" and bad.get("error_codes") == [7000215],
    json.dumps(bad)[:600],
)

cert_id = ENV["AKSCRED_EMU_CERT_ID"]
with open(ENV["AKSCRED_EMU_CERT_PEM"]) as f:
    pem = f.read()
key_pem = pem[pem.index("-----BEGIN PRIVATE KEY-----"):]
cert_pem = pem[pem.index("-----BEGIN CERTIFICATE-----"):pem.index("-----END CERTIFICATE-----") + 25]
der = base64.b64decode("".join(cert_pem.splitlines()[1:-1]))
sha1 = hashlib.sha1(der).hexdigest()
token_for(
    "certificate PEM + SHA-1 thumbprint",
    cert_id,
    {"private_key": key_pem, "thumbprint": sha1},
    AKS_SCOPE,
    "2",
)
head = header_of_last_assertion()
check("that was RS256 with x5t", head.get("alg") == "RS256" and "x5t" in head, json.dumps(head))
token_for(
    "certificate PKCS#12",
    cert_id,
    {
        "private_key_pfx_path": ENV["AKSCRED_EMU_CERT_P12"],
        "passphrase": ENV["AKSCRED_EMU_CERT_P12_PASSWORD"],
    },
    AKS_SCOPE,
    "2",
)
head = header_of_last_assertion()
check(
    "that was PS256 with x5t#S256",
    head.get("alg") == "PS256" and "x5t#S256" in head,
    json.dumps(head),
)
other_key = app(cert_id, {"private_key": key_pem, "thumbprint": "00" * 20})
bad = other_key.acquire_token_for_client([AKS_SCOPE])
check(
    "unknown thumbprint is invalid_client 700027",
    bad.get("error") == "invalid_client" and bad.get("error_codes") == [700027],
    json.dumps(bad)[:600],
)

token_for(
    "federated token",
    ENV["AKSCRED_EMU_WORKLOAD_ID"],
    {"client_assertion": ENV["AKSCRED_EMU_FEDERATED_TOKEN"]},
    ARM_SCOPE,
    "2",
)

if failures:
    print(f"{len(failures)} checks failed")
    sys.exit(1)
print("all checks passed")
