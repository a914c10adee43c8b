"""`llmserve bench`: the arguments (named as `vllm bench serve` names them) and the run."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from pathlib import Path
from typing import Any

import httpx

from llmserve.bench.metrics import METRICS, SLO_METRICS, calculate_metrics
from llmserve.bench.plot import PlotUnavailableError, save_plot
from llmserve.bench.report import RunSettings, result_block, result_json, result_path, save_result
from llmserve.bench.request import Endpoint
from llmserve.bench.runner import RunOutcome, Workload, run_workload
from llmserve.remote import RemoteError, api_key_from, auth_headers, first_chat_model, server_root

EXIT_USAGE = 2
ENDPOINTS = {"openai": "/v1/completions", "openai-chat": "/v1/chat/completions"}
SAMPLING_FLAGS = (
    *("temperature", "top_p", "top_k", "min_p"),
    *("frequency_penalty", "presence_penalty", "repetition_penalty"),
)


class BenchUsageError(ValueError):
    """A flag with a value the run cannot use."""


def add_bench_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `llmserve bench`."""
    parser = subparsers.add_parser(
        "bench",
        help="load-test an OpenAI-compatible server (vllm bench serve's flags)",
        description="Load-test any OpenAI-compatible server with vllm bench serve's flags.",
    )
    _add_target_args(parser)
    _add_workload_args(parser)
    _add_report_args(parser)
    sampling = parser.add_argument_group("sampling parameters (sent only when given)")
    for name in SAMPLING_FLAGS:
        kind = int if name == "top_k" else float
        sampling.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=None)
    parser.set_defaults(handler=run_bench)


def _add_target_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-url", help="the server's root or /v1 URL")
    parser.add_argument("--host", default="127.0.0.1", help="without --base-url")
    parser.add_argument("--port", type=int, default=8000, help="without --base-url")
    parser.add_argument("--backend", choices=sorted(ENDPOINTS), default="openai")
    parser.add_argument("--endpoint", help="default: /v1/completions (openai-chat: chat)")
    parser.add_argument("--model", help="default: the server's first chat model")
    parser.add_argument("--api-key", help="default: $LLMSERVE_API_KEY, else $OPENAI_API_KEY")
    parser.add_argument("--header", nargs="*", metavar="KEY=VALUE", help="extra headers")
    parser.add_argument("--extra-body", type=json.loads, help="JSON merged into each request")


def _add_workload_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset-name", choices=["random"], default="random")
    parser.add_argument("--num-prompts", type=int, default=1000)
    parser.add_argument("--random-input-len", type=int, default=1024)
    parser.add_argument("--random-output-len", type=int, default=128)
    parser.add_argument("--random-range-ratio", type=float, default=0.0)
    parser.add_argument("--input-len", type=int, help="sets --random-input-len")
    parser.add_argument("--output-len", type=int, help="sets --random-output-len")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--request-rate", type=float, default=math.inf, help="requests/s; inf sends all at once"
    )
    parser.add_argument("--burstiness", type=float, default=1.0, help="1: Poisson; gamma shape")
    parser.add_argument("--max-concurrency", type=int, help="requests in flight at most")
    parser.add_argument(
        "--ignore-eos", action="store_true", help="always on for the random dataset, as vLLM"
    )


def _add_report_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--percentile-metrics", default="ttft,tpot,itl", help=",".join(METRICS))
    parser.add_argument("--metric-percentiles", default="99", help="e.g. 25,50,75,99")
    parser.add_argument("--goodput", nargs="+", metavar="KEY:MS", help="SLOs: ttft, tpot, e2el")
    parser.add_argument("--save-result", action="store_true", help="write the result JSON")
    parser.add_argument("--save-detailed", action="store_true", help="with per-request lists")
    parser.add_argument("--result-dir", help="folder for the JSON (default: current)")
    parser.add_argument("--result-filename", help="the JSON's file name")
    parser.add_argument("--label", help="prefix of the default JSON name (default: backend)")
    parser.add_argument("--plot", type=Path, metavar="FILE.png", help="latency CDFs, throughput")
    parser.add_argument("--disable-tqdm", action="store_true", help="no progress bar")


def parse_goodput(pairs: list[str] | None) -> dict[str, float]:
    """`["ttft:500", "tpot:50"]` as `{"ttft": 500.0, "tpot": 50.0}` (milliseconds)."""
    slos: dict[str, float] = {}
    for pair in pairs or []:
        name, _, value = pair.partition(":")
        try:
            slos[name] = float(value)
        except ValueError:
            raise BenchUsageError(f"--goodput {pair!r}: write KEY:MILLISECONDS") from None
        if name not in SLO_METRICS or slos[name] < 0:
            raise BenchUsageError(
                f"--goodput {pair!r}: the key is one of {', '.join(SLO_METRICS)}, the value >= 0"
            )
    return slos


def workload_from(args: argparse.Namespace) -> Workload:
    """The workload flags, checked."""
    if args.num_prompts < 1:
        raise BenchUsageError("--num-prompts must be at least 1")
    if not 0 <= args.random_range_ratio < 1:
        raise BenchUsageError("--random-range-ratio must be in [0, 1)")
    if args.request_rate <= 0 or args.burstiness <= 0:
        raise BenchUsageError("--request-rate and --burstiness must be positive")
    if args.max_concurrency is not None and args.max_concurrency < 1:
        raise BenchUsageError("--max-concurrency must be at least 1")
    return Workload(
        num_prompts=args.num_prompts,
        input_len=args.input_len or args.random_input_len,
        output_len=args.output_len or args.random_output_len,
        range_ratio=args.random_range_ratio,
        seed=args.seed,
        request_rate=args.request_rate,
        burstiness=args.burstiness,
        max_concurrency=args.max_concurrency,
    )


def extra_headers(pairs: list[str] | None) -> dict[str, str]:
    """`--header KEY=VALUE ...` as a dict."""
    headers = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise BenchUsageError(f"--header {pair!r}: write KEY=VALUE")
        headers[key.strip()] = value.strip()
    return headers


def endpoint_from(args: argparse.Namespace, root: str, model: str) -> Endpoint:
    """The URL, headers and extra body fields every request uses."""
    path = args.endpoint or ENDPOINTS[args.backend]
    sampling = {n: getattr(args, n) for n in SAMPLING_FLAGS if getattr(args, n) is not None}
    # NOTE: the random dataset always ignores EOS, so outputs have the drawn lengths (as vLLM).
    extra: dict[str, Any] = {**sampling, "ignore_eos": True, **(args.extra_body or {})}
    headers = {**auth_headers(api_key_from(args.api_key)), **extra_headers(args.header)}
    is_chat = path.rstrip("/").endswith("chat/completions")
    return Endpoint(f"{root}/{path.lstrip('/')}", model, is_chat, headers, extra)


def settings_from(args: argparse.Namespace, model: str, has_goodput: bool) -> RunSettings:
    """What the report and the JSON name."""
    metrics = tuple(m.strip() for m in args.percentile_metrics.split(",") if m.strip())
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise BenchUsageError(f"--percentile-metrics: unknown {unknown}; use {', '.join(METRICS)}")
    return RunSettings(
        backend=args.backend,
        label=args.label,
        model=model,
        num_prompts=args.num_prompts,
        request_rate=args.request_rate,
        burstiness=args.burstiness,
        max_concurrency=args.max_concurrency,
        percentile_metrics=metrics,
        has_goodput=has_goodput,
    )


def percentiles_from(text: str) -> list[float]:
    """`--metric-percentiles 50,99` as numbers in (0, 100]."""
    try:
        values = [float(p) for p in text.split(",")]
    except ValueError:
        raise BenchUsageError(f"--metric-percentiles {text!r}: numbers, comma-separated") from None
    if not all(0 < p <= 100 for p in values):
        raise BenchUsageError("--metric-percentiles: each in (0, 100]")
    return values


def run_bench(args: argparse.Namespace) -> int:
    """Run the benchmark, print the result block, save JSON and plot as asked."""
    root = server_root(args.base_url or f"http://{args.host}:{args.port}")
    try:
        slos, percentiles = parse_goodput(args.goodput), percentiles_from(args.metric_percentiles)
        workload = workload_from(args)
        model = args.model or _first_model(root, args.api_key)
        endpoint = endpoint_from(args, root, model)
        settings = settings_from(args, model, has_goodput=bool(slos))
    except (BenchUsageError, RemoteError) as exc:
        print(f"llmserve bench: {exc}", file=sys.stderr)
        return EXIT_USAGE
    outcome = asyncio.run(
        run_workload(root, endpoint, workload, show_progress=not args.disable_tqdm)
    )
    metrics = calculate_metrics(outcome.outputs, outcome.duration, percentiles, slos)
    _print_failures(outcome)
    print(result_block(settings, metrics), flush=True)
    result = result_json(settings, metrics, outcome.outputs)
    if args.save_result:
        path = result_path(settings, result["date"], args.result_filename, args.result_dir)
        save_result(result, path, detailed=args.save_detailed)
        print(f"Saved the result to {path}")
    if args.plot:
        try:
            save_plot(outcome.outputs, args.plot, f"llmserve bench: {model}")
            print(f"Saved the plot to {args.plot}")
        except PlotUnavailableError as exc:
            print(f"llmserve bench: {exc}", file=sys.stderr)
            return 1
    return 0 if metrics.completed else 1


def _first_model(root: str, api_key: str | None) -> str:
    with httpx.Client(headers=auth_headers(api_key_from(api_key)), timeout=30) as client:
        return first_chat_model(client, root)


def _print_failures(outcome: RunOutcome) -> None:
    failures = [o.error for o in outcome.outputs if not o.success]
    if failures:
        print(f"Failed requests: {len(failures)} (the first 10 errors follow)")
        for index, error in enumerate(failures[:10]):
            print(f"Error {index}: {error}")
