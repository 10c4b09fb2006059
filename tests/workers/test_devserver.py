"""``reprise dev`` as a new user meets it: one stack per data directory, ports checked
before anything starts, a worker that cannot load its tasks named at once, and the CLI
finding the stack it runs beside. Real ``reprise dev`` processes on embedded servers."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest

from tests.support.fixtures import wait_for
from tests.support.live_server import free_port

pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    """A user's environment: no store URLs (embedded servers), nothing of the suite's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPRISE_")}
    return {**env, **extra}


def _cli(cwd: Path, *argv: str, env: dict[str, str] | None = None,
         timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reprise.cli", *argv], cwd=cwd, env=env or _env(),
        capture_output=True, text=True, timeout=timeout, check=False,
    )


@contextmanager
def dev_stack(cwd: Path, port: int, **env: str) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    log = cwd / "dev.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "reprise.cli", "dev", "--port", str(port),
             "--flower-port", str(free_port())],
            cwd=cwd, env=_env(**env), stdout=out, stderr=subprocess.STDOUT, text=True,
        )
    try:
        yield process, log
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def _ready(process: subprocess.Popen[str], log: Path) -> bool:
    assert process.poll() is None, log.read_text()
    return "Reprise is ready" in log.read_text()


def test_one_stack_per_data_dir_and_the_cli_finds_it(tmp_path: Path) -> None:
    port = free_port()
    with dev_stack(tmp_path, port) as (first, log):
        wait_for(lambda: _ready(first, log), timeout=120, interval=0.2, what="the dev stack")
        state_file = tmp_path / ".reprise" / "dev.json"
        assert stat.S_IMODE(state_file.stat().st_mode) == 0o600  # it holds the dev key
        state = json.loads(state_file.read_text())
        assert state["api"] == f"http://127.0.0.1:{port}"
        # The dashboard's header links to the Flower this stack started.
        found = re.search(r"Dashboard:\s+(\S+)", log.read_text())
        assert found is not None
        with httpx.Client(timeout=10) as client:
            shown = client.get(found.group(1))
            token = re.search(r'name="csrf_token" value="([^"]+)"', shown.text)
            assert token is not None, shown.text
            page = client.post(found.group(1), data={"csrf_token": token.group(1)},
                               follow_redirects=True)
        assert f'href="{state["flower"]}"' in page.text, page.text[:2000]

        began = time.monotonic()
        second = _cli(tmp_path, "dev", "--port", str(free_port()), timeout=30)
        assert second.returncode == 1
        assert time.monotonic() - began < 10
        assert f"already running on {tmp_path / '.reprise'} (pid {first.pid}" in second.stderr
        assert first.poll() is None  # the first stack is untouched

        # The CLI, in this directory, uses the stack's URL and key without being told.
        triggered = _cli(tmp_path, "trigger", "hello-world", "--payload", '{"name": "Ada"}')
        assert triggered.returncode == 0, triggered.stderr
        assert "run_" in triggered.stdout
        keys = _cli(tmp_path, "keys", "list")
        assert keys.returncode == 0, keys.stderr
        assert keys.stdout.splitlines()[0].split()[:3] == ["ID", "PROJECT", "REF"]


def test_an_api_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = _cli(tmp_path, "dev", "--port", str(port), timeout=30)
    assert done.returncode == 1
    assert f"port {port} is in use by another program; pick another with --port" in done.stderr
    assert not (tmp_path / ".reprise" / "postgres").exists()  # nothing was started


def test_a_stack_stopped_after_serving_requests_restarts_on_its_port_within_a_second(
    tmp_path: Path,
) -> None:
    """Stopping the stack while a client holds a keep-alive connection, after requests,
    leaves the api's port with TIME_WAIT sockets only; the next start takes the port."""
    port = free_port()
    with dev_stack(tmp_path, port) as (first, log):
        wait_for(lambda: _ready(first, log), timeout=120, interval=0.2, what="the dev stack")
        client = httpx.Client(timeout=10)
        try:
            for _ in range(5):
                assert client.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
            first.terminate()  # the api closes the idle connection: its side in TIME_WAIT
            assert first.wait(40) == 0, log.read_text()
        finally:
            client.close()
    stopped = time.monotonic()
    # The ready block comes before any of the children's lines (their start-up chatter is
    # kept back): only reprise dev's own few lines may precede it.
    before = log.read_text().split("Reprise is ready")[0]
    assert not re.search(r"^(api|worker|control|beat|flower) *\| ", before, re.MULTILINE), before
    assert len(before.splitlines()) < 10, before
    with dev_stack(tmp_path, port) as (second, log):
        assert time.monotonic() - stopped < 1
        wait_for(lambda: _ready(second, log), timeout=120, interval=0.2,
                 what="the dev stack started again")
        with httpx.Client(timeout=10) as client:
            assert client.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    assert "in use by another program" not in log.read_text()


def test_a_worker_that_cannot_import_its_tasks_stops_the_stack_naming_it(tmp_path: Path) -> None:
    with dev_stack(tmp_path, free_port(), REPRISE_TASK_MODULES="no_such_tasks") as (dev, log):
        code = dev.wait(120)
    output = log.read_text()
    assert code == 1, output
    assert "cannot import REPRISE_TASK_MODULES='no_such_tasks': ModuleNotFoundError" in output
    assert "reprise dev: the worker process exited with code 2" in output
    assert "Reprise is ready" not in output


TASKS = '''\
import asyncio

from reprise import TaskContext, task


@task(id="greet", max_attempts=2)
def greet(payload: dict, ctx: TaskContext) -> dict:
    return {"hello": payload["name"], "attempt": ctx.attempt.number}


@task(id="greet-async")
async def greet_async(payload: dict, ctx: TaskContext) -> dict:
    await asyncio.sleep(0.01)
    return {"hello": payload["name"], "async": True}
'''


def test_the_readme_walkthrough_runs_your_own_sync_and_async_tasks(tmp_path: Path) -> None:
    """README "Your own tasks": a package beside where `reprise dev` runs, named in
    REPRISE_TASK_MODULES, is imported by the worker from the current directory."""
    package = tmp_path / "myapp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tasks.py").write_text(TASKS)
    with dev_stack(tmp_path, free_port(), REPRISE_TASK_MODULES="myapp.tasks") as (dev, log):
        wait_for(lambda: _ready(dev, log), timeout=120, interval=0.2, what="the dev stack")
        outputs = {}
        for task_id in ("greet", "greet-async"):
            triggered = _cli(tmp_path, "trigger", task_id, "--payload", '{"name": "Ada"}')
            assert triggered.returncode == 0, triggered.stderr
            run_id = triggered.stdout.strip()

            def finished(run_id: str = run_id) -> dict[str, object] | None:
                shown = json.loads(_cli(tmp_path, "runs", "get", run_id, "--json").stdout)
                return shown if shown["status"] == "COMPLETED" else None

            outputs[task_id] = wait_for(finished, timeout=30, interval=0.2)["output"]
        # The banner's one-time dashboard link signs in once, from its page's button.
        link = re.search(r"Dashboard:\s+(\S+)", log.read_text())
        assert link is not None, log.read_text()
        first, again = _use_sign_in_link(link.group(1)), _use_sign_in_link(link.group(1))
    assert outputs == {
        "greet": {"hello": "Ada", "attempt": 1},
        "greet-async": {"hello": "Ada", "async": True},
    }
    assert first.status_code == 303
    assert "reprise_session=" in first.headers["set-cookie"]
    assert again.status_code == 404


def _use_sign_in_link(url: str) -> httpx.Response:
    """Open the link (which only shows its button) and press the button."""
    with httpx.Client(follow_redirects=False) as client:
        shown = client.get(url)
        assert shown.status_code == 200, shown.text
        assert "reprise_session=" not in shown.headers.get("set-cookie", "")
        token = re.search(r'name="csrf_token" value="([^"]+)"', shown.text)
        assert token is not None, shown.text
        return client.post(url, data={"csrf_token": token.group(1)})


def _stack_processes(marker: str, root: Path) -> list[str]:
    """Live processes (not zombies) of the stack: `reprise dev` and its children carry
    ``marker`` in their environment; the embedded servers, which rewrite theirs with their
    process titles, work in ``root``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            if (marker.encode() not in (entry / "environ").read_bytes()
                    and not os.readlink(entry / "cwd").startswith(str(root))):
                continue
            found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, IndexError):
            continue
    return found


def _catches_sigterm(pid: int) -> bool:
    """`reprise dev` has begun: it catches SIGTERM (Python alone catches only SIGINT).
    Not the forked child before its exec, which shows the test process's handlers."""
    if b"reprise\0dev" not in Path(f"/proc/{pid}/cmdline").read_bytes():
        return False
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (15 - 1)))
    return False


def _foreground_dev(root: Path, marker: str) -> tuple[subprocess.Popen[bytes], Path]:
    """The `reprise` command as the user (and scripts/dev) runs it, in its own process
    group as a shell gives a foreground job (Ctrl-C is SIGINT to the whole group)."""
    log = root / "dev.log"
    with log.open("w") as out:
        dev = subprocess.Popen(
            [str(Path(sys.executable).parent / "reprise"), "dev", "--port", str(free_port()),
             "--flower-port", str(free_port())],
            cwd=root, env=_env(REPRISE_STACK_MARKER=marker), stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    return dev, log


def _kill_leftovers(dev: subprocess.Popen[bytes], marker: str, root: Path) -> None:
    """Whatever a failed test leaves must not outlive it (nor load the machine)."""
    if dev.poll() is None:
        os.killpg(dev.pid, 9)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):
                if (marker.encode() in (entry / "environ").read_bytes()
                        or os.readlink(entry / "cwd").startswith(str(root))):
                    os.kill(int(entry.name), 9)


PHASES: dict[str, Callable[[int, list[str]], bool] | None] = {
    # Each phase is reached (not slept until) before Ctrl-C is sent.
    "first moment": lambda pid, procs: _catches_sigterm(pid),
    "servers starting": lambda pid, procs: any("redis-server" in p for p in procs),
    "children starting": lambda pid, procs: any("reprise.cli api" in p for p in procs),
    "ready": None,
}


@pytest.mark.parametrize("phase", list(PHASES))
def test_ctrl_c_at_any_moment_stops_everything_and_says_so_in_one_line(
    tmp_path: Path, phase: str
) -> None:
    import secrets
    import signal

    marker = f"reprise-ctrl-c-{secrets.token_hex(6)}"
    dev, log = _foreground_dev(tmp_path, marker)
    try:
        reached = PHASES[phase]
        if reached is None:
            wait_for(lambda: "Reprise is ready" in log.read_text(), timeout=120, interval=0.1,
                     what="the dev stack")
        else:
            wait_for(lambda: reached(dev.pid, _stack_processes(marker, tmp_path)), timeout=60, interval=0.01,
                     what=phase)
        before = log.read_text()
        os.killpg(dev.pid, signal.SIGINT)
        code = dev.wait(40)
    finally:
        _kill_leftovers(dev, marker, tmp_path)
    output = log.read_text()
    assert code == 0, output
    assert _stack_processes(marker, tmp_path) == [], output
    assert "Traceback" not in output, output
    assert output.splitlines()[-1].startswith("reprise dev: stopped"), output
    if phase == "ready":  # an idle stack says one line, and nothing else, when stopped
        assert output[len(before):].splitlines() == [output.splitlines()[-1]], output


def test_children_follow_reprise_dev_killed_hard_and_the_next_start_cleans_up(
    tmp_path: Path,
) -> None:
    """kill -9 of `reprise dev` cannot run its cleanup: its children (api, worker, control,
    beat, Flower) still stop, and the next `reprise dev` stops the embedded servers left
    behind before starting its own."""
    import secrets
    import signal

    marker = f"reprise-kill-9-{secrets.token_hex(6)}"
    dev, log = _foreground_dev(tmp_path, marker)
    try:
        wait_for(lambda: "Reprise is ready" in log.read_text(), timeout=120, interval=0.1,
                 what="the dev stack")
        dev.send_signal(signal.SIGKILL)
        dev.wait(10)
        try:
            wait_for(lambda: not any("reprise.cli" in p
                                     for p in _stack_processes(marker, tmp_path)),
                     timeout=30, interval=0.1, what="the children to follow reprise dev")
        except AssertionError:
            left = [p for p in _stack_processes(marker, tmp_path) if "reprise.cli" in p]
            raise AssertionError(f"still running 30 s after the kill: {left}\n"
                                 f"{log.read_text()[-3000:]}") from None
        again, log = _foreground_dev(tmp_path, marker)
        wait_for(lambda: "Reprise is ready" in log.read_text(), timeout=120, interval=0.1,
                 what="the second start")
        os.killpg(again.pid, signal.SIGINT)
        assert again.wait(40) == 0, log.read_text()
        assert _stack_processes(marker, tmp_path) == [], log.read_text()
    finally:
        _kill_leftovers(dev, marker, tmp_path)
