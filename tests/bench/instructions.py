#!/usr/bin/env python3
"""User-space instructions per `tools/call`, counted by valgrind's callgrind, for
`warden serve`, nginx and (with `--baseline`) another warden build.

CPU time on a shared machine moves by 10-20 % between rounds, more than a change to the
hot path is worth; an instruction count does not move at all. Each proxy runs under
callgrind twice, once for a short and once for a long series of calls over one keep-alive
connection and MCP session (the upstream is the rmcp example server, as in
`proxy_compare`); the difference, divided by the difference in calls, is what one call
costs, start-up and shutdown cancelled out. Kernel time (the sockets) is not counted: for
that, and for the real CPU time, see `proxy_compare`.

    cargo build --release -p warden-cli -p warden-e2e
    tests/bench/instructions.py [--baseline OLD-WARDEN-BINARY] [--calls N]

Needs `valgrind` and `nginx` (Debian packages: apt-get install valgrind nginx-light).
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
RELEASE = os.path.join(REPO, "target", "release")
TOKEN = "bench-token-0123456789"
CALL = '{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}'


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, what, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited before listening (status {proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    proc.kill()
    sys.exit(f"{what} not listening on {port} after {seconds} s")


def post(conn, body, sid=None, auth=True):
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
    }
    if sid:
        headers["mcp-session-id"] = sid
    if auth:
        headers["authorization"] = "Bearer " + TOKEN
    conn.request("POST", "/mcp", body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    if resp.status >= 300:
        sys.exit(f"HTTP {resp.status}: {data[:300]!r}")
    return resp.getheader("mcp-session-id"), data


def drive(port, calls):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    init = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "instructions", "version": "0"}}})
    sid, _ = post(conn, init)
    if not sid:
        sys.exit("the upstream gave no session id")
    post(conn, '{"jsonrpc":"2.0","method":"notifications/initialized"}', sid)
    for i in range(calls):
        _, data = post(conn, CALL % (i + 2), sid)
        if b"hello" not in data:
            sys.exit(f"unexpected answer: {data[:300]!r}")
    conn.close()


def instructions(out_file):
    """The total `Ir` of a callgrind output file (all threads, all parts)."""
    total = 0
    for name in os.listdir(os.path.dirname(out_file)):
        path = os.path.join(os.path.dirname(out_file), name)
        if not name.startswith(os.path.basename(out_file)):
            continue
        with open(path) as f:
            for line in f:
                if line.startswith("summary:") or line.startswith("totals:"):
                    total += int(line.split()[1])
                    break
    if total == 0:
        sys.exit(f"no callgrind totals in {out_file}*")
    return total


# Only what a client connection's task runs (parsing, the tower stack with the policy,
# the upstream exchange, writing the answer), not the runtime's event loop around it: that
# count is exact from run to run, where the whole process's moves by a few percent with
# how often the loop happens to wake.
CONNECTION_TASK = "*http1::server::connection*"


def measure(name, command, port, calls, scratch, toggle=None):
    """Instructions of `command` (which listens on `port`) for `calls` calls."""
    out = os.path.join(scratch, f"cg-{name.replace(' ', '_')}-{calls}-{bool(toggle)}")
    extra = [f"--toggle-collect={toggle}"] if toggle else []
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--separate-threads=no",
         f"--callgrind-out-file={out}"] + extra + command,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=dict(os.environ, WARDEN_LOG="warn"))
    try:
        wait_for_port(port, proc, name)
        drive(port, calls)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return instructions(out)


def warden_command(binary, port, upstream):
    return [binary, "serve", "--listen", f"127.0.0.1:{port}",
            "--upstream", f"http://127.0.0.1:{upstream}/mcp",
            "--policy", os.path.join(REPO, "examples", "bench.pol"),
            "--grant-token", f"bench={TOKEN}", "--workers", "1"]


def nginx_command(scratch, port, upstream):
    """nginx as `proxy_compare` runs it with one worker (tests/bench/nginx.conf.in)."""
    with open(os.path.join(os.path.dirname(__file__), "nginx.conf.in")) as f:
        conf_text = f.read()
    for field, value in (("@MASTER@", "master_process off;"), ("@WORKERS@", "1"),
                         ("@DIR@", scratch), ("@UPSTREAM@", str(upstream)),
                         ("@PORT@", str(port))):
        conf_text = conf_text.replace(field, value)
    conf = os.path.join(scratch, "nginx.conf")
    with open(conf, "w") as f:
        f.write(conf_text)
    return [shutil.which("nginx") or "/usr/sbin/nginx", "-e", "stderr", "-c", conf]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", help="another warden binary to count beside this one")
    ap.add_argument("--calls", type=int, default=1000,
                    help="calls of the long series (the short one has a fifth)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="whole-process counts to take the median of")
    ap.add_argument("--no-nginx", action="store_true")
    a = ap.parse_args()
    for tool in ["valgrind"] + ([] if a.no_nginx else ["nginx"]):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            sys.exit(f"{tool} missing: apt-get install valgrind nginx-light")
    warden, axum_mcp = os.path.join(RELEASE, "warden"), os.path.join(RELEASE, "axum_mcp")
    for b in (warden, axum_mcp):
        if not os.path.exists(b):
            sys.exit(f"{b} missing: cargo build --release -p warden-cli -p warden-e2e")

    scratch = tempfile.mkdtemp(prefix="warden-instructions-")
    up = free_port()
    upstream = subprocess.Popen(
        [axum_mcp, "--no-policy", "--listen", f"127.0.0.1:{up}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=dict(os.environ, RUST_LOG="error"))
    rows = []
    try:
        wait_for_port(up, upstream, "axum_mcp")
        proxies = [("warden serve", lambda p: warden_command(warden, p, up))]
        if a.baseline:
            proxies.append(("warden serve (baseline build)",
                            lambda p: warden_command(a.baseline, p, up)))
        if not a.no_nginx:
            proxies.append(("nginx", lambda p: nginx_command(scratch, p, up)))
        short = max(a.calls // 5, 1)

        def per_call(name, command, toggle=None):
            counts = []
            for n in (short, a.calls):
                port = free_port()
                print(f"{name}: {n} calls under callgrind...", file=sys.stderr)
                counts.append(measure(name, command(port), port, n, scratch, toggle))
            return (counts[1] - counts[0]) / (a.calls - short)

        for name, command in proxies:
            whole = sorted(per_call(name, command) for _ in range(a.repeat))
            task = per_call(name, command, CONNECTION_TASK) if name.startswith("warden") else None
            rows.append((name, whole[len(whole) // 2], task))
    finally:
        upstream.terminate()
        upstream.wait()
        shutil.rmtree(scratch, ignore_errors=True)

    nginx = next((whole for name, whole, _ in rows if name == "nginx"), None)
    print(f"User-space instructions per tools/call (callgrind; {a.calls} against "
          f"{short} calls on one keep-alive connection; whole process: median of "
          f"{a.repeat})\n")
    print("| path | whole process | vs nginx | in the connection task |")
    print("|---|---:|---:|---:|")
    for name, whole, task in rows:
        ratio = f"{whole / nginx:.2f}×" if nginx else "—"
        # No count at all: the build inlined the connection task into its caller (a
        # profile-guided build does), so there is no function to collect in.
        task = "—" if task is None else "— (inlined)" if task == 0 else f"{task:,.0f}"
        print(f"| {name} | {whole:,.0f} | {ratio} | {task} |")


if __name__ == "__main__":
    main()
