"""Starting or joining the Ray cluster that ``--actors`` and ``qagent tune`` run on.

By default a local Ray for the duration of the command: the CPUs it may use, no dashboard,
usage statistics off, and every address on 127.0.0.1. ``--address`` joins an existing cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterator

from qagent.errors import QAgentError


def _drop_auth_enabled_notice(record: logging.LogRecord) -> bool:
    """Ray says on every start that token authentication is on; that it is off still shows."""
    return "authentication is enabled" not in record.getMessage()


@contextlib.contextmanager
def ray_session(address: str | None = None, cpus: int | None = None) -> Iterator[None]:
    """A local Ray cluster for the block (or the one at ``address``): no dashboard, no usage stats."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        yield
        return
    local = {} if address else {"num_cpus": cpus, "_node_ip_address": "127.0.0.1"}
    notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
    notice.addFilter(_drop_auth_enabled_notice)
    on_term = signal.getsignal(signal.SIGTERM)  # ray.init replaces it with sys.exit(15)
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False, **local)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        text = str(exc).strip().splitlines()
        raise QAgentError(
            f"cannot start or join {where}: {text[0][:300] if text else type(exc).__name__}",
            hint="check --address (e.g. auto, on a node of the cluster), or leave it out to start a local cluster",
        ) from None
    finally:
        signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        ray.shutdown()
