#!/usr/bin/env bash
# Runs every fuzz target for a bounded time each (default 60 s): tests/fuzz/run.sh [SECONDS] [TARGET…]
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Corpora start from
# the repository's own examples and tests (copied into target/fuzz/corpus/<target>, which
# grows between runs); crashes land in target/fuzz/artifacts/<target>. Exits non-zero if any
# target found something: reproduce with `cargo +nightly fuzz run --fuzz-dir tests/fuzz
# TARGET FILE`, fix it, and keep the input as a regular unit test.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-60}"
shift || true
all=(inspect inspect_structured sse_filter pol_readers policy_json stdio_framing jwt http1)
targets=("${@:-${all[@]}}")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")
root="$PWD"
work="$root/target/fuzz"
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2; exit 2; }
rustup run nightly rustc --version >/dev/null || { echo "the nightly toolchain is missing: rustup toolchain install nightly" >&2; exit 2; }

seed() {
  local target="$1" dir="$work/corpus/$1"
  mkdir -p "$dir"
  case "$target" in
    inspect)
      for m in '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/etc/passwd"}}}' \
               '[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"x","arguments":{}}}]' \
               '{"jsonrpc":"2.0","method":"notifications/initialized"}' \
               '{"jsonrpc":"2.0","id":"warden-approval-1","result":{"action":"accept"}}' \
               '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{}}}}'; do
        printf '%s' "$m" > "$dir/seed-$(printf '%s' "$m" | sha1sum | cut -c1-12)"
      done ;;
    pol_readers)
      find examples crates -name '*.pol' -size -64k -exec cp {} "$dir/" \; ;;
    policy_json)
      find examples crates docs -name '*.json' -size -64k -path '*polic*' -exec cp {} "$dir/" \; 2>/dev/null || true
      find crates/warden-cli/tests/data -name '*.json' -exec cp {} "$dir/" \; 2>/dev/null || true ;;
    stdio_framing)
      printf '{"jsonrpc":"2.0","id":1,"method":"ping"}\n{"id":2}\r\n\n' > "$dir/seed-lines" ;;
    http1)
      printf 'POST /mcp HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n' > "$dir/seed-chunked-head"
      printf 'POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}' > "$dir/seed-length-head"
      printf '\x405\r\nhello\r\n7;x=1\r\n, world\r\n0\r\nt: 1\r\n\r\n' > "$dir/seed-chunked-body" ;;
    jwt)
      printf 'eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlIiwiYXVkIjoid2FyZGVuIn0.c2ln' > "$dir/seed-rs256"
      printf 'eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlIn0.' > "$dir/seed-none"
      printf 'eyJhbGciOiJIUzI1NiIsImtpZCI6ImsxIn0.e30.c2ln' > "$dir/seed-hs256" ;;
  esac
}

cargo +nightly fuzz build -O --fuzz-dir tests/fuzz
found=0
for t in "${targets[@]}"; do
  seed "$t"
  mkdir -p "$work/artifacts/$t"
  echo "== $t: ${seconds}s (corpus: $(ls "$work/corpus/$t" | wc -l) inputs)"
  started=$(date +%s)
  if cargo +nightly fuzz run -O --fuzz-dir tests/fuzz "$t" "$work/corpus/$t" -- \
       -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
       -artifact_prefix="$work/artifacts/$t/" -print_final_stats=1 \
       > "$work/$t.log" 2>&1; then
    status=ok
  else
    status=FOUND; found=1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$t.log" | grep -o '[0-9]*$' | tail -1)
  echo "   $status after $(( $(date +%s) - started ))s, ${runs:-?} executions, corpus $(ls "$work/corpus/$t" | wc -l); log $work/$t.log"
  [ "$status" = ok ] || grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$work/$t.log" | head -5
done
exit $found
