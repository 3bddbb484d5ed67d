//! `warden.toml`: `warden serve`'s flags as a file (`warden serve --config warden.toml`).
//!
//! Every flag of `serve` is a key of the same name (`upstream-timeout = 30`,
//! `grant-token = ["alice=${ALICE_TOKEN}"]`): the keys are read off the command-line
//! definition itself, so a new flag is a new key with nothing to keep in step. A file is
//! turned into the arguments it stands for, placed before the command line's, and the
//! command line wins: a flag given there replaces the file's value (list flags add to the
//! file's). `${VAR}` in a string reads the environment, so secrets stay out of the file;
//! `$$` is a literal `$`.
//!
//! Each MCP server is a `[servers.NAME]` table (`url`, `policy`, `headers`, `timeout`, and
//! the upstream TLS keys). One server is served as `--upstream` serves it; several are each
//! at `/mcp/NAME`, with their own policy and counters. `gateway-policy` names a policy for
//! every server's calls, decided after each server's own.
//!
//! Every problem is a [`Diagnostic`] at its line and column: a key no flag has (with the
//! nearest one), a value of the wrong type, an unset variable, a policy file that is not
//! there, a URL that is not http(s).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use toml_edit::{Document, Item, Value};
use warden_dsl::Diagnostic;

/// The keys of a `[servers.NAME]` table.
const SERVER_KEYS: &[&str] = &[
    "url",
    "command",
    "env",
    "cwd",
    "shared",
    "max-children",
    "policy",
    "headers",
    "timeout",
    "upstream-ca",
    "upstream-client-cert",
    "upstream-client-key",
];

/// Keys that belong to one server, refused at the top level with a pointer to the table.
const SERVER_ONLY: &[&str] = &["upstream", "policy", "header"];

/// What a `warden.toml` stands for.
#[derive(Debug, Default)]
pub struct Config {
    /// The `serve` arguments, in order.
    pub args: Vec<OsString>,
    /// The servers, in the file's order.
    pub servers: Vec<ServerSpec>,
    /// `gateway-policy`: the policy above every server's, resolved against the file's
    /// directory.
    pub gateway_policy: Option<PathBuf>,
    /// Variables unset where the file is only checked (CI has no secrets): said, not fatal.
    pub warnings: Vec<Diagnostic>,
}

/// One `[servers.NAME]` table; paths resolved against the file's directory.
#[derive(Debug, Clone, Default)]
pub struct ServerSpec {
    pub name: String,
    pub url: String,
    pub policy: PathBuf,
    /// `Name: value` lines.
    pub headers: Vec<String>,
    /// Seconds; `None`: `upstream-timeout`'s.
    pub timeout: Option<u64>,
    pub upstream_ca: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// A stdio server to launch instead of a URL: the program and its arguments.
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    /// One child for every session.
    pub shared: bool,
    pub max_children: Option<usize>,
}

/// What the file is read for: serving wants every `${VAR}` set and every file there;
/// checking (in CI, without the secrets) only warns of an unset variable; scanning writes
/// the policies, so they need not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Serve,
    Check,
    Scan,
}

/// How a flag takes its value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Takes {
    /// `--flag` alone: a boolean key.
    Switch,
    /// `--flag VALUE`, once.
    One,
    /// `--flag VALUE`, repeatable: a list (or one value).
    Many,
}

/// `serve`'s flags (long name → what it takes), `--config` and `--help` aside.
fn flags() -> Vec<(String, Takes)> {
    let cli = crate::cli::Cli::command();
    let Some(serve) = cli.find_subcommand("serve") else {
        return Vec::new();
    };
    serve
        .get_arguments()
        .filter_map(|a| {
            let long = a.get_long()?;
            let takes = match a.get_action() {
                clap::ArgAction::SetTrue => Takes::Switch,
                clap::ArgAction::Append => Takes::Many,
                clap::ArgAction::Set => Takes::One,
                _ => return None,
            };
            Some((long.to_owned(), takes))
        })
        .filter(|(long, _)| long != "config")
        .collect()
}

/// Whether `text` is a value the flag takes (`max-sessions = 0` is not), by the flag's own
/// parser, so that the file's line and column go with the error rather than a bare
/// command-line complaint at start.
fn invalid_value(
    serve: Option<&mut clap::Command>,
    flag: &str,
    text: &str,
) -> Option<(String, Option<String>)> {
    // clap checks a value when it reads it, before it looks for missing arguments: only an
    // error about the value itself counts.
    let err = serve?
        .try_get_matches_from_mut(["serve".to_owned(), format!("--{flag}={text}")])
        .err()?;
    if !matches!(
        err.kind(),
        clap::error::ErrorKind::ValueValidation | clap::error::ErrorKind::InvalidValue
    ) {
        return None;
    }
    let shown = err.to_string();
    let mut lines = shown.lines();
    let first = lines.next().unwrap_or_default();
    let possible = lines
        .map(str::trim)
        .find(|l| l.starts_with("[possible values:"))
        .map(|l| l.trim_matches(['[', ']']).to_owned());
    Some((first.trim_start_matches("error: ").to_owned(), possible))
}

/// [`load`] for a verb that reads a warden.toml beside its own work (`diff`, `replay`,
/// `test`, `explain`, `scan`): its problems are written to stderr, located, and the verb
/// stops with [`crate::error::CliError::Invalid`].
pub fn load_reported(
    path: &Path,
    purpose: Purpose,
) -> Result<(Config, String), crate::error::CliError> {
    load(path, purpose).map_err(|(problems, text)| {
        let name = path.display().to_string();
        for d in &problems {
            eprintln!("{}", d.render(&name, &text, crate::report::color()));
        }
        crate::error::CliError::Invalid {
            path: path.to_owned(),
            count: problems.len(),
        }
    })
}

/// Reads `path`; `Err` holds every problem found (the text is returned for rendering).
pub fn load(path: &Path, purpose: Purpose) -> Result<(Config, String), (Vec<Diagnostic>, String)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return Err((
                vec![Diagnostic::new(0..0, format!("cannot read the file: {e}"))],
                String::new(),
            ));
        }
    };
    let base = path.parent().unwrap_or(Path::new("."));
    match read(&text, base, purpose) {
        Ok(c) => Ok((c, text)),
        Err(d) => Err((d, text)),
    }
}

/// The file's arguments, or its problems.
fn read(text: &str, base: &Path, purpose: Purpose) -> Result<Config, Vec<Diagnostic>> {
    let doc = Document::parse(text).map_err(|e| {
        vec![Diagnostic::new(
            e.span().unwrap_or(0..0),
            format!("not valid TOML: {}", e.message().trim_end()),
        )]
    })?;
    let mut out = Reader {
        flags: flags(),
        serve: crate::cli::Cli::command().find_subcommand("serve").cloned(),
        config: Config::default(),
        problems: Vec::new(),
        base,
        purpose,
    };
    let root = doc.as_table();
    for (key, item) in root.iter() {
        let key_span = root.key(key).and_then(|k| k.span()).unwrap_or(0..0);
        if key == "servers" {
            out.servers(item, key_span);
            continue;
        }
        if key == "gateway-policy" {
            // Found beside the file, as the servers' policies are.
            let must_exist = out.purpose != Purpose::Scan;
            if let Some(path) = out.file(item, must_exist) {
                out.config.args.push("--gateway-policy".into());
                out.config.args.push(path.clone().into_os_string());
                out.config.gateway_policy = Some(path);
            }
            continue;
        }
        if SERVER_ONLY.contains(&key) {
            out.problems.push(
                Diagnostic::new(key_span, format!("`{key}` belongs to a server")).with_help(
                    format!(
                        "put it in a [servers.NAME] table as `{}`",
                        match key {
                            "upstream" => "url",
                            "header" => "headers",
                            k => k,
                        }
                    ),
                ),
            );
            continue;
        }
        out.flag(key, key, item, key_span);
    }
    if out.config.servers.is_empty() && out.problems.is_empty() {
        out.problems.push(
            Diagnostic::new(0..0, "no server: the file names none")
                .with_help("add a [servers.NAME] table with `url` and `policy`"),
        );
    }
    if out.problems.is_empty() {
        Ok(out.config)
    } else {
        Err(out.problems)
    }
}

struct Reader<'a> {
    flags: Vec<(String, Takes)>,
    serve: Option<clap::Command>,
    config: Config,
    problems: Vec<Diagnostic>,
    base: &'a Path,
    purpose: Purpose,
}

impl Reader<'_> {
    /// One key as the flag `flag`.
    fn flag(&mut self, key: &str, flag: &str, item: &Item, key_span: std::ops::Range<usize>) {
        let Some(takes) = self.flags.iter().find(|(f, _)| f == flag).map(|(_, t)| *t) else {
            let known = self.flags.iter().map(|(f, _)| f.as_str());
            let mut d = Diagnostic::new(key_span, format!("unknown key `{key}`"));
            let guess = warden_policy::did_you_mean(&key.replace('_', "-"), known);
            d = match guess {
                Some(g) => d.with_help(format!("did you mean `{g}`?")),
                None => d.with_help("the keys are `warden serve`'s flags, without the dashes"),
            };
            self.problems.push(d);
            return;
        };
        let span = item.span().unwrap_or(key_span.clone());
        let Some(value) = item.as_value() else {
            self.problems.push(Diagnostic::new(
                span,
                format!("`{key}` takes a value, not a table"),
            ));
            return;
        };
        let arg = format!("--{flag}");
        match (takes, value) {
            (Takes::Switch, Value::Boolean(b)) => {
                if *b.value() {
                    self.config.args.push(arg.into());
                }
            }
            (Takes::Switch, _) => self
                .problems
                .push(Diagnostic::new(span, format!("`{key}` is true or false"))),
            (Takes::Many, Value::Array(list)) => {
                for v in list.iter() {
                    if let Some(text) = self.value(key, flag, v) {
                        self.config.args.push(format!("{arg}={text}").into());
                    }
                }
            }
            (_, Value::Array(_)) => self.problems.push(Diagnostic::new(
                span,
                format!("`{key}` takes one value, not a list"),
            )),
            (_, v) => {
                // One `--flag=value` token: a value that starts with `-` is still a value.
                if let Some(text) = self.value(key, flag, v) {
                    self.config.args.push(format!("{arg}={text}").into());
                }
            }
        }
    }

    /// [`Self::scalar`], refused here when the flag would refuse it.
    fn value(&mut self, key: &str, flag: &str, v: &Value) -> Option<String> {
        let text = self.scalar(key, v)?;
        match invalid_value(self.serve.as_mut(), flag, &text) {
            None => Some(text),
            Some((why, possible)) => {
                // A value read from the environment may be a secret: not repeated.
                let from_env = v.as_str().is_some_and(|raw| raw.contains("${"));
                let why = if from_env {
                    why.replace(&format!("'{text}'"), "(from the environment)")
                } else {
                    why
                };
                let span = v.span().unwrap_or(0..0);
                let mut d = Diagnostic::new(span, format!("`{key}`: {why}"));
                if let Some(p) = possible {
                    d = d.with_help(p);
                }
                self.problems.push(d);
                None
            }
        }
    }

    /// A string (with `${VAR}` expanded), a number or a boolean, as the flag's text.
    fn scalar(&mut self, key: &str, v: &Value) -> Option<String> {
        let span = v.span().unwrap_or(0..0);
        match v {
            Value::String(s) => match expand(s.value()) {
                Ok(t) => Some(t),
                Err(var) => {
                    let d =
                        Diagnostic::new(span, format!("${{{var}}} is not set in the environment"))
                            .with_help(format!("export {var}=… before starting warden"));
                    match self.purpose {
                        Purpose::Check => self.config.warnings.push(d.warning()),
                        Purpose::Serve | Purpose::Scan => self.problems.push(d),
                    }
                    None
                }
            },
            Value::Integer(i) => Some(i.value().to_string()),
            Value::Float(f) => Some(f.value().to_string()),
            Value::Boolean(b) => Some(b.value().to_string()),
            _ => {
                self.problems.push(Diagnostic::new(
                    span,
                    format!("`{key}` takes a string or a number"),
                ));
                None
            }
        }
    }

    fn servers(&mut self, item: &Item, key_span: std::ops::Range<usize>) {
        let Some(table) = item.as_table_like() else {
            self.problems.push(
                Diagnostic::new(key_span, "`servers` is a table of servers")
                    .with_help("write [servers.NAME] with `url` and `policy`"),
            );
            return;
        };
        for (name, server) in table.iter() {
            let name_span = table
                .key(name)
                .and_then(|k| k.span())
                .unwrap_or(key_span.clone());
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                self.problems.push(
                    Diagnostic::new(
                        name_span,
                        format!("server name {name:?} cannot be a path segment"),
                    )
                    .with_help("use letters, digits, `-` and `_`: it is served at /mcp/NAME"),
                );
                continue;
            }
            let Some(server) = server.as_table_like() else {
                self.problems.push(Diagnostic::new(
                    name_span,
                    format!("`servers.{name}` is a table (`url`, `policy`, ...)"),
                ));
                continue;
            };
            self.server(name, server, name_span);
        }
    }

    fn server(
        &mut self,
        name: &str,
        table: &dyn toml_edit::TableLike,
        name_span: std::ops::Range<usize>,
    ) {
        let mut spec = ServerSpec {
            name: name.to_owned(),
            ..ServerSpec::default()
        };
        let (mut url, mut policy, mut command) = (false, false, false);
        for (key, item) in table.iter() {
            let span = table.key(key).and_then(|k| k.span()).unwrap_or(0..0);
            match key {
                "url" => {
                    url = true;
                    if let Some(u) = self.string(key, item) {
                        self.check_url(&u, item.span().unwrap_or(span));
                        spec.url = u;
                    }
                }
                "policy" => {
                    policy = true;
                    // A scan writes the policies: they need not be there yet.
                    let scanning = self.purpose == Purpose::Scan;
                    spec.policy = self.file(item, !scanning).unwrap_or_default();
                }
                "headers" => spec.headers = self.headers(name, item, span),
                "timeout" => match item.as_integer() {
                    Some(t) if t > 0 => spec.timeout = u64::try_from(t).ok(),
                    _ => self.problems.push(Diagnostic::new(
                        item.span().unwrap_or(span),
                        "`timeout` is a number of seconds (at least 1)",
                    )),
                },
                "upstream-ca" => spec.upstream_ca = self.path(item),
                "upstream-client-cert" => spec.client_cert = self.path(item),
                "upstream-client-key" => spec.client_key = self.path(item),
                "command" => {
                    command = true;
                    match item.as_array() {
                        Some(list) if !list.is_empty() => {
                            for v in list.iter() {
                                if let Some(text) = self.scalar(key, v) {
                                    spec.command.push(text);
                                }
                            }
                        }
                        _ => self.problems.push(
                            Diagnostic::new(
                                item.span().unwrap_or(span),
                                "`command` is the program and its arguments, as a list",
                            )
                            .with_help("command = [\"node\", \"dist/index.js\"]"),
                        ),
                    }
                }
                "env" => match item.as_table_like() {
                    Some(t) => {
                        for (k, v) in t.iter() {
                            if let Some(text) = v.as_value().and_then(|v| self.scalar(k, v)) {
                                spec.env.push((k.to_owned(), text));
                            }
                        }
                    }
                    None => self.problems.push(Diagnostic::new(
                        item.span().unwrap_or(span),
                        "`env` is a table of variable names and values",
                    )),
                },
                "cwd" => {
                    if let Some(dir) = self.string(key, item) {
                        spec.cwd = Some(self.base.join(dir));
                    }
                }
                "shared" => match item.as_bool() {
                    Some(b) => spec.shared = b,
                    None => self.problems.push(Diagnostic::new(
                        item.span().unwrap_or(span),
                        "`shared` is true or false",
                    )),
                },
                "max-children" => match item.as_integer() {
                    Some(n) if n > 0 => spec.max_children = usize::try_from(n).ok(),
                    _ => self.problems.push(Diagnostic::new(
                        item.span().unwrap_or(span),
                        "`max-children` is a number (at least 1)",
                    )),
                },
                _ => {
                    let mut d =
                        Diagnostic::new(span, format!("unknown key `{key}` in servers.{name}"));
                    if let Some(g) = warden_policy::did_you_mean(key, SERVER_KEYS.iter().copied()) {
                        d = d.with_help(format!("did you mean `{g}`?"));
                    }
                    self.problems.push(d);
                }
            }
        }
        if spec.client_cert.is_some() != spec.client_key.is_some() {
            self.problems.push(Diagnostic::new(
                name_span.clone(),
                format!(
                    "servers.{name}: `upstream-client-cert` and `upstream-client-key` go together"
                ),
            ));
        }
        if url && command {
            self.problems.push(
                Diagnostic::new(
                    name_span.clone(),
                    format!("servers.{name} has both `url` and `command`"),
                )
                .with_help("a server is reached at a URL, or launched as a command: one of them"),
            );
        }
        for (missing, what, help) in [
            (
                !url && !command,
                "url",
                "url = \"http://127.0.0.1:3001/mcp\", or command = [\"node\", \"dist/index.js\"] for a stdio server",
            ),
            (
                !policy,
                "policy",
                "policy = \"policy.pol\" (a .pol or .json file)",
            ),
        ] {
            if missing {
                self.problems.push(
                    Diagnostic::new(name_span.clone(), format!("servers.{name} has no `{what}`"))
                        .with_help(help),
                );
            }
        }
        self.config.servers.push(spec);
    }

    /// A string value, `${VAR}`s expanded.
    fn string(&mut self, key: &str, item: &Item) -> Option<String> {
        match item.as_value() {
            Some(v @ Value::String(_)) => self.scalar(key, v),
            _ => {
                self.problems.push(Diagnostic::new(
                    item.span().unwrap_or(0..0),
                    format!("`{key}` is a string"),
                ));
                None
            }
        }
    }

    /// A file named by the config: relative to the config's directory, and it must exist.
    fn path(&mut self, item: &Item) -> Option<PathBuf> {
        self.file(item, true)
    }

    /// A file named by the config, relative to its directory; `must_exist` or not.
    fn file(&mut self, item: &Item, must_exist: bool) -> Option<PathBuf> {
        let span = item.span().unwrap_or(0..0);
        let text = match item.as_value() {
            Some(v @ Value::String(_)) => self.scalar("path", v)?,
            _ => {
                self.problems
                    .push(Diagnostic::new(span, "expected a file name (a string)"));
                return None;
            }
        };
        let path = self.base.join(&text);
        if must_exist && !path.is_file() {
            self.problems.push(Diagnostic::new(
                span,
                format!("{} does not exist", path.display()),
            ));
            return None;
        }
        Some(path)
    }

    fn check_url(&mut self, url: &str, span: std::ops::Range<usize>) {
        let ok = url
            .parse::<http::Uri>()
            .ok()
            .filter(|u| u.authority().is_some())
            .is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")));
        if !ok {
            self.problems.push(
                Diagnostic::new(span, format!("{url:?} is not an http:// or https:// URL"))
                    .with_help("the server's MCP endpoint, e.g. http://127.0.0.1:3001/mcp"),
            );
        }
    }

    /// `headers = { Authorization = "Bearer ${TOKEN}" }` → `Authorization: …`.
    fn headers(&mut self, name: &str, item: &Item, span: std::ops::Range<usize>) -> Vec<String> {
        let Some(table) = item.as_table_like() else {
            self.problems.push(Diagnostic::new(
                item.span().unwrap_or(span),
                format!("servers.{name}.headers is a table of header names and values"),
            ));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (header, value) in table.iter() {
            let Some(v) = value.as_value() else { continue };
            if let Some(text) = self.scalar(header, v) {
                out.push(format!("{header}: {text}"));
            }
        }
        out
    }
}

/// `${VAR}` from the environment, `$$` as `$`; `Err(VAR)` for an unset variable.
fn expand(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some((var, r)) = after.strip_prefix('{').and_then(|a| a.split_once('}')) {
            out.push_str(&std::env::var(var).map_err(|_| var.to_owned())?);
            rest = r;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// `warden serve … --config FILE …`: the file's flags spliced in before the command line's
/// (which win); its servers are read again by `serve` ([`load`]). Any other command line
/// is unchanged.
pub fn expand_serve(argv: Vec<OsString>) -> Result<Vec<OsString>, crate::error::CliError> {
    if argv.get(1).and_then(|a| a.to_str()) != Some("serve") {
        return Ok(argv);
    }
    let mut path = None;
    let mut rest = Vec::new();
    let mut it = argv.iter().skip(2);
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--config") => {
                path = it.next().cloned();
                rest.push(a.clone());
                rest.extend(path.clone());
            }
            Some(s) if s.starts_with("--config=") => {
                path = Some(s["--config=".len()..].into());
                rest.push(a.clone());
            }
            Some("--") => {
                rest.push(a.clone());
                rest.extend(it.by_ref().cloned());
            }
            _ => rest.push(a.clone()),
        }
    }
    let Some(path) = path.map(PathBuf::from) else {
        return Ok(argv);
    };
    let (config, _) = load_reported(&path, Purpose::Serve)?;
    let mut out = vec![argv[0].clone(), "serve".into()];
    out.extend(config.args);
    out.extend(rest);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        read(text, Path::new("/nonexistent"), Purpose::Serve)
            .err()
            .unwrap_or_default()
            .iter()
            .map(|d| {
                let (l, c) = d.line_col(text);
                format!(
                    "{l}:{c}: {}{}",
                    d.message,
                    d.help
                        .as_ref()
                        .map(|h| format!(" ({h})"))
                        .unwrap_or_default()
                )
            })
            .collect()
    }

    #[test]
    fn every_serve_flag_is_a_key() {
        let f = flags();
        for key in [
            "listen",
            "tls-cert",
            "grant-token",
            "no-auth",
            "redis",
            "workers",
            "jwt-jwks",
        ] {
            assert!(f.iter().any(|(k, _)| k == key), "{key} missing");
        }
        assert!(!f.iter().any(|(k, _)| k == "config" || k == "help"));
    }

    #[test]
    fn located_problems_with_did_you_mean() {
        let text = "listn = \"127.0.0.1:1\"\nno-auth = \"yes\"\nworkers = [1, 2]\npolicy = \"p.pol\"\n[servers.a]\nurl = \"ftp://x/mcp\"\npolicy = \"p.pol\"\ncomand = [\"node\"]\n";
        insta::assert_snapshot!(problems(text).join("\n"));
    }

    #[test]
    fn values_the_flags_would_refuse_are_refused_where_they_are() {
        let text = "max-sessions = 0\nlisten = \"nowhere\"\nworkers = \"two\"\nadmin = \"127.0.0.1:9\"\nserver-names = \"sometimes\"\nmax-connections = \"${PATH}\"\n";
        // A value from the environment is not repeated (it may be a secret).
        insta::assert_snapshot!(problems(text).join("\n"));
        // A value that starts with `-` is a value, here and for `serve`.
        let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bench.pol");
        let text = format!(
            "admin-token = \"-starts-with-a-dash\"\n[servers.a]\nurl = \"http://127.0.0.1:1/mcp\"\npolicy = {:?}\n",
            policy.display()
        );
        let config = read(&text, Path::new("/nonexistent"), Purpose::Check).unwrap();
        assert_eq!(config.args[0], "--admin-token=-starts-with-a-dash");
    }

    #[test]
    fn two_servers_with_one_name_are_refused_where_the_second_is() {
        let text = "[servers.a]\nurl = \"http://x/mcp\"\n\n[servers.a]\nurl = \"http://y/mcp\"\n";
        let found = problems(text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("4:10: not valid TOML: duplicate key"),
            "{found:?}"
        );
    }

    #[test]
    fn variables_come_from_the_environment() {
        assert_eq!(expand("a$$b").unwrap(), "a$b");
        assert_eq!(
            expand("${WARDEN_SURELY_UNSET_VAR}").unwrap_err(),
            "WARDEN_SURELY_UNSET_VAR"
        );
        let path = std::env::var("PATH").unwrap();
        assert_eq!(expand("x${PATH}y").unwrap(), format!("x{path}y"));
    }
}
