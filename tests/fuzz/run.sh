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
all=(inspect inspect_structured list_scan sse_filter server_requests pol_readers policy_json stdio_framing jwt http1 aggregate_call)
targets=("${@:-${all[@]}}")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")
root="$PWD"
work="$root/target/fuzz"
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2; exit 2; }
rustup run nightly rustc --version >/dev/null || { echo "the nightly toolchain is missing: rustup toolchain install nightly" >&2; exit 2; }

# put DIR PREFIX TEXT: a seed of PREFIX (printf escapes) then TEXT, named by its hash.
put() {
  local f
  f="$1/seed-$(printf '%s\n%s' "$2" "$3" | sha1sum | cut -c1-12)"
  { printf "$2"; printf '%s' "$3"; } > "$f"
}

seed() {
  local target="$1" dir="$work/corpus/$1"
  mkdir -p "$dir"
  case "$target" in
    inspect|aggregate_call)
      for m in '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/etc/passwd"}}}' \
               '[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"x","arguments":{}}}]' \
               '{"jsonrpc":"2.0","method":"notifications/initialized"}' \
               '{"jsonrpc":"2.0","id":"warden-approval-1","result":{"action":"accept"}}' \
               '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{}}}}' \
               '{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///srv/ledger"}}' \
               '{"jsonrpc":"2.0","id":3,"method":"resources/subscribe","params":{"uri":"fil\u0065:///etc/passwd"}}' \
               '{"jsonrpc":"2.0","id":4,"method":"prompts/get","params":{"name":"complex_prompt","arguments":{"temperature":"0.7","style":"terse"}}}' \
               '{"jsonrpc":"2.0","id":5,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"complex_prompt"},"argument":{"name":"style","value":"t"}}}' \
               '{"jsonrpc":"2.0","id":6,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"demo://resource/dynamic/{id}"},"argument":{"name":"id","value":"1"},"context":{"arguments":{}}}}' \
               '{"jsonrpc":"2.0","id":7,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":["demo://resource/static/1","file:///srv/ledger"]}}}' \
               '{"jsonrpc":"2.0","id":8,"method":"server/discover","params":{}}' \
               '{"jsonrpc":"2.0","id":9,"method":"tasks/get","params":{"taskId":"t1"}}' \
               '{"jsonrpc":"2.0","id":10,"method":"future/thing","params":{"x":1}}' \
               '[{"jsonrpc":"2.0","id":11,"method":"resources/list","params":{"cursor":"c"}},{"jsonrpc":"2.0","id":12,"method":"resources/templates/list"},{"jsonrpc":"2.0","id":13,"method":"prompts/list"}]' \
               '{"jsonrpc":"2.0","id":14,"method":"resources/read","params":{"uri":7}}' \
               '{"jsonrpc":"2.0","id":15,"method":"prompts/get","params":{"name":"p","arguments":[1]}}' \
               '{"jsonrpc":"2.0","id":16,"method":"completion/complete","params":{"ref":{"type":"ref/prompt"}}}' \
               '{"jsonrpc":"2.0","id":17,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":[1]}}}' \
               '{"jsonrpc":"2.0","id":18,"method":"prompts/get","params":["p"]}' \
               '{"jsonrpc":"2.0","method":"resources/read","params":{"uri":"a"}}'; do
        printf '%s' "$m" > "$dir/seed-$(printf '%s' "$m" | sha1sum | cut -c1-12)"
      done ;;
    list_scan)
      # The first byte chooses the list (low two bits: tools, resources, templates, prompts),
      # the policy (next two) and the caller (next two); the rest is the server's answer.
      put "$dir" '\x00' '{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo","description":"Echoes","inputSchema":{"type":"object","properties":{"message":{"type":"string"}},"required":["message"]}},{"name":"secret","inputSchema":{"type":"object"}},{"name":"drop_db","inputSchema":{}},{"name":"add","inputSchema":{}}],"nextCursor":"c2"}}'
      put "$dir" '\x14' '{
  "result": {
    "tools": [
      {
        "name": "a\"b",
        "inputSchema": {"type": "object", "properties": {"x": {"description": "}]\\"}}}
      },
      {"name": "dr\u006fp_all", "inputSchema": {}},
      {"name": 7},
      {"title": "no name"},
      {"name": "post", "annotations": {"destructiveHint": true}}
    ]
  },
  "jsonrpc": "2.0",
  "id": "a"
}'
      put "$dir" '\x01' '{"jsonrpc":"2.0","id":1,"result":{"resources":[{"uri":"file:///srv/a.txt","name":"a","mimeType":"text/plain"},{"uri":"secret://k","name":"k"},{"uri":"file:///srv/private/x","name":"x"},{"uri":"db://admin/users","name":"users"},{"uri":"demo://resource/static/1","name":"Resource 1"}]}}'
      put "$dir" '\x25' '{"result":{"resources":[{"name":"ledger","uri":"file:///srv/ledger"},{"uri":"file:///etc/passwd"},{"uri":"s\u0065cret://x"}],"nextCursor":null},"id":1,"jsonrpc":"2.0"}'
      put "$dir" '\x02' '{"jsonrpc":"2.0","id":1,"result":{"resourceTemplates":[{"uriTemplate":"demo://resource/static/{id}","name":"Static Resource","description":"A static resource with a numeric ID"},{"uriTemplate":"demo://resource/dynamic/{id}","name":"Dynamic"},{"uriTemplate":"secret://{k}","name":"s"},{"uriTemplate":"file:///srv/{+path}","name":"files"}]}}'
      put "$dir" '\x0e' '{
  "jsonrpc": "2.0",
  "id": 1,
  "result": {
    "resourceTemplates": [
      {"uriTemplate": "demo://resource/dynamic/{id}", "name": "d"},
      {"uriTemplate": "demo://resource/static/{name}", "name": "s"}
    ]
  }
}'
      put "$dir" '\x03' '{"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"simple","description":"A prompt without arguments"},{"name":"complex_prompt","arguments":[{"name":"temperature","required":true}]},{"name":"debug_dump"},{"name":"ops_restart"}]}}'
      put "$dir" '\x33' '{"id":"a","jsonrpc":"2.0","result":{"_meta":{"x":1},"prompts":[{"name":"ops_\u0072estart"},{"name":"simple","name":"debug_dump"},{"name":"simple"}]}}'
      put "$dir" '\x00' '{"jsonrpc":"2.0","id":9,"result":{"tools":[{"name":"secret"}]}}'
      put "$dir" '\x00' '{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found"}}'
      put "$dir" '\x00' '[{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secret"},{"name":"echo"}]}},{"jsonrpc":"2.0","id":"a","result":{"tools":[]}}]' ;;
    server_requests)
      # A first byte 0, then a server's event stream as it is (other inputs build streams).
      put "$dir" '\x00' 'event: message
id: 1
data: {"jsonrpc":"2.0","id":0,"method":"sampling/createMessage","params":{"messages":[{"role":"user","content":{"type":"text","text":"What is the capital of France?"}}],"maxTokens":100}}

event: message
data: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}

event: message
data: {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"visible","inputSchema":{}},{"name":"secret","inputSchema":{}}]}}

'
      put "$dir" '\x00' 'id: 7
data: {"jsonrpc":"2.0","id":"e1","method":"elicitation/create","params":{"message":"Your name?","requestedSchema":{"type":"object","properties":{"name":{"type":"string"}}}}}

data: {"jsonrpc":"2.0","id":2,"method":"roots/list"}

data: {"jsonrpc":"2.0","method":"sampling/createMessage","params":{}}

data:
id: 8

'
      put "$dir" '\x00' $'\r\n: keep-alive\r\ndata: {"jsonrpc":"2.0",\r\ndata: "id":5,"method":"sampl\\u0069ng/createMessage","params":{}}\r\n\r\ndata: [{"jsonrpc":"2.0","id":6,"method":"sampling/createMessage"},{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}]\r\n\r\n'
      put "$dir" '\x00' $'\xef\xbb\xbfdata: {"jsonrpc":"2.0","id":3,"method":"sampling/createMessage","params":{"systemPrompt":"\\ud800"}}\r\rdata: {"jsonrpc":"2.0","id":4,"method":"roots/list","method":"sampling/createMessage"}\n\ndata: {"jsonrpc":"2.0","id":0,"result":{"tools":[{"name":"drop_db","description":"\\ud83d"}]}}' ;;
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
