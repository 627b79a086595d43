"""``python -m qagent.serve POLICY.onnx``: the HTTP server without the qagent CLI.

For deployments that install only numpy and onnxruntime (``pip install --no-deps qagent``):
the same server and options as ``qagent serve``, with argparse instead of click.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

from qagent.serve.http import ServerOptions, run_server
from qagent.serve.policy import PolicyLoadError


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in ``[low, high]``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < low or (high is not None and value > high):
            span = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {span}, got {value}")
        return value

    return parse


def seconds(text: str) -> float:
    """An argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def main(argv: list[str] | None = None, prog: str = "python -m qagent.serve") -> int:
    """Parse ``argv``, serve until SIGINT or SIGTERM; 0 on a clean stop, 2 on a user error."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve an exported qagent policy over HTTP: qagent's v1 API and the Open Inference Protocol (v2).",
    )
    parser.add_argument("policy", help="the exported POLICY.onnx")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--port", type=integer(0, 65535), default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument(
        "--workers",
        type=integer(1, 1024),
        default=1,
        help="threads that run the policy (default 1: on the event loop, fastest for small networks; "
        "more let a large network infer on several cores)",
    )
    parser.add_argument("--model-name", help="model name in v2 URLs (default: the file name without .onnx)")
    parser.add_argument(
        "--max-body", type=integer(1, 1 << 30), default=8 << 20, help="largest request body in bytes (default 8 MiB)"
    )
    parser.add_argument(
        "--max-inflight",
        type=integer(1, 1 << 34),
        help="request body bytes read and parsed at once, over all clients (default 4 x --max-body)",
    )
    parser.add_argument("--max-batch", type=integer(1), default=4096, help="largest batch of observations")
    parser.add_argument("--session-ttl", type=seconds, default=600.0, help="seconds before an idle session expires")
    parser.add_argument(
        "--max-sessions", type=integer(1), default=10_000, help="open sessions; more end the least recently used"
    )
    parser.add_argument("--access-log", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    if args.max_inflight is not None and args.max_inflight < args.max_body:
        parser.error(f"argument --max-inflight: must be at least --max-body ({args.max_body}), got {args.max_inflight}")
    options = ServerOptions(
        model_name=args.model_name or Path(args.policy).stem,
        max_body_bytes=args.max_body,
        max_inflight_bytes=args.max_inflight,
        max_batch=args.max_batch,
        session_ttl=args.session_ttl,
        max_sessions=args.max_sessions,
        workers=args.workers,
        access_log=args.access_log,
    )
    try:
        run_server(
            args.policy, args.host, args.port, options, announce=lambda line: print(line, file=sys.stderr, flush=True)
        )
    except PolicyLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        print(f"error: cannot listen on {args.host}:{args.port}: {reason} (pick another --port)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
