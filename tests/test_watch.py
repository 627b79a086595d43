"""qagent watch: the live page in a real browser (the system's headless Chromium), and the player behind it.

The browser test runs a real ``qagent watch`` on 127.0.0.1 with two policies side by side and
checks what a person would: frames arrive and change, the Q-value chart shows the policy's own
Q-values for the observation on screen, and pause, step, reset and epsilon do what they say.
It saves a screenshot to tests/artifacts/.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from test_hdqn import train_and_export

from qagent.config import EnvConfig
from qagent.serve import Policy
from qagent.watch.player import Player
from qagent.watch.server import ControlError, Show

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@contextlib.contextmanager
def watching(*args: str, cwd: Path):
    """A real ``qagent watch ARGS --port 0``; yields its URL, stops it with SIGTERM (it must exit 0)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "qagent", "watch", *args, "--port", "0"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert " at http://127.0.0.1:" in line, line + process.stderr.read()
        yield line.split(" at ", 1)[1].split(";", 1)[0]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=30) == 0, process.stderr.read()
        finally:
            process.kill()


def control(url: str, command: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}/control", data=json.dumps(command).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_page_in_a_real_browser(exported_cartpole, tmp_path):
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH: install Debian's chromium package (make test does, where apt-get exists)")
    from playwright.sync_api import sync_playwright

    result, report = exported_cartpole
    policy = Policy.load(report.path)
    ARTIFACTS.mkdir(exist_ok=True)
    with (
        watching(str(report.path), "--compare", str(result.run_dir), "--fps", "20", cwd=tmp_path) as url,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url)
        page.wait_for_function("window.qagentWatch.events >= 3", timeout=30_000)

        # frames arrive and change
        first = page.get_attribute("#frame-0", "src")
        page.wait_for_function(f"document.querySelector('#frame-0').src !== {json.dumps(first)}", timeout=10_000)
        assert first.startswith("data:image/png;base64,")
        assert page.locator(".pane").count() == 2  # the second policy, side by side

        # pause: the step counter stands still
        page.click("#pause")
        page.wait_for_function("window.qagentWatch.last.paused === true", timeout=10_000)
        assert page.text_content("#pause") == "Play"
        steps = page.text_content("#steps-0")
        time.sleep(0.5)
        assert page.text_content("#steps-0") == steps

        # single step: exactly one step further (or the first step of the next episode)
        if page.evaluate("window.qagentWatch.last.panes[0].done"):
            page.click("#step")
            page.wait_for_function("window.qagentWatch.last.panes[0].step === 0", timeout=10_000)
        before = int(page.text_content("#steps-0"))
        page.click("#step")
        page.wait_for_function(f"document.querySelector('#steps-0').textContent === '{before + 1}'", timeout=10_000)
        assert page.evaluate("window.qagentWatch.last.paused") is True

        # the Q-value chart is the policy's own for the observation on screen, the chosen action highlighted
        page.evaluate("window.qagentWatch.last.panes[0].done") or None
        shown = page.evaluate("window.qagentWatch.last.panes")
        for i, view in enumerate(shown):
            if view["done"]:
                continue
            chart = [float(v) for v in page.eval_on_selector_all(f"#q-{i} .row", "rows => rows.map(r => r.dataset.q)")]
            expected = policy.q_values(np.asarray(view["obs"], dtype=np.float32))
            np.testing.assert_allclose(chart, expected, rtol=1e-5)
            chosen = page.eval_on_selector_all(f"#q-{i} .row", "rows => rows.map(r => r.classList.contains('chosen'))")
            assert chosen.index(True) == int(np.argmax(expected)) and sum(chosen) == 1
            names = page.eval_on_selector_all(f"#q-{i} .row .name", "els => els.map(e => e.textContent)")
            assert names == policy.metadata["action"]["meanings"] or names == ["0", "1"]
        assert shown[0]["q_values"] == shown[1]["q_values"]  # one policy, exported twice: the same game

        # reset with a seed: a new first episode from that seed
        page.fill("#seed", "7")
        page.click("#reset")
        page.wait_for_function("document.querySelector('#episode-seed-0').textContent === '7'", timeout=10_000)
        assert page.text_content("#steps-0") == "0" and page.text_content("#episode-0") == "1"

        # epsilon and speed reach the server
        page.fill("#epsilon", "0.25")
        page.dispatch_event("#epsilon", "change")
        page.wait_for_function("window.qagentWatch.last.epsilon === 0.25", timeout=10_000)
        page.click("#pause")  # play again
        page.wait_for_function("window.qagentWatch.last.paused === false", timeout=10_000)
        page.wait_for_function("Number(document.querySelector('#steps-0').textContent) >= 3", timeout=10_000)

        screenshot = ARTIFACTS / "watch-cartpole.png"
        page.screenshot(path=str(screenshot))
        assert screenshot.stat().st_size > 10_000
        browser.close()

        # malformed controls get 400 with a message, and the show goes on
        assert control(url, {"command": "speed", "fps": 0}) == (
            400,
            {"error": "fps must be a number in (0, 60], got 0"},
        )
        status, answer = control(url, {"command": "warp"})
        assert status == 400 and "unknown command 'warp'" in answer["error"]
        assert control(url, {"command": "pause"})[0] == 200


def test_player_is_the_evaluation_seed_for_seed(exported_cartpole):
    """The page's episodes are evaluation's: the same seeds give the same returns."""
    from qagent.training.evaluation import evaluate_policy_file

    report = exported_cartpole[1]
    policy = Policy.load(report.path)
    player = Player(policy, EnvConfig(**policy.metadata["env"]), "cartpole")
    try:
        player.reset(3)
        returns = []
        while len(player.episodes_done) < 2:
            view = player.step(0.0)
            assert view["frame"] and view["step"] <= 500
        returns = player.episodes_done
    finally:
        player.close()
    evaluated = evaluate_policy_file(report.path, episodes=2, seed=3)
    assert returns == evaluated.returns


def test_show_controls_are_checked():
    show = Show([], seed=0)
    for request, message in [
        (None, 'send {"command": ...}'),
        ({"command": "reset", "seed": -1}, "seed must be an integer"),
        ({"command": "reset", "seed": 1.5}, "seed must be an integer"),
        ({"command": "epsilon", "epsilon": 2}, "epsilon must be a number in [0, 1]"),
        ({"command": "epsilon", "epsilon": True}, "epsilon must be a number in [0, 1]"),
        ({"command": "speed", "fps": 61}, "fps must be a number in (0, 60]"),
    ]:
        with pytest.raises(ControlError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            show.control(request)
    assert show.control({"command": "step"})["paused"] is True


def test_hierarchy_shows_its_goal_on_the_frame(tmp_path):
    """An h-DQN on DoorKey: the view names the goal, draws the goal's cell and keeps the episode's goal history."""
    args = [
        "--config",
        "minigrid-hdqn",
        "--env",
        "MiniGrid-DoorKey-5x5-v0",
        "--set",
        "agent.controller.learning_starts=100",
        "--set",
        "agent.meta.learning_starts=100",
        "--set",
        "eval.every=null",
        "--set",
        "eval.final_episodes=2",
    ]
    policy = Policy.load(train_and_export(tmp_path, args, 400, "mg"))
    player = Player(policy, EnvConfig(**policy.metadata["env"]), "doorkey")
    try:
        view = player.reset(0)
        goals = policy.metadata["hierarchy"]["goal_space"]["goals"]
        assert view["goal"] in goals and view["goal_history"] == [view["goal"]]
        grid = player.env.unwrapped.grid
        cells = {cell.type: divmod(i, grid.width) for i, cell in reversed(list(enumerate(grid.grid))) if cell}
        row, col = cells[view["goal"] if view["goal"] != "door" else "door"]
        assert view["goal_region"] == (
            row / grid.height,
            (row + 1) / grid.height,
            col / grid.width,
            (col + 1) / grid.width,
        )
        for _ in range(60):
            view = player.step(0.0)
            assert view["goal_history"][-1] == view["goal"] or view["done"]
        assert len(view["q_values"] or [0] * 7) == 7 and view["meanings"][0] == "left"
    finally:
        player.close()


def test_a_busy_port_is_one_error_line(exported_cartpole, tmp_path):
    import socket

    from conftest import run_qagent

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        done = run_qagent("watch", str(exported_cartpole[1].path), "--port", str(port), cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "pick another --port" in done.stderr


def test_two_policies_of_different_games_are_refused():
    from types import SimpleNamespace

    from qagent.errors import ConfigError
    from qagent.watch.app import check_same_actions

    players = [SimpleNamespace(env_id="CartPole-v1"), SimpleNamespace(env_id="Acrobot-v1")]
    with pytest.raises(ConfigError, match=r"play different envs \(CartPole-v1 and Acrobot-v1\)"):
        check_same_actions(players)
    check_same_actions(players[:1] * 2)  # the same game: fine
