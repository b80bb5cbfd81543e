"""Who holds a lease: a token naming this host and process, with a random part (a pid is
reused; two apps in one process, as in tests, are two holders)."""

from __future__ import annotations

import os
import secrets
import socket


def new_owner() -> str:
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{secrets.token_hex(6)}"
