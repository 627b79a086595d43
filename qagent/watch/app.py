"""What ``qagent watch`` runs: load the policies, start the show and the server, stop on a signal."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qagent.config import EnvConfig
from qagent.errors import CheckpointError, ConfigError
from qagent.serve.signals import shutdown_on_signals
from qagent.watch.player import Player
from qagent.watch.server import Show, WatchServer


def load_policy(target: str, folder: Path) -> Any:
    """A :class:`qagent.serve.Policy` for an ONNX file, an MLflow model URI, a run directory or a checkpoint.

    Runs and checkpoints are exported to ``folder`` first (checked against torch, as ``qagent export``
    does), so the page shows what a shipped file would do.
    """
    from qagent.export import export_checkpoint, fetch_from_mlflow, is_model_uri
    from qagent.serve import Policy, PolicyLoadError

    try:
        if target.endswith(".onnx"):
            return Policy.load(target)
        index = len(list(folder.iterdir()))
        if is_model_uri(target):
            path, _ = fetch_from_mlflow(target, folder / f"policy-{index}.onnx")
            return Policy.load(path)
        return Policy.load(export_checkpoint(target, folder / f"policy-{index}.onnx").path)
    except PolicyLoadError as exc:
        raise CheckpointError(str(exc)) from None


def load_policy_plugins(target: str) -> list[str] | None:
    """The plugins a policy file or checkpoint recorded (loaded before it is; nothing of it runs)."""
    from qagent.export import is_model_uri

    if is_model_uri(target):
        return None
    if target.endswith(".onnx"):
        from qagent.serve import Policy, PolicyLoadError

        try:
            return Policy.load(target).metadata.get("plugins")
        except PolicyLoadError as exc:
            raise CheckpointError(str(exc)) from None
    from qagent.training.checkpoint import load_run_checkpoint

    return load_run_checkpoint(target)[2].get("plugins")


def env_config_of(policy: Any, env_id: str | None) -> EnvConfig:
    """The env the policy was trained on (from its metadata), or ``env_id`` with the same settings."""
    settings = dict(policy.metadata["env"])
    if env_id is not None:
        settings["id"] = env_id
    return EnvConfig(**settings)


def label_of(target: str, policy: Any) -> str:
    meta = policy.metadata
    return f"{Path(target.rstrip('/')).name} · {meta['agent']} · {meta['training']['steps']:,} steps"


def watch(
    targets: list[str],
    *,
    env_id: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8008,
    seed: int = 0,
    fps: float = 15.0,
    epsilon: float = 0.0,
    paused: bool = False,
    announce: Callable[[str], None] = print,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the watch page for ``targets`` (one policy, or two side by side) until SIGINT or SIGTERM."""
    with tempfile.TemporaryDirectory(prefix="qagent-watch-") as tmp:
        policies = [load_policy(target, Path(tmp)) for target in targets]
        players = []
        try:
            for target, policy in zip(targets, policies, strict=True):
                players.append(Player(policy, env_config_of(policy, env_id), label_of(target, policy)))
            check_same_actions(players)
        except BaseException:
            for player in players:
                player.close()
            raise
        show = Show(players, seed=seed, fps=fps, epsilon=epsilon)
        show.paused = paused
        try:
            server = WatchServer(show, (host, port))
        except OSError as exc:
            for player in players:
                player.close()
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ConfigError(
                f"cannot listen on {host}:{port}: {reason}", hint="pick another --port (0: any free port)"
            ) from None
        with shutdown_on_signals(server.shutdown):
            show.start()
            announce(f"watching {' and '.join(p.label for p in players)} at {server.url}; Ctrl-C or SIGTERM stops")
            if ready is not None:
                ready(server.url)
            try:
                server.serve_forever(poll_interval=0.1)
            finally:
                show.stop()
                server.server_close()


def check_same_actions(players: list[Player]) -> None:
    """Two policies side by side must play the same game."""
    if len(players) == 2 and players[0].env_id != players[1].env_id:
        raise ConfigError(
            f"the two policies play different envs ({players[0].env_id} and {players[1].env_id})",
            hint="compare policies of one env, or pass --env",
        )
