"""``igpt-server``: run the server with uvicorn.

``--host`` other than a loopback address needs API keys (``IGPT_API_KEYS``), or ``--insecure``
when a proxy in front authenticates. ``--make-key NAME`` prints a new key and the settings
line that stores its hash, then exits. On a loopback address with no ``trusted_hosts`` set,
only the loopback names are accepted as ``Host`` (a page of another site cannot reach the
server through DNS rebinding).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import uvicorn

from igpt_server import logs
from igpt_server.auth import check_exposure, hash_key, is_loopback, new_key
from igpt_server.settings import Settings

LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="igpt-server", description="Talk to images while pointing at them.")
    parser.add_argument("--host", default=None, help="address to bind (IGPT_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--data-dir", type=Path, help="sessions and caches (IGPT_DATA_DIR, default ./data)")
    parser.add_argument("--config", type=Path, help="a TOML settings file (IGPT_CONFIG_FILE)")
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="serve a non-loopback address without API keys (only behind a proxy that authenticates)",
    )
    parser.add_argument(
        "--make-key", metavar="NAME", help="print a new API key for NAME and its settings line, then exit"
    )
    args = parser.parse_args(argv)

    if args.make_key:
        print(make_key(args.make_key))
        return
    overrides: dict[str, object] = {}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    if args.config is not None:
        overrides["config_file"] = args.config
    if args.host is not None:
        overrides["host"] = args.host
    settings = Settings(**overrides)  # type: ignore[arg-type]
    check_exposure(settings, args.insecure)
    if settings.trusted_hosts is None and is_loopback(settings.host):
        settings = settings.model_copy(update={"trusted_hosts": LOOPBACK_HOSTS})
    logs.configure(settings.log_format, logging.INFO)
    from igpt_server.app import create_app  # heavy: not needed for --make-key

    app = create_app(settings)
    url_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    print(f"iGPT server: open http://{url_host}:{args.port}/  (API: /api, OpenAPI: /docs)", flush=True)
    if settings.auth_mode() == "keys":
        print(f"API keys required ({len(settings.api_keys)} configured)", flush=True)
    uvicorn.run(app, host=settings.host, port=args.port, log_config=None, proxy_headers=False)


def make_key(name: str) -> str:
    """A new key for ``name``: the key (give it to its user) and the line to configure."""
    if not name.replace("-", "").replace("_", "").isalnum():
        raise SystemExit("a key name is letters, digits, '-' and '_'")
    key = new_key()
    digest = hash_key(key)
    return (
        f"key for {name} (give it to its user; it is shown only now):\n  {key}\n"
        f"configure its hash (environment, or [api_keys] in the TOML file):\n"
        f'  IGPT_API_KEYS={name}={digest}\n  {name} = "{digest}"'
    )


if __name__ == "__main__":
    main()
