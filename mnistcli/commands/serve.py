"""`mnistcli serve`: the drawing page and the JSON API (needs the serve extra)."""

from __future__ import annotations

import copy
import ipaddress
import logging
import socket
from typing import Annotated, Any

import typer

from mnistcli import ui
from mnistcli.commands.common import CheckpointPath, Device, DeviceName, handles_errors, value
from mnistcli.errors import MissingExtra, MnistCliError, OptionError

DEFAULT_MAX_UPLOAD_MB = 10.0


@handles_errors
def serve(
    checkpoint_path: CheckpointPath = None,
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 exposes it to your network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    max_upload: Annotated[
        float, typer.Option(help="Largest request body, in MB; bigger ones get 413.")
    ] = DEFAULT_MAX_UPLOAD_MB,
    threads: Annotated[int, typer.Option(help="Threads torch may use for inference.")] = 2,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="Print every request; without it only failed ones (4xx, 5xx).")
    ] = False,
    device: Device = DeviceName("auto"),
) -> None:
    """Draw a digit in the browser and watch the network read it; a JSON API for programs."""
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise MissingExtra("serve", "mnistcli serve") from exc
    if max_upload <= 0 or threads < 1 or not 0 < port < 65536:
        raise OptionError("--max-upload must be positive, --threads at least 1, --port 1-65535")
    import torch

    from mnistcli import checkpoint, devices
    from mnistcli.webapp import create_app

    torch.set_num_threads(threads)
    loaded = checkpoint.load_model(checkpoint_path, devices.select_device(value(device)))
    sock = _listen(host, port)
    ui.info(f"Model {loaded.path} ({loaded.source}): {loaded.checkpoint.describe()}")
    ui.info(f"Serving on http://{_url_host(host)}:{port}  (API: /api/predict, /api/health, /api/docs; Ctrl-C stops)")
    if not ipaddress.ip_address(sock.getsockname()[0]).is_loopback:  # the address bound, IPv4 or IPv6
        ui.warn(f"listening on {host}: anyone who can reach this machine can use it (see the README's Safety section)")
    app = create_app(loaded, max_upload=int(max_upload * 1e6))
    server = uvicorn.Server(uvicorn.Config(app, log_config=log_config(every_request=access_log), log_level=None))
    server.run(sockets=[sock])


class FailedRequests(logging.Filter):
    """Lets through uvicorn's access-log lines of requests that got a 4xx or a 5xx."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = record.args[4] if isinstance(record.args, tuple) and len(record.args) == 5 else None
        return not isinstance(status, int) or status >= 400


def log_config(every_request: bool) -> dict[str, Any]:
    """uvicorn's logging with its own startup lines left out (the command prints where it serves) and its
    access log on stdout: every request, or (the default) only those that failed. Warnings, and the
    traceback of a request that crashed, go to stderr."""
    import uvicorn.config

    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["uvicorn.error"]["level"] = "WARNING"
    config["loggers"]["uvicorn.access"]["level"] = "INFO"
    config["formatters"]["access"]["fmt"] = '%(asctime)s %(client_addr)s "%(request_line)s" %(status_code)s'
    config["formatters"]["access"]["datefmt"] = "%Y-%m-%d %H:%M:%S"
    if not every_request:
        config["filters"] = {"failed": {"()": FailedRequests}}
        config["handlers"]["access"]["filters"] = ["failed"]
    return config


def _listen(host: str, port: int) -> socket.socket:
    """Bind the port before anything else, so a busy port is one clear line."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        raise MnistCliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pass another --port") from exc
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
