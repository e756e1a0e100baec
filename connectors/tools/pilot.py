"""``emotune pilot``: a pilot stack on one machine: the gateway + Rasa + the action server.

The bot's trained model is chosen explicitly, never "whichever is newest": ``--bot-model full``
(the bot's ``config.yml``, trained once and cached), ``--bot-model ci`` (the quick ``config.ci.yml``
model the tests use) or a path to a ``.tar.gz`` trained elsewhere. The emotion model is the one
``config.yml`` names (``model.path`` / ``model.variant``). Runs until Ctrl-C / SIGTERM and stops
everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from connectors.devtools.rasa_stack import BOTS, RasaStack
from connectors.gateway.logging_json import configure_logging
from connectors.gateway.server import DEFAULT_LOG_DIR, run_until_stopped, serve
from emotune.config import PROJECT_ROOT, load_config
from emotune.errors import ConfigError

__all__ = ["main"]

logger = logging.getLogger(__name__)


def _stack(bot: str, bot_model: str) -> RasaStack:
    if bot_model in ("full", "ci"):
        return RasaStack(bot, ci=bot_model == "ci")
    return RasaStack(bot, model=Path(bot_model))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="emotune pilot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=PROJECT_ROOT / "config.yml", help="operator config")
    parser.add_argument("--bot", choices=BOTS, default=None, help="Rasa project (default: the config's rasa.bot)")
    parser.add_argument("--bot-model", required=True,
                        help="full | ci | path to a trained Rasa model (.tar.gz): which dialogue model to serve")
    parser.add_argument("--port", type=int, default=None, help="gateway port (default: gateway.port)")
    parser.add_argument("--rasa-port", type=int, default=None, help="Rasa port (default: a free one)")
    parser.add_argument("--log-dir", type=Path, default=DEFAULT_LOG_DIR)
    parser.add_argument("--insecure-dev", action="store_true",
                        help="as `emotune serve --insecure-dev`: endpoints without a credential accept anyone (loopback only)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        if args.port is not None:
            config.gateway.port = args.port
        if args.insecure_dev:
            config.gateway.insecure_dev = True
        args.bot = args.bot or config.rasa.bot
        stack = _stack(args.bot, args.bot_model)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stack.rasa_port = args.rasa_port
    configure_logging(json_lines=config.gateway.log_format == "json", level=config.gateway.log_level)

    async def run() -> None:
        print(f"starting Rasa ({args.bot}, model {args.bot_model}) and the action server...", flush=True)
        await asyncio.to_thread(stack.start)
        config.rasa.url = stack.url
        print(f"Rasa on {stack.url}, serving {stack.model or stack.model_path}", flush=True)
        try:
            await serve(config, log_dir=args.log_dir, config_path=args.config,
                        ready=lambda gw: print(f"gateway on ws://{config.gateway.host}:{gw.port}", flush=True))
        finally:
            await asyncio.to_thread(stack.stop)

    return run_until_stopped(run, lambda: logger.info("pilot stopped"))


if __name__ == "__main__":
    sys.exit(main())
