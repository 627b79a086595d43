"""Files and values a user (or someone sending them files) can get wrong: one clear line, no traceback."""

from __future__ import annotations

import os
import sys
import time

import pytest
import torch
from conftest import TINY, one_error_line, run_qagent

from qagent.plugins import discovery

BILLION_LAUGHS = "\n".join(
    [
        "env:",
        "  id: CartPole-v1",
        "  kwargs:",
        '    a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
    ]
    + [f"    {c}: &{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)]
)


@pytest.fixture(scope="module")
def done_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    result = run_qagent("train", *TINY, "--total-steps", "600", "--no-track", "--run-name", "done", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder


def altered_checkpoint(folder, name: str, **changes) -> str:
    data = torch.load(folder / "runs/done/checkpoints/step-0000000600.pt", weights_only=True)
    data.update(changes)
    torch.save(data, folder / name)
    return name


def laughs() -> list:
    tree: list = ["lol"] * 9
    for _ in range(8):
        tree = [tree] * 9  # shared references: a small pickle, 9**9 values when copied out
    return tree


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (
            lambda f: (f / "latin1.yaml").write_bytes(b"env:\n  id: Cart\xe9Pole-v1\n"),
            ("train", "-c", "latin1.yaml", "--no-track"),
            "is not UTF-8 text (byte 0xe9",
        ),
        (
            lambda f: (f / "laughs.yaml").write_text(BILLION_LAUGHS),
            ("train", "-c", "laughs.yaml", "--no-track"),
            "expands to more than 100,000 values",
        ),
        (
            lambda f: altered_checkpoint(f, "laughs.pt", config={"env": {"id": "CartPole-v1", "kwargs": laughs()}}),
            ("eval", "laughs.pt"),
            "the config in checkpoint laughs.pt expands to more than 100,000 values",
        ),
        (
            lambda f: altered_checkpoint(f, "listconfig.pt", config=["env", "agent"]),
            ("eval", "listconfig.pt"),
            "its 'config' is a list, not a dict",
        ),
        (
            lambda f: altered_checkpoint(f, "nostep.pt", step="600"),
            ("export", "nostep.pt"),
            "its 'step' is a str, not a int",
        ),
        (
            lambda f: altered_checkpoint(f, "nobuffer.pt", buffer_file="../../etc/passwd"),
            ("train", "--resume", "nobuffer.pt"),
            "cannot resume from nobuffer.pt",
        ),
        (
            lambda f: None,
            ("train", "--set", "replay.capacity=1e12", "--no-track"),
            "needs 33,527.6 GiB of memory, more than this machine has",
        ),
        (lambda f: (f / "afile").write_text("x"), ("train", "--runs-dir", "afile", "--no-track"), "is a file"),
        (lambda f: (f / "runs/done.txt").write_text("x"), ("eval", "runs/done.txt"), "not a qagent checkpoint"),
    ],
)
def test_bad_files_and_values_are_one_line(done_run, make, args, message):
    make(done_run)
    assert message in one_error_line(run_qagent(*args, cwd=done_run))


def test_a_checkpoint_naming_a_foreign_buffer_file_is_refused(done_run):
    run = done_run / "runs/done"
    data = torch.load(run / "checkpoints/step-0000000600.pt", weights_only=True)
    data["buffer_file"] = "../../config.yaml"
    torch.save(data, run / "checkpoints/step-0000000601.pt")
    try:
        result = run_qagent("train", "--resume", "runs/done", "--set", "train.total_steps=700", cwd=done_run)
        assert "names a replay buffer file '../../config.yaml', not a buffer-STEP.npz" in one_error_line(result)
    finally:
        (run / "checkpoints/step-0000000601.pt").unlink()


@pytest.mark.parametrize("kind", ["symlink", "device"])  # a folder: click refuses it
def test_export_refuses_to_replace_anything_but_a_file(done_run, kind):
    target = done_run / f"out-{kind}.onnx"
    if kind == "symlink":
        (done_run / "precious.txt").write_text("keep me")
        target.symlink_to(done_run / "precious.txt")
        output, expected = str(target), "is a symbolic link"
    else:
        output, expected = os.devnull, "not a regular file"
    assert expected in one_error_line(run_qagent("export", "runs/done", "-o", output, cwd=done_run))
    if kind == "symlink":
        assert target.is_symlink() and (done_run / "precious.txt").read_text() == "keep me"


def test_a_slow_plugin_import_says_which_plugin_is_importing(tmp_path, monkeypatch, capfd):
    plugin = tmp_path / "slow_plugin.py"
    plugin.write_text("import time\ntime.sleep(0.6)\n")
    monkeypatch.setattr(discovery, "SLOW_IMPORT_SECONDS", 0.2)
    started = time.monotonic()
    [result] = [r for r in discovery.load_plugins([str(plugin)], ambient=False) if r.spec == str(plugin)]
    assert result.ok and time.monotonic() - started >= 0.6
    err = capfd.readouterr().err
    assert f"still importing plugin {plugin} (--plugin)" in err
    sys.modules.pop(next(name for name in sys.modules if name.startswith("qagent_plugin_slow_plugin")), None)
