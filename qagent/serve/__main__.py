"""``python -m qagent.serve POLICY.onnx``: the HTTP server without the qagent CLI.

For deployments that install only numpy and onnxruntime (``pip install --no-deps qagent``):
the same server and options as ``qagent serve``, with argparse instead of click.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from qagent.serve.http import ServerOptions, run_server
from qagent.serve.policy import PolicyLoadError


def main(argv: list[str] | None = None, prog: str = "python -m qagent.serve") -> int:
    """Parse ``argv``, serve until SIGINT or SIGTERM; 0 on a clean stop, 2 on a user error."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve an exported qagent policy over HTTP: qagent's v1 API and the Open Inference Protocol (v2).",
    )
    parser.add_argument("policy", help="the exported POLICY.onnx")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="inferences at the same time")
    parser.add_argument("--model-name", help="model name in v2 URLs (default: the file name without .onnx)")
    parser.add_argument("--max-body", type=int, default=8 << 20, help="largest request body in bytes")
    parser.add_argument("--max-batch", type=int, default=4096, help="largest batch of observations")
    parser.add_argument("--session-ttl", type=float, default=600.0, help="seconds before an idle session expires")
    parser.add_argument("--access-log", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    options = ServerOptions(
        model_name=args.model_name or Path(args.policy).stem,
        max_body_bytes=args.max_body,
        max_batch=args.max_batch,
        session_ttl=args.session_ttl,
        workers=max(1, args.workers),
        access_log=args.access_log,
    )
    try:
        run_server(
            args.policy, args.host, args.port, options, announce=lambda line: print(line, file=sys.stderr, flush=True)
        )
    except PolicyLoadError as exc:
        print(f"error: {exc}\nhint: export a policy with 'qagent export RUN_DIR -o policy.onnx'", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}\nhint: pick another --port",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
