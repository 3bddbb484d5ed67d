#!/usr/bin/env python3
"""User-space instructions per `tools/call` through the aggregated `/mcp` of
`warden serve --config` against the same call through `serve --upstream` (issue 28),
counted by valgrind's callgrind as `instructions.py` counts them (a short and a long
series of calls on one keep-alive connection and MCP session, the difference divided by
the difference in calls).

Rows: `serve --upstream … --policy examples/bench.pol`, calling `echo`; `serve --config`
with one server `one` (the same upstream and policy), calling `one_echo` through `/mcp`;
the same gateway's `/mcp/one`, calling `echo`. The upstream is `axum_mcp --no-policy`.
By default only the client connection's task is counted (exact from run to run: the
runtime's loop around it moves by thousands of instructions between runs); `--whole` counts
the whole process.

    cargo build --release -p warden-cli -p warden-e2e
    tests/bench/instructions_aggregate.py [--calls N] [--whole] [--baseline OLD-WARDEN]
"""

import argparse
import http.client
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import instructions as ins  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=2500, help="calls of the long series (the short one: a fifth)")
    p.add_argument("--whole", action="store_true", help="count the whole process")
    p.add_argument("--baseline", help="another warden binary to count the same rows of")
    args = p.parse_args()
    warden = os.path.join(ins.RELEASE, "warden")
    for b in (warden, os.path.join(ins.RELEASE, "axum_mcp")):
        if not os.path.exists(b):
            sys.exit(f"{b} missing: cargo build --release -p warden-cli -p warden-e2e")
    up_port = ins.free_port()
    up = subprocess.Popen(
        [os.path.join(ins.RELEASE, "axum_mcp"), "--no-policy", "--listen", f"127.0.0.1:{up_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    scratch = tempfile.mkdtemp(prefix="warden-instructions-")
    config = os.path.join(scratch, "warden.toml")
    with open(config, "w") as f:
        f.write(f'[servers.one]\nurl = "http://127.0.0.1:{up_port}/mcp"\n'
                f'policy = "{os.path.join(ins.REPO, "examples", "bench.pol")}"\n')
    # `instructions.drive` posts to /mcp; the /mcp/one row posts to its own path.
    path = {"to": "/mcp"}
    request = http.client.HTTPConnection.request

    def to_path(self, method, url, *a, **k):
        return request(self, method, path["to"] if url == "/mcp" else url, *a, **k)

    http.client.HTTPConnection.request = to_path
    call = ins.CALL
    short, long_ = max(args.calls // 5, 1), args.calls
    binaries = [("", warden)] + ([(" (baseline)", args.baseline)] if args.baseline else [])
    try:
        ins.wait_for_port(up_port, up, "axum_mcp")
        print(f"User-space instructions per tools/call (callgrind; {long_} against {short} calls; "
              f"{'whole process' if args.whole else 'the client connection task'})\n")
        print("| path | instructions per call | against serve --upstream |")
        print("|---|---:|---:|")
        for suffix, binary in binaries:
            def config_gateway(port, binary=binary):
                return [binary, "serve", "--listen", f"127.0.0.1:{port}", "--config", config,
                        "--grant-token", f"bench={ins.TOKEN}", "--workers", "1"]
            rows = [
                ("serve --upstream, echo", lambda port, binary=binary: ins.warden_command(binary, port, up_port), "/mcp", call),
                ("serve --config, /mcp, one_echo", config_gateway, "/mcp", call.replace('"echo"', '"one_echo"')),
                ("serve --config, /mcp/one, echo", config_gateway, "/mcp/one", call),
            ]
            base = None
            for k, (name, command, to, body) in enumerate(rows):
                path["to"], ins.CALL = to, body
                counts = []
                for calls in (short, long_):
                    port = ins.free_port()
                    toggle = None if args.whole else ins.CONNECTION_TASK
                    # Numbered: "/mcp, one_echo" and "/mcp/one, echo" read alike once cleaned.
                    tag = f"{k}-" + name.replace("/", "_").replace(",", "") + suffix.replace(" ", "_")
                    counts.append(ins.measure(tag, command(port), port, calls, scratch, toggle))
                per = (counts[1] - counts[0]) / (long_ - short)
                base = base or per
                print(f"| {name}{suffix} | {per:,.0f} | {per / base:.3f}× |", flush=True)
    finally:
        up.kill()


if __name__ == "__main__":
    main()
