"""`make run`'s script, run as a newcomer would (issue 15): it says "up" only when every process
answers, the order it prints succeeds, Ctrl-C stops everything, and a taken port fails fast
with a one-line error naming the port and the variable that changes it.

It opens with the dashboard's link and the demo login, and the demo account has a seeded
(demo-labelled) day of equity history (issue 16).

It runs the embedded default (SQLite, filesystem broker, the simulator and its streams) in a
temporary directory, on free ports, whatever services the suite itself uses.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
UP_LINE = "Execution service is up"


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def demo_env(tmp_path: Path, web: int, sim: int, sim_ws: int) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "REQUIRE_SERVICES", "DJANGO_SETTINGS_MODULE", "ASTER_BASE_URL"}
        and not k.startswith(("ASTER_", "PYTEST", "PROMETHEUS"))
    }
    env.update(
        DEBUG="1",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        VAR_DIR=str(tmp_path / "var"),
        PORT=str(web),
        SIM_PORT=str(sim),
        SIM_WS_PORT=str(sim_ws),
        UP_TIMEOUT="120",
    )
    return env


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server binds (TIME_WAIT is no owner)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_make_run_says_up_when_up_the_printed_order_fills_and_ctrl_c_stops_everything(tmp_path):
    web, sim, sim_ws = free_ports(3)
    env = demo_env(tmp_path, web, sim, sim_ws)
    demo = subprocess.Popen(
        ["scripts/run-demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    try:
        deadline = time.monotonic() + 150
        assert demo.stdout is not None
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line:
                break
            output.append(line)
            if "Press Ctrl-C to stop." in line:
                break
        text = "".join(output)
        assert UP_LINE in text, text
        # "Up" is true: the readiness endpoint answers 200 now.
        ready = subprocess.run(["curl", "-fsS", f"http://127.0.0.1:{web}/readyz"], capture_output=True, text=True)
        assert ready.returncode == 0, ready.stdout + ready.stderr

        # It opens with the dashboard link and the demo login; the demo account has a day of
        # equity history, labelled as demo data (issue 16).
        first = text.strip().splitlines()[0]
        assert f"http://127.0.0.1:{web}/dashboard/" in first and "demo / demo-password" in first, text
        page = requests.get(f"http://127.0.0.1:{web}/dashboard/", allow_redirects=False, timeout=10)
        assert page.status_code == 302 and page.headers["Location"].startswith("/dashboard/login/")
        token = re.search(r"^api token: (\w+)$", text, re.M).group(1)
        account = re.search(r"^paper account id: (\d+)$", text, re.M).group(1)
        auth = {"Authorization": f"Token {token}"}
        equity = requests.get(
            f"http://127.0.0.1:{web}/api/accounts/{account}/equity/?interval=1h", headers=auth, timeout=10
        ).json()
        assert len(equity["results"]) >= 24, equity
        seeded = requests.get(
            f"http://127.0.0.1:{web}/api/events/?account={account}&kind=demo.equity_seeded", headers=auth, timeout=10
        ).json()
        assert len(seeded["results"]) == 1 and "simulated" in seeded["results"][0]["message"]

        # As printed, it reaches this run's simulator (not the default port's).
        order_command = re.search(rf"^\s+(SIM_PORT={sim} scripts/demo-order \d+)\s*$", text, re.M)
        assert order_command, text
        without_port = {k: v for k, v in env.items() if k != "SIM_PORT"}
        placed = subprocess.run(
            ["bash", "-c", order_command.group(1)],
            cwd=ROOT,
            env=without_port,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert placed.returncode == 0, placed.stdout + placed.stderr
        assert "[filled]" in placed.stdout and "stop_loss: trigger" in placed.stdout
    finally:
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C
        try:
            demo.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            pytest.fail("make run did not stop within 30 s of Ctrl-C")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and group_alive(demo.pid):
        time.sleep(0.5)
    assert not group_alive(demo.pid), "a process outlived Ctrl-C"
    assert all(port_is_free(p) for p in (web, sim, sim_ws))


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_taken_port_fails_at_once_naming_the_port_and_its_variable(tmp_path):
    web, sim, sim_ws = free_ports(3)
    # A running service's metrics files (its web process sums them): a refused run leaves them be.
    metrics = tmp_path / "var" / "prometheus"
    metrics.mkdir(parents=True)
    (metrics / "counter_123.db").write_bytes(b"running service")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", web))
        taken.listen()
        started = time.monotonic()
        result = subprocess.run(
            ["scripts/run-demo"],
            cwd=ROOT,
            env=demo_env(tmp_path, web, sim, sim_ws),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0
    assert time.monotonic() - started < 20
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {web}" in lines[0] and "PORT=" in lines[0]
    assert (metrics / "counter_123.db").read_bytes() == b"running service"
