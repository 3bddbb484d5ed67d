#!/usr/bin/env python3
"""User-space instructions per `tools/call` of `warden serve` with trace export off and on
(issue 29), counted by valgrind's callgrind as `instructions.py` counts them (a short and a
long series of calls, the difference divided by the difference in calls).

Every call carries `params._meta.traceparent` with the sampled flag off, as in
`proxy_compare --traces`. Rows: export off; `--otlp-endpoint` with the default sampler
(`parentbased_always_on`: the agent's decision not to sample is followed); the same with
`OTEL_TRACES_SAMPLER=always_on` (two spans a call, exported). The collector is a plain HTTP
server in this script that answers 200. All threads are counted (the batch exporter's too);
the kernel is not (see `proxy_compare --traces` for CPU time).

    cargo build --release -p warden-cli -p warden-e2e
    tests/bench/instructions_traces.py [--calls N] [--task]
"""

import argparse
import http.server
import os
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import instructions as ins  # noqa: E402


class Collector(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=2000, help="calls of the long series (the short one: a fifth)")
    p.add_argument("--task", action="store_true",
                   help="count only the client connection's task (exact from run to run; "
                        "leaves out the runtime's loop and the batch exporter's thread)")
    args = p.parse_args()
    if not os.path.exists(os.path.join(ins.RELEASE, "warden")):
        sys.exit("build first: cargo build --release -p warden-cli -p warden-e2e")
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    otlp = f"http://127.0.0.1:{srv.server_address[1]}"
    ins.CALL = ('{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo",'
                '"arguments":{"text":"hello"},"_meta":{"traceparent":'
                '"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}}}')
    up_port = ins.free_port()
    up = subprocess.Popen(
        [os.path.join(ins.RELEASE, "axum_mcp"), "--no-policy", "--listen", f"127.0.0.1:{up_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    scratch = tempfile.mkdtemp()
    short, long_ = max(args.calls // 5, 1), args.calls
    rows = [
        ("export off", [], {}),
        ("default sampler", ["--otlp-endpoint", otlp], {}),
        ("every call sampled", ["--otlp-endpoint", otlp], {"OTEL_TRACES_SAMPLER": "always_on"}),
    ]
    try:
        ins.wait_for_port(up_port, up, "axum_mcp")
        base = None
        print("| warden serve | instructions per call | against export off |")
        print("|---|---:|---:|")
        for name, extra, env in rows:
            os.environ.pop("OTEL_TRACES_SAMPLER", None)
            os.environ.update(env)
            counts = []
            for calls in (short, long_):
                port = ins.free_port()
                cmd = ins.warden_command(os.path.join(ins.RELEASE, "warden"), port, up_port) + extra
                toggle = ins.CONNECTION_TASK if args.task else None
                counts.append(ins.measure(name, cmd, port, calls, scratch, toggle))
            per = (counts[1] - counts[0]) / (long_ - short)
            base = base or per
            print(f"| {name} | {per:,.0f} | {per / base:.3f}× |", flush=True)
    finally:
        up.kill()
        srv.shutdown()


if __name__ == "__main__":
    main()
