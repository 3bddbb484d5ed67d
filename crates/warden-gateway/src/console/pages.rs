//! The console's HTML, written with maud (escaped by construction). Everything a page needs
//! is in it — styles and a few lines of script — so it works offline and behind any proxy.

use std::time::{SystemTime, UNIX_EPOCH};

use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::Value;
use warden_tower::ApprovalRequest;
use warden_tower::limit::CounterSnapshot;

use super::highlight;

const STYLE: &str = r#"
:root { --fg:#1d2330; --muted:#5b6478; --line:#d9dee8; --bg:#f6f7fa; --ok:#13795b; --no:#b42318; --warn:#b54708; --accent:#2d5bd7; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color:var(--fg); background:var(--bg); }
header { display:flex; flex-wrap:wrap; align-items:center; gap:.25rem 1rem; padding:.6rem 1rem; background:#fff; border-bottom:1px solid var(--line); }
header strong { margin-right:auto; }
header nav a { color:var(--muted); text-decoration:none; padding:.25rem .5rem; border-radius:6px; }
header nav a.on { color:var(--fg); background:var(--bg); font-weight:600; }
header form { margin:0; }
main { max-width:1100px; margin:0 auto; padding:1rem; }
h1 { font-size:1.25rem; margin:.25rem 0 1rem; }
.card { background:#fff; border:1px solid var(--line); border-radius:10px; padding:1rem; margin-bottom:1rem; }
.meta { display:flex; flex-wrap:wrap; gap:.25rem 1.25rem; color:var(--muted); font-size:.9rem; margin-bottom:.5rem; }
.meta b { color:var(--fg); font-weight:600; }
pre { background:#0f1522; color:#e6e9f0; padding:.75rem; border-radius:8px; overflow:auto; font:13px/1.5 ui-monospace, SFMono-Regular, Menlo, monospace; margin:.5rem 0; }
.answer { display:flex; flex-wrap:wrap; gap:.5rem; align-items:center; }
.answer input[type=text] { flex:1 1 14rem; padding:.45rem .6rem; border:1px solid var(--line); border-radius:6px; font:inherit; }
button { font:inherit; padding:.45rem .9rem; border-radius:6px; border:1px solid var(--line); background:#fff; cursor:pointer; }
button.ok { background:var(--ok); color:#fff; border-color:var(--ok); }
button.no { background:var(--no); color:#fff; border-color:var(--no); }
.empty { color:var(--muted); }
table { width:100%; border-collapse:collapse; background:#fff; }
th, td { text-align:left; padding:.35rem .5rem; border-bottom:1px solid var(--line); font-size:.9rem; vertical-align:top; }
th { color:var(--muted); font-weight:600; }
.d-allow, .d-approved { color:var(--ok); } .d-deny, .d-refused { color:var(--no); } .d-limited { color:var(--warn); }
.filters { display:flex; flex-wrap:wrap; gap:.5rem; margin-bottom:.75rem; }
.filters input, .filters select { padding:.4rem .5rem; border:1px solid var(--line); border-radius:6px; font:inherit; }
.counts { display:flex; flex-wrap:wrap; gap:.5rem; margin-bottom:.75rem; }
.counts span { background:#fff; border:1px solid var(--line); border-radius:999px; padding:.15rem .7rem; font-size:.9rem; }
.err { color:var(--no); }
.k { color:#8fb4ff; } .s { color:#a5e19b; } .c { color:#8a93a6; font-style:italic; } .n { color:#f5c77e; }
.scroll { overflow-x:auto; }
@media (max-width: 640px) { main { padding:.5rem; } th:nth-child(5), td:nth-child(5) { display:none; } }
"#;

pub struct Nav<'a> {
    pub active: &'a str,
    pub csrf: &'a str,
}

fn layout(title: &str, nav: Option<Nav<'_>>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Warden" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    strong { "Warden" }
                    @if let Some(nav) = &nav {
                        nav {
                            @for (href, label) in [("/console/approvals", "Approvals"), ("/console/decisions", "Decisions"), ("/console/limits", "Limits"), ("/console/policy", "Policy")] {
                                a href=(href) class=[(nav.active == label).then_some("on")] { (label) }
                            }
                        }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(nav.csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub fn login(error: Option<&str>) -> Markup {
    layout(
        "Log in",
        None,
        html! {
            div.card style="max-width:26rem;margin:2rem auto" {
                h1 { "Warden console" }
                p.empty { "The admin token of this gateway (" code { "--admin-token" } ")." }
                @if let Some(e) = error { p.err role="alert" { (e) } }
                form method="post" action="/login" {
                    p { input type="password" name="token" autocomplete="current-password" placeholder="admin token" required autofocus style="width:100%;padding:.5rem"; }
                    button.ok type="submit" { "Log in" }
                }
            }
        },
    )
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn approvals(nav: Nav<'_>, pending: &[ApprovalRequest], error: Option<&str>) -> Markup {
    let now = now_secs();
    let ids: Vec<&str> = pending.iter().map(|r| r.id.as_str()).collect();
    let csrf = nav.csrf;
    layout(
        "Approvals",
        Some(nav),
        html! {
            h1 { "Approvals waiting" }
            @if let Some(e) = error { p.err role="alert" { (e) } }
            @if pending.is_empty() { p.empty id="none" { "Nothing is waiting for an answer." } }
            @for r in pending {
                @let left = (r.asked_at + r.timeout_secs).saturating_sub(now);
                section.card id=(r.id) data-id=(r.id) {
                    div.meta {
                        @if let Some(server) = &r.server { span { "server " b { (server) } } }
                        span { "tool " b.tool { (r.tool) } }
                        span { "grant " b { (r.grant.as_deref().unwrap_or("-")) } }
                        span { "rule " b { (r.rule) } }
                        span { "time left " b { (left) " s" } }
                        span { "call " code { (r.call_hash) } }
                    }
                    pre.args { (pretty(r.args.as_ref())) }
                    form.answer method="post" action={ "/console/approvals/" (r.id) } {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="text" name="note" placeholder="note (the agent reads it on a denial)" maxlength="500";
                        button.ok type="submit" name="answer" value="approve" { "Approve" }
                        button.no type="submit" name="answer" value="deny" { "Deny" }
                    }
                }
            }
            script { (PreEscaped(format!(r#"
// New or answered requests: reload (a note being typed is kept unless its card goes).
const shown = {ids};
setInterval(async () => {{
  try {{
    const r = await fetch('/approvals', {{credentials: 'same-origin'}});
    if (!r.ok) return;
    const now = (await r.json()).pending.map(p => p.id);
    if (now.length !== shown.length || now.some(id => !shown.includes(id))) location.reload();
  }} catch (_) {{}}
}}, 2000);
"#, ids = Value::from(ids.clone())))) }
        },
    )
}

fn pretty(args: Option<&Value>) -> String {
    match args {
        None => "(no arguments)".to_owned(),
        Some(v) => serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()),
    }
}

pub fn decisions(nav: Nav<'_>, counts: &[(String, u64)]) -> Markup {
    layout(
        "Decisions",
        Some(nav),
        html! {
            h1 { "Decisions, live" }
            div.counts id="counts" title="the last 5 minutes" {
                @if counts.is_empty() { span.empty { "no decisions in the last 5 minutes" } }
                @for (k, n) in counts { span data-k=(k) { span class={ "d-" (k) } { (k) } " " b { (n) } } }
            }
            div.filters {
                input id="f-grant" placeholder="grant" aria-label="grant";
                input id="f-tool" placeholder="tool" aria-label="tool";
                select id="f-outcome" aria-label="outcome" {
                    option value="" { "any outcome" }
                    @for o in ["allow", "deny", "limited", "approved", "refused"] { option value=(o) { (o) } }
                }
            }
            div.scroll {
                table {
                    thead { tr { th { "time" } th { "grant" } th { "tool" } th { "decision" } th { "rule" } th { "message" } th { "trace" } } }
                    tbody id="rows" {}
                }
            }
            script { (PreEscaped(LIVE_JS)) }
        },
    )
}

/// Streams decisions into the table (newest first), applies the filters, keeps the counts.
const LIVE_JS: &str = r#"
const rows = document.getElementById('rows');
const f = { grant: document.getElementById('f-grant'), tool: document.getElementById('f-tool'), outcome: document.getElementById('f-outcome') };
const counts = {};
document.querySelectorAll('#counts [data-k]').forEach(s => counts[s.dataset.k] = +s.querySelector('b').textContent);
function match(d) {
  return (!f.grant.value || d.grant.includes(f.grant.value)) && (!f.tool.value || d.tool.includes(f.tool.value))
    && (!f.outcome.value || d.decision === f.outcome.value);
}
function cell(text, cls) { const td = document.createElement('td'); td.textContent = text; if (cls) td.className = cls; return td; }
// One formatter for every row (toLocaleTimeString builds one per call: slow for 1,000).
const clock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
function row(d) {
  const tr = document.createElement('tr');
  tr.dataset.grant = d.grant; tr.dataset.tool = d.tool; tr.dataset.outcome = d.decision;
  tr.append(cell(clock.format(d.at_ms)), cell(d.grant), cell(d.server ? d.server + ' / ' + d.tool : d.tool), cell(d.decision, 'd-' + d.decision), cell(d.rule), cell(d.message), cell(d.trace_id || '', 'trace'));
  tr.hidden = !match(d);
  return tr;
}
function add(d) {
  rows.prepend(row(d));
  while (rows.children.length > 1000) rows.lastChild.remove();
  counts[d.decision] = (counts[d.decision] || 0) + 1; drawCounts();
}
// The backlog in one insertion, newest first.
function backlog(list) {
  const frag = document.createDocumentFragment();
  for (let i = list.length - 1; i >= 0; i--) frag.append(row(list[i]));
  rows.prepend(frag);
  performance.mark('backlog-rendered');
}
function drawCounts() {
  const box = document.getElementById('counts'); box.textContent = '';
  for (const [k, n] of Object.entries(counts).sort()) {
    const s = document.createElement('span'); s.dataset.k = k;
    const l = document.createElement('span'); l.className = 'd-' + k; l.textContent = k;
    const b = document.createElement('b'); b.textContent = n;
    s.append(l, ' ', b); box.append(s);
  }
}
function refilter() {
  for (const tr of rows.children) tr.hidden = !match({grant: tr.dataset.grant, tool: tr.dataset.tool, decision: tr.dataset.outcome});
}
Object.values(f).forEach(el => el.addEventListener('input', refilter));
const es = new EventSource('/console/decisions/stream');
es.addEventListener('backlog', e => backlog(JSON.parse(e.data)));
es.addEventListener('decision', e => add(JSON.parse(e.data)));
"#;

/// One limit of the policy, as the limits page lists it.
pub struct LimitRow {
    pub counter: String,
    pub tools: String,
    pub quota: String,
    pub scope: String,
}

pub fn limits(nav: Nav<'_>, rows: &[LimitRow], live: &[CounterSnapshot], store: &str) -> Markup {
    layout(
        "Limits",
        Some(nav),
        html! {
            h1 { "Limits" }
            div.card.scroll {
                table {
                    thead { tr { th { "counter" } th { "tools" } th { "quota" } th { "per" } } }
                    tbody {
                        @if rows.is_empty() { tr { td colspan="4" .empty { "The policy has no limits." } } }
                        @for r in rows { tr { td { b { (r.counter) } } td { (r.tools) } td { (r.quota) } td { (r.scope) } } }
                    }
                }
            }
            h1 { "Busiest keys" }
            @if live.is_empty() {
                p.empty {
                    @if store == "memory" { "No counter has been charged yet." }
                    @else { "Counters live in " (store) ", shared by every replica; their keys are not listed here." }
                }
            }
            @for c in live {
                div.card.scroll {
                    div.meta { span { "counter " b { (c.counter) } } span { (c.max) " per " (window(c.window_secs)) } span { (c.keys) " live keys" } }
                    @if c.busiest.is_empty() { p.empty { "Every bucket is full: no key has used any of its room lately." } }
                    @else { table {
                        thead { tr { th { "key" } th { "room left" } th { "full again in" } } }
                        tbody {
                            @for k in &c.busiest { tr { td { code { (k.key) } } td { (k.remaining) " of " (c.max) } td { (k.full_in_secs) " s" } } }
                        }
                    } }
                }
            }
        },
    )
}

pub fn window(secs: u64) -> String {
    match secs {
        60 => "minute".into(),
        3600 => "hour".into(),
        86_400 => "day".into(),
        s => format!("{s} s"),
    }
}

pub struct PolicyView<'a> {
    pub path: &'a str,
    pub source: &'a str,
    pub loaded_ago_secs: u64,
    pub refused: Option<(u64, &'a str)>,
}

pub fn policy(nav: Nav<'_>, v: &PolicyView<'_>) -> Markup {
    layout(
        "Policy",
        Some(nav),
        html! {
            h1 { "Policy" }
            div.card {
                div.meta {
                    span { "file " b { (v.path) } }
                    span { "in force: " b.d-allow { "valid" } }
                    span { "loaded " b { (v.loaded_ago_secs) " s ago" } }
                }
                @if let Some((ago, diagnostics)) = v.refused {
                    p.err { "The last edit (" (ago) " s ago) was refused; the policy below stays in force:" }
                    pre.err-text { (diagnostics) }
                }
            }
            pre.source { (highlight::pol(v.source)) }
        },
    )
}
