"""``make run``: starts the dashboard on 127.0.0.1, or shared on the network with a token.

    make run                                   http://127.0.0.1:8501, for this machine's user only
    RESNET_LAB_ADDRESS=0.0.0.0 make run        every interface; RESNET_LAB_TOKEN, or one generated here
                                               and printed with the link to share

Nothing here imports Streamlit: it prepares the settings and replaces itself with ``streamlit run``.
"""
from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ADDRESS_ENV = "RESNET_LAB_ADDRESS"
TOKEN_ENV = "RESNET_LAB_TOKEN"
MIN_TOKEN = 16


class ServeError(Exception):
    pass


def _loopback(address: str) -> bool:
    from dashboard.access import is_loopback   # one definition, beside the sign-in gate that uses it

    return is_loopback(address)


def settings(env: dict, port: int) -> tuple[str, str | None, list[str]]:
    """(address, token or None, lines to print) for ``env``; raises ServeError for an unusable setting."""
    address = env.get(ADDRESS_ENV, "").strip() or "127.0.0.1"
    token = env.get(TOKEN_ENV, "").strip() or None
    if token is not None and len(token) < MIN_TOKEN:
        raise ServeError(f"{TOKEN_ENV} is too short to guess-proof a shared server: use at least {MIN_TOKEN} "
                         "characters, or unset it to have one generated")
    if _loopback(address):
        url = f"http://{'localhost' if address == 'localhost' else address}:{port}"
        lines = [f"ResNet Lab: {url} (this machine only; {ADDRESS_ENV}=0.0.0.0 shares it with a token)"]
        return address, token, lines
    lines = []
    if token is None:
        token = secrets.token_urlsafe(24)
        lines.append(f"{TOKEN_ENV} was not set: generated a token for this server.")
    host = socket.gethostname() if address in ("0.0.0.0", "::") else address
    lines += [f"ResNet Lab is shared on {address}:{port}; a browser needs the token. Share this link:",
              f"    http://{host}:{port}/?token={token}"]
    return address, token, lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python dashboard/serve.py", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8501") or 8501))
    p.add_argument("--print-only", action="store_true", help="print the settings and exit (tests)")
    a = p.parse_args(argv)
    try:
        address, token, lines = settings(dict(os.environ), a.port)
    except ServeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    if token is not None:
        env[TOKEN_ENV] = token
    for line in lines:
        print(line, flush=True)
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"), "--server.port",
           str(a.port), "--server.address", address, "--server.enableXsrfProtection", "true"]
    if a.print_only:
        print(" ".join(cmd))
        return 0
    os.chdir(ROOT)
    os.execve(sys.executable, cmd, env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
