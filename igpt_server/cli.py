"""``igpt-server``: run the server with uvicorn."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import uvicorn

from igpt_server.app import create_app
from igpt_server.settings import Settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="igpt-server", description="Talk to images while pointing at them.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--data-dir", type=Path, help="sessions and caches (IGPT_DATA_DIR, default ./data)")
    parser.add_argument("--config", type=Path, help="a TOML settings file (IGPT_CONFIG_FILE)")
    args = parser.parse_args(argv)

    overrides: dict[str, object] = {}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    if args.config is not None:
        overrides["config_file"] = args.config
    settings = Settings(**overrides)  # type: ignore[arg-type]
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    url_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"iGPT server: open http://{url_host}:{args.port}/  (API: /api, OpenAPI: /docs)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
