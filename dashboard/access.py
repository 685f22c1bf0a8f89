"""Who may use the dashboard: nobody but the machine's own user, unless a token is shared.

``make run`` (``dashboard/serve.py``) binds 127.0.0.1. Serving to other machines is one explicit
setting, ``RESNET_LAB_ADDRESS=0.0.0.0``, and then a token is required: ``RESNET_LAB_TOKEN``, or one
generated and printed, as Jupyter does. ``gate()`` runs in ``app.py`` before the page list is built:
a browser session without the token sees a sign-in field and nothing else (no controls, no run list,
no data). The token may also come as ``?token=...`` in the URL (the printed link), which is then
removed from the address bar. Streamlit's XSRF protection stays on (.streamlit/config.toml).
"""
from __future__ import annotations

import hmac
import ipaddress
import os

import streamlit as st

TOKEN_ENV = "RESNET_LAB_TOKEN"
SIGNED_IN = "_resnet_lab_signed_in"


def configured_token() -> str | None:
    token = os.environ.get(TOKEN_ENV, "").strip()
    return token or None


def is_loopback(address: str | None) -> bool:
    """127.0.0.1, ::1 and localhost; an empty address means every interface (Streamlit's default)."""
    if not address:
        return False
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def token_matches(given: object, token: str) -> bool:
    if not isinstance(given, str) or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def gate() -> bool:
    """True when this browser session may see the dashboard; otherwise draws the sign-in field (or
    the refusal of an open server) and returns False: the caller stops the script."""
    token = configured_token()
    if token is None:
        if is_loopback(st.get_option("server.address")):
            return True
        st.title("ResNet Lab")
        st.error(f"This server listens on the network without a token, so it shows nothing. Restart it with "
                 f"`make run` (it binds 127.0.0.1), or set {TOKEN_ENV} to share it.", icon="🔒")
        return False
    if st.session_state.get(SIGNED_IN) is True:
        return True
    from_url = st.query_params.get("token")
    if from_url is not None:
        del st.query_params["token"]  # out of the address bar and the browser's history
        if token_matches(from_url, token):
            st.session_state[SIGNED_IN] = True
            return True
    st.title("ResNet Lab")
    with st.form("sign_in", border=False):
        given = st.text_input("Access token", type="password", key="access_token",
                              help="Printed by `make run` on the machine that serves the dashboard")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        if token_matches(given, token):
            st.session_state[SIGNED_IN] = True
            st.session_state.pop("access_token", None)
            st.rerun()
        st.error("That is not the token: ask whoever runs the server for it.", icon="🔒")
    elif from_url is not None:
        st.error("The link's token is not this server's: ask whoever runs the server for it.", icon="🔒")
    return False
