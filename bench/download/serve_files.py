"""A static file server for bench/download (aiohttp FileResponse: sendfile, Range).

python -m bench.download.serve_files PORT DIRECTORY
"""

from __future__ import annotations

import sys
from pathlib import Path

from aiohttp import web


def make_app(root: Path) -> web.Application:
    async def serve(request: web.Request) -> web.FileResponse:
        return web.FileResponse(root / request.match_info["name"], chunk_size=1024 * 1024)

    app = web.Application()
    app.router.add_get("/{name}", serve)
    return app


if __name__ == "__main__":
    web.run_app(
        make_app(Path(sys.argv[2])), host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None
    )
