"""`rokt-pipeline sandbox`: the local emulator of every Rokt endpoint, for tests, the demo and anyone who must not
test against production."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pipeline.cli.common import Terminated, add_common
from pipeline.sandbox.credentials import Credentials


def add_commands(commands: Any) -> None:
    defaults = Credentials()
    sandbox = commands.add_parser(
        "sandbox", help="serve the local emulator of the Rokt APIs", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A local emulator of every Rokt endpoint the connector sends to, with the published limits and "
                    "fault injection.\n\nThe credentials it accepts (each can be changed below):\n  "
                    + "\n  ".join(defaults.described()))
    sandbox.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1: this machine only)")
    sandbox.add_argument("--port", type=int, default=8787, help="the port to listen on (default 8787; 0 picks a free one)")
    sandbox.add_argument("--public-key", default=defaults.public_key, help="audience import v3 public key")
    sandbox.add_argument("--secret-key", default=defaults.secret_key, help="audience import v3 secret key")
    sandbox.add_argument("--api-key", default=defaults.legacy_api_key, help="legacy audience import API key")
    sandbox.add_argument("--app-id", default=defaults.app_id, help="Data Deletion OAuth app id")
    sandbox.add_argument("--app-secret", default=defaults.app_secret, help="Data Deletion OAuth app secret")
    sandbox.add_argument("--webhook-api-key", default=defaults.webhook_api_key, help="Nurture Unsubscribe API key")
    sandbox.add_argument("--partner-token", default=defaults.partner_token, help="Partnerships API fixed bearer token")
    sandbox.add_argument("--partner-client-id", default=defaults.partner_client_id, help="Partnerships API client id")
    sandbox.add_argument("--partner-client-secret", default=defaults.partner_client_secret, help="Partnerships API client secret")
    sandbox.add_argument("--partner-token-lifetime", type=float, default=300.0,
                         help="seconds a Partnerships access token lives (default 300, as published)")
    sandbox.add_argument("--minute-seconds", type=float, default=60.0,
                         help="how long a per-minute limit's minute lasts (tests shorten it; the client must be run with "
                              "ROKT_PIPELINE_TEST_MINUTE_SECONDS set to the same)")
    sandbox.add_argument("--faults", metavar="JSON", help='a fault plan (docs/sandbox.md), e.g. \'{"rates": [{"rate": 0.1, '
                                                          '"status": 503, "retry_after": 1}]}\'')
    sandbox.add_argument("--latency-ms", type=float, default=0, help="milliseconds added to every answer")
    sandbox.add_argument("--no-keep-identifiers", action="store_true", help="count identifiers but do not keep them (large runs)")
    add_common(sandbox)
    sandbox.set_defaults(command=_sandbox)


def _sandbox(args: argparse.Namespace) -> int:
    from pipeline.sandbox.server import Sandbox

    credentials = Credentials(args.public_key, args.secret_key, args.api_key, args.app_id, args.app_secret,
                              args.webhook_api_key, args.partner_token, args.partner_client_id, args.partner_client_secret)
    try:
        sandbox = Sandbox(args.host, args.port, credentials, keep_identifiers=not args.no_keep_identifiers,
                          minute_seconds=args.minute_seconds)
    except OSError as exc:  # the port is taken: a machine matter, nothing to do with runs
        print(f"error: cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); pick another --port", flush=True)
        return 1
    sandbox.state.extension_defaults["partnerships"] = {"token_lifetime": args.partner_token_lifetime}
    sandbox.state.reset()
    if args.faults:
        sandbox.faults.configure(json.loads(args.faults))
    if args.latency_ms:
        sandbox.faults.configure({"latency_seconds": args.latency_ms / 1000})
    # The first line is what scripts read for the URL (pipeline/sandbox/process.py); the credentials follow.
    print(f"sandbox listening on {sandbox.url} (admin: {sandbox.url}/_sandbox/state)", flush=True)
    print("credentials it accepts:\n  " + "\n  ".join(credentials.described()), flush=True)
    if args.minute_seconds != 60:
        print(f"per-minute limits count a minute of {args.minute_seconds:g}s (ROKT_PIPELINE_TEST_MINUTE_SECONDS="
              f"{args.minute_seconds:g} for the client)", flush=True)
    try:
        sandbox.server.serve_forever()
    except (KeyboardInterrupt, Terminated):
        pass
    finally:
        sandbox.server.server_close()
    return 0
