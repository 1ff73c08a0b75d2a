"""Run the local payment sandbox (localstripe) on loopback only: `python -m billing.sandbox`.

localstripe's own launcher listens on every interface; this one binds 127.0.0.1 and always
starts from scratch, so a run never sees a previous run's customers or charges.
"""
import argparse
import logging

from aiohttp import web
from localstripe.server import app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    web.run_app(app, host=args.host, port=args.port, print=lambda *_: None)


if __name__ == "__main__":
    main()
