#!/usr/bin/env python3
"""Points MSAL for Python, Microsoft's own client, at the emulator.

If MSAL can sign in, refresh and read the emulator's errors, the emulator
speaks Entra ID closely enough for akscred's tests to mean something.

Run by tests/tests/msal_fidelity.rs with:
  AKSCRED_EMU_LOGIN_URL  https://127.0.0.1:PORT
  AKSCRED_EMU_TENANT     tenant as written in the authority (domain or GUID)
  AKSCRED_EMU_TENANT_ID  the tenant GUID (expected `tid`)
  AKSCRED_EMU_CA         path of the emulator's CA (PEM)
  AKSCRED_EMU_USER, AKSCRED_EMU_PASSWORD   an active user
and, for the federated checks (AKSCRED_EMU_MODE=federated):
  AKSCRED_EMU_FED_USER, AKSCRED_EMU_FED_PASSWORD   an active user of the
      federated domain, signed in by the emulated AD FS (WS-Trust)

Exit codes: 0 all checks passed, 1 a check failed, 3 msal or requests is not
installed.
"""

import base64
import json
import os
import sys
import warnings
from urllib.parse import urlsplit, urlunsplit

try:
    import msal
    import requests
    from requests.adapters import HTTPAdapter
except ImportError as e:
    print(
        f"MISSING: the Python module {e.name!r} is not installed; "
        "run: python3 -m pip install msal",
        file=sys.stderr,
    )
    sys.exit(3)

AZURE_CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
ARM_SCOPE = "https://management.core.windows.net//.default"
AKS_SERVER = "6dae42f8-4368-4678-94ff-3960e28e3630"

LOGIN = os.environ["AKSCRED_EMU_LOGIN_URL"].rstrip("/")
TENANT = os.environ["AKSCRED_EMU_TENANT"]
TENANT_ID = os.environ["AKSCRED_EMU_TENANT_ID"]
CA = os.environ["AKSCRED_EMU_CA"]
USER = os.environ["AKSCRED_EMU_USER"]
PASSWORD = os.environ["AKSCRED_EMU_PASSWORD"]
MODE = os.environ.get("AKSCRED_EMU_MODE", "managed")
FED_USER = os.environ.get("AKSCRED_EMU_FED_USER", "")
FED_PASSWORD = os.environ.get("AKSCRED_EMU_FED_PASSWORD", "")
PORT = urlsplit(LOGIN).port

# ROPC is deprecated in MSAL; the warning is noise here.
warnings.simplefilter("ignore", DeprecationWarning)

requested = []


class LoopbackOnly(HTTPAdapter):
    """Sends port-less loopback URLs to the emulator's port and refuses
    everything else.

    MSAL builds the user-realm URL from the authority's host name alone, so
    https://127.0.0.1:PORT/tenant makes it ask https://127.0.0.1/common/...
    (PROTOCOLS.md section 9). Refusing other hosts makes sure nothing reached
    the real Azure.
    """

    def send(self, request, **kwargs):
        parts = urlsplit(request.url)
        if parts.hostname not in ("127.0.0.1", "localhost"):
            raise requests.ConnectionError(f"refusing non-emulator URL {request.url}")
        if parts.port is None:
            request.url = urlunsplit(parts._replace(netloc=f"{parts.hostname}:{PORT}"))
        requested.append(f"{request.method} {urlsplit(request.url).path}")
        return super().send(request, **kwargs)


def session():
    s = requests.Session()
    # Otherwise REQUESTS_CA_BUNDLE overrides `verify`, and proxy variables
    # could route loopback traffic elsewhere.
    s.trust_env = False
    s.verify = CA
    s.mount("https://", LoopbackOnly())
    s.mount("http://", LoopbackOnly())
    return s


def claims(jwt):
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


failures = []


def check(ok, what, detail=None):
    if ok:
        print(f"ok   {what}")
    else:
        failures.append(what)
        print(f"FAIL {what}: {json.dumps(detail, default=str)[:2000]}")


def app(tenant):
    return msal.PublicClientApplication(
        AZURE_CLI,
        authority=f"{LOGIN}/{tenant}",
        instance_discovery=False,
        http_client=session(),
    )


def main():
    print(f"msal {msal.__version__}")
    a = app(TENANT)

    r = a.acquire_token_by_username_password(USER, PASSWORD, scopes=[ARM_SCOPE])
    check("access_token" in r, "ROPC for ARM succeeds", r)
    if "access_token" not in r:
        return
    c = claims(r["access_token"])
    check(c.get("aud") == "https://management.core.windows.net/", "ARM token aud", c)
    check(c.get("tid") == TENANT_ID, "ARM token tid", c)
    check(c.get("upn") == USER and c.get("appid") == AZURE_CLI, "ARM token upn and appid", c)
    check(r.get("token_type") == "Bearer" and isinstance(r.get("expires_in"), int), "token_type, integer expires_in", r)
    check("GET /common/userrealm/" + USER in requested, "MSAL asked the user realm (port restored)", requested)
    check(
        (r.get("id_token_claims") or {}).get("preferred_username") == USER,
        "id_token claims decoded by MSAL",
        r.get("id_token_claims"),
    )

    accounts = a.get_accounts(username=USER)
    check(len(accounts) == 1, "MSAL cached exactly one account (client_info understood)", accounts)
    if len(accounts) != 1:
        return
    account = accounts[0]
    check(
        account.get("home_account_id") == f"{c.get('oid')}.{TENANT_ID}",
        "home_account_id is uid.utid from client_info",
        account,
    )

    first_rt = r.get("refresh_token")
    r2 = a.acquire_token_silent([ARM_SCOPE], account=account, force_refresh=True)
    check(bool(r2) and "access_token" in r2, "acquire_token_silent(force_refresh=True) refreshes", r2)
    if r2 and "access_token" in r2:
        check(r2.get("token_source") == "identity_provider", "the silent token came from the token endpoint", r2)
        check(claims(r2["access_token"]).get("aud") == c.get("aud"), "refreshed token has the same aud", r2)
    check(
        any(p.endswith("/oauth2/v2.0/token") for p in requested[-1:]),
        "the refresh went to the v2 token endpoint",
        requested,
    )

    r3 = a.acquire_token_silent([f"{AKS_SERVER}/.default"], account=account)
    check(
        bool(r3) and claims(r3.get("access_token", "x.e30.x")).get("aud") == AKS_SERVER,
        "the refresh token also buys a token for the AKS server app",
        r3,
    )

    # The emulator rotates refresh tokens: the first one is spent by now.
    r4 = a.acquire_token_by_refresh_token(first_rt, scopes=[ARM_SCOPE])
    check(
        r4.get("error") == "invalid_grant" and 70008 in r4.get("error_codes", []),
        "a spent refresh token is refused with 70008",
        r4,
    )

    bad = app(TENANT).acquire_token_by_username_password(USER, "not the password", scopes=[ARM_SCOPE])
    check(
        bad.get("error") == "invalid_grant" and 50126 in bad.get("error_codes", []),
        "a wrong password gives invalid_grant with 50126",
        bad,
    )
    check(
        bad.get("error_description", "").startswith("AADSTS50126: ")
        and "Trace ID: " in bad.get("error_description", ""),
        "the error description has the real form",
        bad,
    )

    common = app("common").acquire_token_by_username_password(USER, PASSWORD, scopes=[ARM_SCOPE])
    check(
        "access_token" not in common and 9001023 in common.get("error_codes", []),
        "ROPC on the common tenant is refused",
        common,
    )


def federated():
    """MSAL does the whole federated flow itself: user realm, MEX, WS-Trust
    to the endpoint it picks, then the SAML bearer grant with the assertion
    (URL-safe base64, no padding) at the v2 token endpoint."""
    print(f"msal {msal.__version__}, federated user {FED_USER}")
    a = app(TENANT)
    r = a.acquire_token_by_username_password(FED_USER, FED_PASSWORD, scopes=[ARM_SCOPE])
    check("access_token" in r, "federated sign-in (realm, MEX, WS-Trust, SAML grant) succeeds", r)
    if "access_token" not in r:
        return
    c = claims(r["access_token"])
    check(c.get("upn") == FED_USER and c.get("tid") == TENANT_ID, "federated token upn and tid", c)
    check(c.get("aud") == "https://management.core.windows.net/", "federated token aud", c)
    check(any(p == "GET /adfs/services/trust/mex" for p in requested), "MSAL read the AD FS metadata", requested)
    check(
        any(p.startswith("POST /adfs/services/trust/") and p.endswith("/usernamemixed") for p in requested),
        "MSAL posted the RST to a usernamemixed endpoint",
        requested,
    )
    check(
        (r.get("id_token_claims") or {}).get("preferred_username") == FED_USER,
        "federated id_token claims decoded by MSAL",
        r.get("id_token_claims"),
    )
    accounts = a.get_accounts(username=FED_USER)
    check(len(accounts) == 1, "MSAL cached the federated account", accounts)
    if accounts:
        r2 = a.acquire_token_silent([f"{AKS_SERVER}/.default"], account=accounts[0])
        check(
            bool(r2) and claims(r2.get("access_token", "x.e30.x")).get("aud") == AKS_SERVER,
            "the federated user's refresh token buys an AKS server token",
            r2,
        )

    try:
        bad = app(TENANT).acquire_token_by_username_password(FED_USER, "not the password", scopes=[ARM_SCOPE])
        check(False, "a wrong federated password is refused", bad)
    except RuntimeError as e:
        # MSAL raises with the parsed SOAP fault of AD FS's HTTP 500.
        text = str(e)
        check(
            "FailedAuthentication" in text and "ID3242" in text,
            "a wrong federated password gives AD FS's FailedAuthentication fault",
            text,
        )


if __name__ == "__main__":
    try:
        if MODE == "federated":
            federated()
        else:
            main()
    except Exception as e:  # a crash inside MSAL is a fidelity failure too
        failures.append(repr(e))
        print(f"FAIL MSAL raised {e!r}")
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        sys.exit(1)
    print("all checks passed")
