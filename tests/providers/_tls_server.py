"""A loopback HTTPS server answering every POST with `{}`, under the test CA's certificate:
the child processes of the transport parity tests and soak/pyreqwest_exit.py run it."""

from __future__ import annotations

import ssl
from pathlib import Path

from aiohttp import web

__all__ = ["DATA", "start_tls_server"]

DATA = Path(__file__).parent / "data"


async def start_tls_server() -> tuple[web.AppRunner, str]:
    """The started server's runner (for `cleanup()`) and its URL."""
    app = web.Application()
    app.router.add_post("/", lambda request: web.json_response({}))
    runner = web.AppRunner(app)
    await runner.setup()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(DATA / "loopback_cert.pem", DATA / "loopback_key.pem")
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    return runner, f"https://127.0.0.1:{runner.addresses[0][1]}/"
