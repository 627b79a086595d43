"""Screenshot of ``qagent watch`` after N steps, taken in headless Chromium (how docs/watch.md's picture is made).

    python examples/watch_screenshot.py runs/<run> --compare runs/<run>/checkpoints/step-100000.pt \\
        --steps 120 --seed 3 -o docs/images/watch.png

Needs Debian's ``chromium`` (or another Chromium on PATH) and the ``playwright`` package (in
``qagent[dev]``); no browser is downloaded.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target")
    parser.add_argument("--compare")
    parser.add_argument("--env")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=60, help="pause after this many steps of the first episode")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("-o", "--output", default="watch.png")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("no chromium on PATH (Debian: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    command = [sys.executable, "-m", "qagent", "watch", args.target, "--port", "0", "--seed", str(args.seed)]
    command += ["--fps", "60"] + (["--compare", args.compare] if args.compare else [])
    command += ["--env", args.env] if args.env else []
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        if " at http://" not in line:
            sys.exit(f"qagent watch did not start: {line}")
        url = line.split(" at ", 1)[1].split(";", 1)[0]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            page.goto(url)
            page.wait_for_function(f"window.qagentWatch.last && window.qagentWatch.last.panes[0].step >= {args.steps}")
            page.click("#pause")
            page.wait_for_function("window.qagentWatch.last.paused === true")
            page.wait_for_timeout(300)  # the last frame drawn
            page.screenshot(path=args.output)
            browser.close()
        print(f"wrote {args.output}")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
