"""Train and run the real Rasa stack (Rasa server + action server) from the toolkit venv.

Rasa 3.6 needs Python 3.10 and pins old libraries, so it lives in its own venv (``.venv-rasa``) and
is driven here as subprocesses (stdlib only)::

    with RasaStack("contact_center", ci=True) as rasa:   # trains if needed, starts both servers
        replies = rasa.send("call-1", "where is my parcel", metadata={"tone": "calm"})

Training is cached: the model file name carries a hash of everything that shapes the model (domain,
config, NLU/stories/rules data, Rasa version), so ``train()`` is a no-op until one of them changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from emotune.errors import ConfigError, DialogueError, RasaUnavailableError

__all__ = ["BOTS", "REPO_ROOT", "RasaStack", "free_port", "log_tail", "port_in_use"]

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
# The Korean bots load a tokenizer from bot/components/ (importable: PYTHONPATH is the repo root, _env).
BOTS = ("contact_center", "in_car", "ko_contact_center", "ko_in_car")
_TAIL_LINES = 40


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    """Whether something already listens on loopback ``port`` (checked before a server is started)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option the servers use, so a port in TIME_WAIT after a restart counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def log_tail(path: Path, lines: int = _TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file ('' if it does not exist)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    # Rasa's progress bars use carriage returns; keep only the last state of each line.
    cleaned = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
    return "\n".join(cleaned[-lines:])


def _http_json(url: str, timeout_s: float, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read().decode("utf-8") or "null")


class RasaStack:
    """One bot's Rasa server and action server, on free loopback ports unless given.

    Args:
        bot: ``contact_center`` or ``in_car`` (a project under ``bot/``).
        rasa_port / actions_port: fixed ports, or ``None`` for free ones.
        ci: train with ``config.ci.yml`` (few epochs, for tests) instead of ``config.yml``.
        repo_root: the Emotune checkout (default: the one this file is in).
        rasa_venv: the Rasa venv (default: ``<repo_root>/.venv-rasa``; env ``EMOTUNE_RASA_VENV``).
        startup_timeout_s: how long each server may take to answer after start.
        endpoints_extra: YAML appended to the generated endpoints.yml (tracker store, lock store).
        model: a trained Rasa model (``.tar.gz``) to serve as it is; default: the cached model of
            the project files (``ci`` picks which config), trained if missing.
    """

    def __init__(
        self,
        bot: str = "contact_center",
        rasa_port: int | None = None,
        actions_port: int | None = None,
        ci: bool = False,
        *,
        repo_root: Path | None = None,
        rasa_venv: Path | None = None,
        startup_timeout_s: float = 240.0,
        endpoints_extra: str | None = None,
        model: Path | None = None,
    ) -> None:
        if bot not in BOTS:
            raise ConfigError(f"RasaStack(bot={bot!r})", [f"unknown bot; choose one of: {', '.join(BOTS)}"])
        for name, port in (("rasa_port", rasa_port), ("actions_port", actions_port)):
            if port is not None and not 1 <= port <= 65535:
                raise ConfigError(f"RasaStack({name}={port!r})", ["port must be in 1..65535"])
        if startup_timeout_s <= 0:
            raise ConfigError("RasaStack(startup_timeout_s)", ["must be positive"])
        self.bot = bot
        self.ci = ci
        self.repo_root = (repo_root or REPO_ROOT).resolve()
        venv_env = os.environ.get("EMOTUNE_RASA_VENV")
        self.rasa_venv = rasa_venv or (Path(venv_env) if venv_env else self.repo_root / ".venv-rasa")
        self.bot_dir = self.repo_root / "bot" / bot
        self.config_file = self.bot_dir / ("config.ci.yml" if ci else "config.yml")
        self.models_dir = self.bot_dir / "models"
        self.startup_timeout_s = startup_timeout_s
        # Extra endpoints.yml sections, e.g. a shared SQL tracker store and Redis lock store.
        self.endpoints_extra = endpoints_extra
        # Rasa's HTTP API (/conversations/<id>/tracker: whole transcripts) is behind this token
        # (?token=...); the REST channel the gateway and the SDK use is not part of that API.
        self.api_token = secrets.token_urlsafe(24)
        self.rasa_port = rasa_port
        self.actions_port = actions_port
        self.last_train_seconds: float | None = None
        self.model = model
        if model is not None and not Path(model).is_file():
            raise ConfigError(f"RasaStack(model={str(model)!r})", ["no such trained Rasa model file"])
        self._run_dir: Path | None = None
        self._rasa: subprocess.Popen[bytes] | None = None
        self._actions: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ paths and cache
    @property
    def rasa_bin(self) -> Path:
        return self.rasa_venv / "bin" / "rasa"

    @property
    def url(self) -> str:
        """Base URL of the Rasa server (valid once ``start()`` picked the port)."""
        if self.rasa_port is None:
            raise RasaUnavailableError("the Rasa server has no port yet: call start() first")
        return f"http://127.0.0.1:{self.rasa_port}"

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/webhooks/rest/webhook"

    @property
    def actions_url(self) -> str:
        if self.actions_port is None:
            raise RasaUnavailableError("the action server has no port yet: call start() first")
        return f"http://127.0.0.1:{self.actions_port}"

    @property
    def pids(self) -> list[int]:
        """Process ids of the running Rasa server and action server (empty before ``start()``)."""
        return [process.pid for process in (self._rasa, self._actions) if process is not None]

    def _training_inputs(self) -> list[Path]:
        files = [self.bot_dir / "domain.yml", self.config_file]
        files += sorted(p for p in (self.bot_dir / "data").rglob("*") if p.suffix in (".yml", ".yaml"))
        missing = [str(p) for p in files[:2] if not p.is_file()]
        if missing:
            raise DialogueError(f"bot project {self.bot_dir} is incomplete: missing {', '.join(missing)}")
        return files

    def _rasa_version(self) -> str:
        # Part of the cache key: a model trained by another Rasa version may not load.
        for version_file in sorted(self.rasa_venv.glob("lib/python3*/site-packages/rasa/version.py")):
            return version_file.read_text(encoding="utf-8")
        return "unknown"

    def fingerprint(self) -> str:
        """Hash of everything that shapes the trained model."""
        digest = hashlib.sha256()
        digest.update(self._rasa_version().encode())
        for path in self._training_inputs():
            digest.update(str(path.relative_to(self.bot_dir)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
        return digest.hexdigest()[:16]

    @property
    def model_path(self) -> Path:
        """Where the model for the current project files is (or will be) stored."""
        variant = "ci" if self.ci else "full"
        return self.models_dir / f"{self.bot}-{variant}-{self.fingerprint()}.tar.gz"

    def _check_venv(self) -> None:
        if not self.rasa_bin.is_file():
            raise DialogueError(
                f"Rasa is not installed at {self.rasa_bin}: run `make venvs` (or set EMOTUNE_RASA_VENV)"
            )

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        # The action server imports `actions` from the repo root; Rasa must not phone home.
        env["PYTHONPATH"] = str(self.repo_root)
        env["RASA_TELEMETRY_ENABLED"] = "false"
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
        # rasa_sdk has no --interface option; it binds SANIC_HOST (default 0.0.0.0). Loopback only.
        env["SANIC_HOST"] = "127.0.0.1"
        env.pop("VIRTUAL_ENV", None)
        return env

    def _run_directory(self) -> Path:
        if self._run_dir is None:
            self._run_dir = Path(tempfile.mkdtemp(prefix=f"emotune-rasa-{self.bot}-"))
        return self._run_dir

    # ------------------------------------------------------------------ training
    def train(self, force: bool = False) -> Path:
        """Train unless a model for exactly these project files exists; returns the model path.

        Safe to call from several processes at once (tests, the demo, the gateway): one trains,
        the others wait for it and then use its model.
        """
        self._check_venv()
        target = self.model_path
        if target.is_file() and not force:
            logger.info("using cached Rasa model %s", target)
            self.last_train_seconds = None
            return target
        self.models_dir.mkdir(parents=True, exist_ok=True)
        variant = "ci" if self.ci else "full"
        with (self.models_dir / f".train-{self.bot}-{variant}.lock").open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                _progress(f"waiting for another process training '{self.bot}' ({variant}) ...")
                fcntl.flock(lock, fcntl.LOCK_EX)
            if target.is_file() and not force:  # the other process trained exactly this model
                self.last_train_seconds = None
                return target
            self._train_locked(target)
        # Older models of this bot/variant are stale; keep the folder from growing with every edit.
        for old in self.models_dir.glob(f"{self.bot}-{variant}-*.tar.gz"):
            if old != target:
                old.unlink(missing_ok=True)
        return target

    def _train_locked(self, target: Path) -> None:
        log_path = self._run_directory() / "train.log"
        # Train into a scratch folder and move the result in one step: a half-written model
        # must never look like a cached one.
        scratch = Path(tempfile.mkdtemp(prefix=".training-", dir=self.models_dir))
        name = target.name.removesuffix(".tar.gz")
        command = [
            str(self.rasa_bin), "train",
            "--config", str(self.config_file),
            "--domain", str(self.bot_dir / "domain.yml"),
            "--data", str(self.bot_dir / "data"),
            "--out", str(scratch),
            "--fixed-model-name", name,
        ]  # fmt: skip
        _progress(f"training Rasa bot '{self.bot}' ({self.config_file.name}); log: {log_path}")
        started = time.monotonic()
        try:
            with log_path.open("wb") as log:
                process = subprocess.Popen(command, cwd=self.bot_dir, env=self._env(), stdout=log, stderr=log)
                while process.poll() is None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(timeout=15)
                    if process.returncode is None:
                        _progress(f"  ... still training '{self.bot}' ({time.monotonic() - started:.0f} s)")
            produced = scratch / target.name
            if process.returncode != 0 or not produced.is_file():
                raise DialogueError(
                    f"rasa train for '{self.bot}' failed (exit {process.returncode}); log tail:\n"
                    f"{log_tail(log_path)}"
                )
            os.replace(produced, target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        self.last_train_seconds = time.monotonic() - started
        _progress(f"trained '{self.bot}' in {self.last_train_seconds:.1f} s -> {target}")

    # ------------------------------------------------------------------ processes
    def _spawn(self, command: list[str], cwd: Path, log_name: str) -> subprocess.Popen[bytes]:
        log_path = self._run_directory() / log_name
        log = log_path.open("ab")
        try:
            # A session of its own: stopping kills the server and anything it spawned, nothing else.
            return subprocess.Popen(
                command, cwd=cwd, env=self._env(), stdout=log, stderr=log, start_new_session=True
            )
        finally:
            log.close()

    def _wait_ready(self, process: subprocess.Popen[bytes], url: str, log_name: str, what: str) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        log_path = self._run_directory() / log_name
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RasaUnavailableError(
                    f"{what} exited with code {process.returncode} during start-up; log tail:\n"
                    f"{log_tail(log_path)}"
                )
            try:
                answer = _http_json(url, timeout_s=2.0)
            except (urllib.error.URLError, OSError, ValueError):
                answer = None
            # /status only reports a model_file once the model is loaded; /health just answers.
            if answer is not None and ("/status" not in url or answer.get("model_file")):
                return
            time.sleep(0.5)
        raise RasaUnavailableError(
            f"{what} did not answer {url} within {self.startup_timeout_s:.0f} s; log tail:\n{log_tail(log_path)}"
        )

    def start_actions(self) -> None:
        """Start the action server (``rasa run actions``) and wait for /health."""
        self._check_venv()
        if self._actions is not None and self._actions.poll() is None:
            return
        if self.actions_port is None:
            self.actions_port = free_port()
        elif port_in_use(self.actions_port):
            raise RasaUnavailableError(
                f"cannot start the action server: port {self.actions_port} is already in use"
            )
        command = [
            str(self.rasa_bin),
            "run",
            "actions",
            "--actions",
            "actions",
            "--port",
            str(self.actions_port),
        ]
        self._actions = self._spawn(command, self.repo_root, "actions.log")
        self._wait_ready(self._actions, f"{self.actions_url}/health", "actions.log", "the action server")

    def start_rasa(self) -> None:
        """Start the Rasa server with the REST channel and HTTP API; wait until the model is loaded."""
        self._check_venv()
        if self._rasa is not None and self._rasa.poll() is None:
            return
        model = self.model or self.train()
        if self.rasa_port is None:
            self.rasa_port = free_port()
        elif port_in_use(self.rasa_port):
            raise RasaUnavailableError(
                f"cannot start the Rasa server: port {self.rasa_port} is already in use"
            )
        endpoints = self._run_directory() / "endpoints.yml"
        endpoints.write_text(
            f'action_endpoint:\n  url: "{self.actions_url}/webhook"\n' + (self.endpoints_extra or ""),
            encoding="utf-8",
        )
        command = [
            str(self.rasa_bin), "run",
            "--enable-api",
            f"--auth-token={self.api_token}",  # "=": a token may start with "-" (argparse would take it for an option)
            "--model", str(model),
            "--interface", "127.0.0.1",
            "--port", str(self.rasa_port),
            "--endpoints", str(endpoints),
            "--credentials", str(self.bot_dir / "credentials.yml"),
        ]  # fmt: skip
        self._rasa = self._spawn(command, self.bot_dir, "rasa.log")
        self._wait_ready(self._rasa, f"{self.url}/status?token={self.api_token}", "rasa.log", "the Rasa server")

    def start(self) -> RasaStack:
        """Train if needed, start both servers, return self once both answer."""
        started = time.monotonic()
        try:
            self.train()
            self.start_actions()
            self.start_rasa()
        except BaseException:
            self.stop()
            raise
        logger.info("Rasa stack '%s' up at %s in %.1f s", self.bot, self.url, time.monotonic() - started)
        return self

    @staticmethod
    def _terminate(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)

    def kill_rasa(self) -> None:
        """Kill the Rasa server abruptly (SIGKILL), leaving the action server up: for fault tests."""
        self._terminate(self._rasa, signal.SIGKILL)

    def kill_actions(self) -> None:
        """Kill the action server abruptly (SIGKILL): for fault tests."""
        self._terminate(self._actions, signal.SIGKILL)

    def restart(self) -> None:
        """Stop both servers (if still up) and start them again on the same ports, so clients' URLs stay valid."""
        self._terminate(self._rasa)
        self._terminate(self._actions)
        self.start_actions()
        self.start_rasa()

    @property
    def running(self) -> bool:
        return all(p is not None and p.poll() is None for p in (self._rasa, self._actions))

    def logs(self) -> dict[str, str]:
        """Tails of the server logs (for error messages and debugging)."""
        run_dir = self._run_dir
        if run_dir is None:
            return {}
        return {p.name: log_tail(p) for p in sorted(run_dir.glob("*.log"))}

    def stop(self) -> None:
        """Stop both servers (if running) and remove the run directory (logs, endpoints)."""
        self._terminate(self._rasa)
        self._terminate(self._actions)
        self._rasa = self._actions = None
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None

    def __enter__(self) -> RasaStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ REST
    def send(
        self, sender: str, text: str, metadata: dict[str, Any] | None = None, timeout_s: float = 30.0
    ) -> list[dict[str, Any]]:
        """POST one user message to the REST webhook and return Rasa's reply list."""
        body: dict[str, Any] = {"sender": sender, "message": text}
        if metadata is not None:
            body["metadata"] = metadata
        try:
            answer = _http_json(self.webhook_url, timeout_s=timeout_s, body=body)
        except (urllib.error.URLError, OSError) as exc:
            raise RasaUnavailableError(f"Rasa at {self.webhook_url} did not answer: {exc}") from exc
        if not isinstance(answer, list):
            raise DialogueError(f"unexpected REST reply from Rasa: {answer!r}")
        return answer

    def tracker(self, sender: str) -> dict[str, Any]:
        """The conversation tracker (slots, events) via the HTTP API."""
        try:
            answer = _http_json(
                f"{self.url}/conversations/{urllib.parse.quote(sender, safe='')}/tracker?token={self.api_token}",
                timeout_s=10.0,
            )
        except (urllib.error.URLError, OSError) as exc:
            raise RasaUnavailableError(f"Rasa at {self.url} did not answer: {exc}") from exc
        if not isinstance(answer, dict):
            raise DialogueError(f"unexpected tracker from Rasa: {answer!r}")
        return answer


def _progress(message: str) -> None:
    # Training takes minutes: show it on stderr (and in the log) so nobody thinks it hung.
    logger.info(message)
    print(message, file=sys.stderr, flush=True)
