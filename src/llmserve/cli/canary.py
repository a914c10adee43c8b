"""`llmserve canary set MODEL v1=50 v2=50`: change a canary model's weights on a running server.

Calls `PUT /admin/models/{model}/variants` with the admin key from `LLMSERVE_ADMIN_KEY`; new
requests follow the new weights at once, streams already running finish on their variant.
"""

from __future__ import annotations

import argparse
import os
import sys
from urllib.parse import quote

import httpx

from llmserve.remote import DEFAULT_BASE_URL, auth_headers, describe_error, server_root

EXIT_USAGE = 2
EXIT_REFUSED = 1


def add_canary_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`llmserve canary set`: live weights of a model's variants."""
    parser = subparsers.add_parser("canary", help="change the weights of a model's variants live")
    actions = parser.add_subparsers(dest="canary_action", required=True, metavar="ACTION")
    set_parser = actions.add_parser("set", help="set each variant's weight: MODEL v1=90 v2=10")
    set_parser.add_argument("model", help="the served model name")
    set_parser.add_argument("weights", nargs="+", metavar="VARIANT=WEIGHT")
    set_parser.add_argument(
        "--base-url", default=DEFAULT_BASE_URL, help=f"the server (default {DEFAULT_BASE_URL})"
    )
    set_parser.set_defaults(handler=run_canary_set)


def parse_weights(pairs: list[str]) -> list[dict[str, object]]:
    """`["v1=50", "v2=50"]` as the body's variants; ValueError naming a malformed pair."""
    variants: list[dict[str, object]] = []
    for pair in pairs:
        name, sep, weight = pair.partition("=")
        try:
            value = float(weight)
        except ValueError:
            value = -1.0
        if not sep or not name or not value >= 0:  # 0: the variant gets no new request
            raise ValueError(f"{pair!r}: write each as VARIANT=WEIGHT with a weight of 0 or more")
        variants.append({"name": name, "weight": value})
    return variants


def run_canary_set(args: argparse.Namespace) -> int:
    """PUT the weights; print the weights the server now uses, or why it refused."""
    admin_key = os.environ.get("LLMSERVE_ADMIN_KEY")
    if not admin_key:
        print("llmserve: set LLMSERVE_ADMIN_KEY to the server's admin key", file=sys.stderr)
        return EXIT_USAGE
    try:
        body = {"variants": parse_weights(args.weights)}
    except ValueError as exc:
        print(f"llmserve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    url = f"{server_root(args.base_url)}/admin/models/{quote(args.model, safe='')}/variants"
    try:
        response = httpx.put(url, json=body, headers=auth_headers(admin_key), timeout=30)
    except httpx.HTTPError as exc:
        print(f"llmserve: cannot reach {url}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    if response.status_code != 200:
        print(f"llmserve: {describe_error(response)}", file=sys.stderr)
        return EXIT_REFUSED
    shares = ", ".join(f"{v['name']}={v['weight']:g}" for v in response.json()["variants"])
    print(f"{args.model}: {shares}")
    return 0
