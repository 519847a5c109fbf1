#!/usr/bin/env python3
"""Cold start of each function's release binary against a minimal local Lambda
runtime API (this script): process start -> first `invocation/next` (init), the
first invocation's latency, later invocations, and RSS after a handful.

Events are ones the functions answer without any AWS call (invalid requests,
an unknown webhook route), so only our own init and request path are timed.
Prints a markdown table; `--json FILE` also writes the raw numbers.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def http_event(method, path, body=""):
    """An API Gateway HTTP API (payload 2.0) event, as the function URL sends."""
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {"accountId": "1", "apiId": "a", "domainName": "d", "domainPrefix": "d",
                           "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                                    "sourceIp": "127.0.0.1", "userAgent": "bench"},
                           "requestId": "r", "routeKey": "$default", "stage": "$default",
                           "time": "01/Dec/2026:00:00:00 +0000", "timeEpoch": 0},
        "body": body, "isBase64Encoded": False}


EVENTS = {
    "start-handoff": {"session_id": "x"},
    "outbound-relay": {"session_id": "x"},
    "end-session": {"session_id": "x"},
    "inbound-webhook": http_event("POST", "/webhooks/nowhere", "{}"),
    # No API key: answered 401 before any secret is read.
    "handoff-api": http_event("GET", "/handoffs/a/p/live/sessions/s"),
    # The poller talks to DynamoDB on every tick: only its init is measured.
    "notification-poller": None,
}


class Runtime:
    """The Lambda runtime API for one process: hands out `count` invocations."""

    def __init__(self, event, count):
        self.event, self.count = event, count
        self.first_next = None
        self.sent, self.done = {}, {}
        self.cv = threading.Condition()
        runtime = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                now = time.perf_counter()
                with runtime.cv:
                    if runtime.first_next is None:
                        runtime.first_next = now
                        runtime.cv.notify_all()
                    n = len(runtime.sent)
                if runtime.event is None or n >= runtime.count:
                    time.sleep(3600)  # park the runtime until we kill it
                    return
                rid = str(uuid.uuid4())
                body = json.dumps(runtime.event).encode()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", rid)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:1:function:bench")
                self.send_header("Lambda-Runtime-Trace-Id", "Root=1-0-0")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with runtime.cv:
                    runtime.sent[rid] = time.perf_counter()
                self.wfile.write(body)

            def do_POST(self):
                now = time.perf_counter()
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                rid = self.path.split("/")[4] if self.path.count("/") >= 5 else "init"
                with runtime.cv:
                    runtime.done[rid] = now
                    runtime.cv.notify_all()
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run_once(binary, function, invocations):
    event = EVENTS[function]
    rt = Runtime(event, invocations if event is not None else 0)
    env = dict(os.environ, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{rt.port}", AWS_LAMBDA_FUNCTION_NAME=function,
               AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256", AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
               AWS_LAMBDA_LOG_STREAM_NAME="bench", AWS_LAMBDA_LOG_GROUP_NAME="bench",
               AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
               AWS_EC2_METADATA_DISABLED="true", TABLE_NAME="bench", RUST_LOG="warn", LOG_FORMAT="json",
               AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:9", AWS_ENDPOINT_URL_SECRETS_MANAGER="http://127.0.0.1:9")
    start = time.perf_counter()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with rt.cv:
            rt.cv.wait_for(lambda: rt.first_next is not None, timeout=10)
            if event is not None:
                rt.cv.wait_for(lambda: len(rt.done) >= invocations, timeout=20)
        init_ms = (rt.first_next - start) * 1000 if rt.first_next else float("nan")
        lat = sorted((rt.done[r] - rt.sent[r]) * 1000 for r in rt.sent if r in rt.done)
        first = [(rt.done[r] - rt.sent[r]) * 1000 for r in list(rt.sent)[:1] if r in rt.done]
        time.sleep(0.05)
        rss = rss_kib(proc.pid)
        return init_ms, (first[0] if first else None), lat[1:], rss
    finally:
        proc.kill()
        proc.wait()
        rt.stop()


def fmt(values):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin-dir", required=True, help="folder holding the release binaries")
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--invocations", type=int, default=6)
    p.add_argument("--json")
    a = p.parse_args()
    rows, raw = [], {}
    for function in EVENTS:
        binary = os.path.join(a.bin_dir, function)
        if not os.path.exists(binary):
            print(f"missing {binary}", file=sys.stderr)
            return 1
        results = [run_once(binary, function, a.invocations) for _ in range(a.runs)]
        inits = [r[0] for r in results]
        firsts = [r[1] for r in results]
        warm = [x for r in results for x in r[2]]
        rss = [r[3] / 1024 for r in results]
        raw[function] = {"init_ms": inits, "first_invoke_ms": firsts, "warm_invoke_ms": warm, "rss_mib": rss}
        rows.append(f"| {function} | {fmt(inits)} | {fmt(firsts)} | {fmt(warm)} | {fmt(rss)} |")
    print(f"Cold start, {a.runs} runs each (min / median / max):\n")
    print("| function | init: start -> ready (ms) | first invocation (ms) | later invocations (ms) | RSS after "
          f"{a.invocations} invocations (MiB) |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(raw, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
