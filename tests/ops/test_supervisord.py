"""Production runs the Procfile's types under supervisord: a process that dies is started
again and the others go on (honcho stops them all). `contactrouter supervisor-config` writes
the configuration from the Procfile and a formation; systemd's unit template does the same
one process at a time."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
import uuid
from functools import partial
from pathlib import Path

import pytest
import redis
from twilio.request_validator import RequestValidator

from ops import supervisord
from ops.redis_server import free_port
from router.app import cli
from router.errors import ConfigError
from router.keys import ROUTING_GROUP, Keys
from tests.processes import CLI, wait_for

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(CLI).parent
UNIT = ROOT / "ops" / "systemd" / "contactrouter@.service"


def test_the_formation_names_how_many_of_each_type_and_the_rest_run_once():
    types = supervisord.parse_procfile((ROOT / "Procfile").read_text())
    assert list(types) == ["web", "smtp", "imap", "routing", "dispatch", "campaigns", "timers", "telegram", "archive"]
    formation = supervisord.parse_formation("web=2, routing=3,telegram=0", list(types))
    assert formation == {
        "web": 2, "smtp": 1, "imap": 1, "routing": 3, "dispatch": 1, "campaigns": 1, "timers": 1, "telegram": 0,
        "archive": 1,
    }  # fmt: skip
    with pytest.raises(ConfigError, match="no process type 'routers'"):
        supervisord.parse_formation("routers=3", list(types))
    with pytest.raises(ConfigError, match="'routing=many' is not TYPE=COUNT"):
        supervisord.parse_formation("routing=many", list(types))


def test_each_process_is_a_program_restarted_whatever_its_exit_and_webs_share_their_port():
    types = {name: f"contactrouter run {name} --json-logs" for name in ("web", "routing", "timers", "telegram")}
    conf = supervisord.render(types, {"web": 2, "routing": 2, "timers": 1, "telegram": 0}, directory="/srv/cr")
    programs = {
        name: dict(line.split("=", 1) for line in body.splitlines())
        for name, body in re.findall(r"\[program:([\w-]+)\]\n(.*?)\n\n", conf + "\n", re.S)
    }
    assert list(programs) == ["web-0", "web-1", "routing-0", "routing-1", "timers-0"], "telegram=0 is left out"
    assert "programs=web-0,web-1,routing-0,routing-1,timers-0" in conf
    web = programs["web-1"]
    assert web["command"] == f"{BIN / 'contactrouter'} run web --json-logs", "found now, not on supervisord's PATH"
    assert (web["autorestart"], web["stopsignal"], web["directory"]) == ("true", "TERM", "/srv/cr")
    assert web["environment"] == 'WEB_REUSE_PORT="true"'
    assert "environment" not in programs["routing-0"]
    assert "[supervisord]" in conf
    assert "[supervisord]" not in supervisord.render(types, {"web": 1}, directory="/srv", programs_only=True)


def test_with_a_metrics_port_each_process_serves_its_metrics_on_a_port_of_its_own():
    types = {name: f"contactrouter run {name}" for name in ("web", "routing", "timers")}
    conf = supervisord.render(types, {"web": 2, "routing": 2, "timers": 1}, directory="/srv", metrics_port=9100)
    assert re.findall(r"\[program:([\w-]+)\][^[]*?environment=(.*)", conf) == [
        # the web processes share PORT, so a scrape there reaches either: each has its own port too
        ("web-0", 'WEB_REUSE_PORT="true",METRICS_PORT="9100"'),
        ("web-1", 'WEB_REUSE_PORT="true",METRICS_PORT="9101"'),
        ("routing-0", 'METRICS_PORT="9102"'),
        ("routing-1", 'METRICS_PORT="9103"'),
        ("timers-0", 'METRICS_PORT="9104"'),
    ]


def test_the_scrape_targets_name_every_process_and_its_metrics_port(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Procfile").write_text("web: contactrouter run web\nrouting: contactrouter run routing\n")
    targets = tmp_path / "targets.json"
    args = ["supervisor-config", "--formation", "routing=2", "--metrics-port", "9100", "--scrape-targets", str(targets)]
    assert cli.main(args) == 0
    conf = capsys.readouterr().out
    listed = json.loads(targets.read_text())
    assert [(t["labels"]["process"], t["targets"]) for t in listed] == [
        ("web-0", ["127.0.0.1:9100"]),
        ("routing-0", ["127.0.0.1:9101"]),
        ("routing-1", ["127.0.0.1:9102"]),
    ]
    for target in listed:  # the ports the configuration gives the processes
        section = conf.split(f"[program:{target['labels']['process']}]")[1].split("[program:")[0]
        assert f'METRICS_PORT="{target["targets"][0].rpartition(":")[2]}"' in section
    assert cli.main(["supervisor-config", "--scrape-targets", str(targets)]) == 2  # no ports to list


def test_an_installation_without_a_procfile_runs_every_role(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["supervisor-config", "--formation", "routing=2"]) == 0
    conf = capsys.readouterr().out
    assert re.findall(r"\[program:([\w-]+)\]", conf) == [
        f"{role}-{n}" for role in cli.ROLE_NAMES for n in range(2 if role == "routing" else 1)
    ]
    assert f"command={BIN / 'contactrouter'} run routing --json-logs\n" in conf
    assert cli.main(["supervisor-config", "--procfile", "Procfile.missing"]) == 2
    assert "no Procfile at Procfile.missing" in capsys.readouterr().err


@pytest.mark.parametrize(("instance", "role"), [("routing-2", "routing"), ("web-1", "web"), ("timers", "timers")])
def test_the_systemd_template_runs_the_role_its_instance_names(instance, role):
    [exec_start] = [line.split("=", 1)[1] for line in UNIT.read_text().splitlines() if line.startswith("ExecStart=")]
    # As systemd does: specifiers first (%i, and %% for a literal %), then $$ for a literal $.
    command = re.sub(r"%(.)", lambda m: {"i": instance, "%": "%"}[m.group(1)], exec_start).replace("$$", "$")
    argv = [word.replace("/srv/contactrouter/.venv/bin/contactrouter", "echo") for word in shlex.split(command)]
    assert subprocess.run(argv, capture_output=True, text=True, check=True).stdout == f"run {role} --json-logs\n"


# --- a real supervisord ------------------------------------------------------------------

TOKEN = "sandbox-token"
ACME_NUMBER = "+15550100001"  # acme's SMS number in the demo deployment


class Supervised:
    """supervisord running the formation; its processes by name (contactrouter:routing-0)."""

    def __init__(self, conf: Path, env: dict[str, str]) -> None:
        self.conf, self.env = conf, env
        self.process = subprocess.Popen(
            [str(BIN / "supervisord"), "-c", str(conf)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )

    def status(self) -> dict[str, tuple[str, int]]:
        """name -> (state, pid) of every process."""
        out = subprocess.run(
            [str(BIN / "supervisorctl"), "-c", str(self.conf), "status"], capture_output=True, text=True
        ).stdout
        found = {}
        for line in out.splitlines():
            words = line.split()
            if len(words) >= 2:
                pid = re.search(r"pid (\d+)", line)
                found[words[0]] = (words[1], int(pid.group(1)) if pid else 0)
        return found

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)  # supervisord stops its processes, then exits
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


WEBHOOKS_ANSWERED = r'contactrouter_http_requests_total\{code="200",method="POST",route="/twilio/sms"\} (\S+)'


def free_ports(count: int) -> int:
    """The first of `count` consecutive free loopback ports."""
    for _ in range(50):
        first = free_port()
        sockets = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise AssertionError(f"no {count} consecutive free ports")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def post_sms(port: int, body: str) -> int:
    """A signed Twilio webhook on a new connection (a dead web process's kept-alive one is gone)."""
    url = f"http://127.0.0.1:{port}/twilio/sms"
    sid = f"SM{uuid.uuid4().hex}"
    params = {"MessageSid": sid, "AccountSid": "AC" + "0" * 32, "From": "+15551230000", "To": ACME_NUMBER,
              "Body": body}  # fmt: skip
    request = urllib.request.Request(
        url,
        data=urllib.parse.urlencode(params).encode(),
        headers={"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, params)},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0  # nothing listening yet


@pytest.mark.e2e
def test_a_killed_worker_and_a_killed_web_process_are_restarted_while_webhooks_are_answered(redis_url, tmp_path):
    port = free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    targets = tmp_path / "targets.json"
    generated = subprocess.run(
        [CLI, "supervisor-config", "--formation", "web=2,routing=2,smtp=0,imap=0,campaigns=0,telegram=0,archive=0",
         "--log-dir", str(logs), "--metrics-port", str(free_ports(6)), "--scrape-targets", str(targets)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    conf = tmp_path / "supervisord.conf"
    conf.write_text(generated.stdout)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTACTROUTER_", "REDIS_"))}
    env.update(REDIS_URL=redis_url, HOST="127.0.0.1", PORT=str(port), TWILIO_SANDBOX_TOKEN=TOKEN,
               ATTACHMENT_DIR=str(tmp_path / "attachments"),
               CONTACTROUTER_CLAIM_IDLE_MS="1000")  # fmt: skip  # what the dead worker held is taken over soon
    supervised = Supervised(conf, env)

    def listening(web: str) -> int:
        """How many times the web process started listening (it logs each start)."""
        log = logs / f"{web}.log"
        return log.read_text().count('"web listening on') if log.exists() else 0

    def diagnosis(answer: int) -> str:
        tails = {log.name: log.read_text()[-1500:] for log in sorted(logs.glob("web-*.log"))}
        return f"answered {answer}; {supervised.status()}; " + "; ".join(f"{k}: {v}" for k, v in tails.items())

    posted = 0
    try:
        # Started is not yet listening (supervisord's RUNNING): each web process says when it is.
        wait_for(lambda: listening("web-0") and listening("web-1"), "both web processes listening", timeout=120)
        processes = wait_for(
            lambda: (s := supervised.status()) and all(state == "RUNNING" for state, _ in s.values()) and s,
            "every process running",
            timeout=120,
        )
        assert post_sms(port, "before") == 200
        posted += 1
        formed = ("dispatch-0", "routing-0", "routing-1", "timers-0", "web-0", "web-1")
        assert sorted(processes) == [f"contactrouter:{name}" for name in formed]
        killed = ["contactrouter:routing-0", "contactrouter:web-0"]
        for name in killed:
            os.kill(processes[name][1], signal.SIGKILL)
        # A connection that reaches web-0 while it dies is lost with it, as with any crash:
        # the webhooks below start once it is gone.
        wait_for(lambda: not any(alive(processes[name][1]) for name in killed), "the killed processes gone")

        def restarted() -> bool:
            nonlocal posted
            answer = post_sms(port, f"during {posted}")
            assert answer == 200, diagnosis(answer)  # the other web process answers meanwhile
            posted += 1
            now = supervised.status()
            again = all(now[name][0] == "RUNNING" and now[name][1] != processes[name][1] for name in killed)
            return again and listening("web-0") == 2

        wait_for(restarted, "the killed processes started again", timeout=120)
        left_alone = {name: pid for name, (_state, pid) in processes.items() if name not in killed}
        assert {name: supervised.status()[name][1] for name in left_alone} == left_alone

        client = redis.Redis.from_url(redis_url)
        try:
            stream = Keys("acme").inbound
            assert client.xlen(stream) == posted
            routed = wait_for(
                lambda: [g for g in client.xinfo_groups(stream) if g["name"] == ROUTING_GROUP.encode()
                         and g["pending"] == 0 and g["lag"] == 0],
                "every webhook's contact routed",
                timeout=120,
            )  # fmt: skip
            assert routed
        finally:
            client.close()
        # every process serves its own metrics on the port the configuration gave it
        webhooks = 0.0

        def scrape(address: str) -> str:
            """The process's metrics, or "" while its server is not listening yet (a
            restarted process binds its metrics port a moment after supervisord's RUNNING)."""
            try:
                with urllib.request.urlopen(f"http://{address}/metrics", timeout=30) as response:
                    return response.read().decode()
            except OSError:
                return ""

        for target in json.loads(targets.read_text()):
            scraped = wait_for(partial(scrape, target["targets"][0]), f"metrics of {target['labels']}", timeout=60)
            assert "contactrouter_store_up 1.0" in scraped, target
            if target["labels"]["role"] == "web":  # each web process counts the requests it answered
                sms = re.search(WEBHOOKS_ANSWERED, scraped)
                webhooks += float(sms.group(1)) if sms else 0
        assert webhooks >= 1  # web-0's count started again with it
    finally:
        supervised.stop()
