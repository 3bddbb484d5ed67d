//! The verbs that run the gateway: `serve` (and, below it, the shared option parsing).

use std::process::ExitCode;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use warden_gateway::children::Launch;
use warden_gateway::serve::{Endpoint, NameMode, ServerOptions};
use warden_gateway::{Grants, ServeOptions};
use warden_tower::redis::{FailMode, RedisConfig, redact};

use warden_tower::tls::ClientTls;

use crate::cli::{
    JwtArgs, RedisArgs, RedisFail, ServeArgs, ServerNames, StdioArgs, UpstreamTlsArgs,
};
use crate::error::CliError;

pub fn serve(args: ServeArgs) -> Result<ExitCode, CliError> {
    let servers = servers(&args)?;
    if args.gateway_policy.is_some() && servers.iter().all(|s| s.name.is_none()) {
        return Err(CliError::Usage(
            "--gateway-policy goes with servers named in a warden.toml (--config); with one \
             --upstream, put its rules in --policy"
                .into(),
        ));
    }
    let grants = if args.no_auth {
        None
    } else {
        let mut g = Grants::default();
        for spec in &args.grant_tokens {
            g.add_token(spec)?;
        }
        if let Some(file) = &args.grants {
            g.add_file(file)?;
        }
        if g.is_empty() && args.jwt.jwt_jwks.is_none() {
            return Err(CliError::Usage(
                "say who may call: --grant-token NAME=TOKEN, --grants FILE, --jwt-jwks ..., \
                 or --no-auth"
                    .into(),
            ));
        }
        Some(g)
    };
    let admin = match (args.admin, args.admin_token) {
        (Some(addr), Some(token)) => Some((addr, token)),
        (Some(_), None) => return Err(CliError::Usage("--admin needs --admin-token".into())),
        _ => None,
    };
    let redis = redis_config(&args.redis)?;
    let cors_origins = args
        .cors_origins
        .iter()
        .map(|o| {
            HeaderValue::from_str(o.trim_end_matches('/'))
                .ok()
                .filter(|_| o.starts_with("http://") || o.starts_with("https://"))
                .ok_or_else(|| {
                    CliError::Usage(format!(
                        "--cors-origin {o:?}: expected an origin such as http://localhost:6274"
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let console_url = admin.as_ref().map(|(addr, _)| {
        args.console_url.clone().unwrap_or_else(|| {
            let tls = args.admin_tls_cert.is_some() || args.tls_cert.is_some();
            format!("{}://{addr}", if tls { "https" } else { "http" })
        })
    });
    let notify = match (&args.approval_notify, &console_url) {
        (Some(url), Some(console)) => {
            let uri: http::Uri = url
                .parse()
                .ok()
                .filter(|u: &http::Uri| {
                    matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some()
                })
                .ok_or_else(|| {
                    CliError::Usage(format!(
                        "--approval-notify {url:?}: expected an http:// or https:// URL"
                    ))
                })?;
            let tls = ClientTls {
                ca: args.approval_notify_ca.clone(),
                identity: None,
            };
            check_client_tls(&tls, "--approval-notify-ca")?;
            Some(warden_gateway::state::Notify {
                url: uri,
                tls,
                console: console.clone(),
            })
        }
        _ => None,
    };
    let jwt = jwt_options(&args.jwt)?;
    if jwt.is_some() && args.no_auth {
        return Err(CliError::Usage(
            "--no-auth and --jwt-jwks contradict each other".into(),
        ));
    }
    warden_gateway::logging::init(args.audit.as_deref(), admin.is_some())?;
    let opts = ServeOptions {
        servers,
        gateway_policy: args.gateway_policy.clone(),
        server_names: match args.server_names {
            ServerNames::Always => NameMode::Always,
            ServerNames::OnCollision => NameMode::OnCollision,
            ServerNames::Never => NameMode::Never,
        },
        listen: args.listen,
        tls: args.tls_cert.zip(args.tls_key),
        admin_tls: args.admin_tls_cert.zip(args.admin_tls_key),
        grants,
        admin,
        shadow: args.shadow,
        reload_every: Duration::from_secs(1),
        redis,
        jwt,
        max_message_bytes: args.max_message_bytes.max(1),
        limits: warden_gateway::listener::Limits {
            header_read_timeout: Duration::from_secs(args.header_read_timeout.max(1)),
            max_connections: args.max_connections.max(1),
            max_sessions: args.max_sessions,
            shutdown_grace: Duration::from_secs(args.shutdown_grace),
        },
        cors_origins,
        workers: args.workers,
        notify,
        console_url,
        record: args.record,
        otlp_endpoint: args.otlp_endpoint,
        otlp_ca: args.otlp_ca,
    };
    warden_gateway::serve(opts)?;
    Ok(ExitCode::SUCCESS)
}

/// The MCP servers: `--upstream` and `--policy`, or `--config`'s `[servers.NAME]` tables
/// (each defaulting to the top-level `--upstream-ca`, … and `--upstream-timeout`).
fn servers(args: &ServeArgs) -> Result<Vec<ServerOptions>, CliError> {
    let headers = args
        .headers
        .iter()
        .map(|h| header(h))
        .collect::<Result<Vec<_>, _>>()?;
    let timeout = Duration::from_secs(args.upstream_timeout.max(1));
    match (&args.config, &args.upstream, &args.policy) {
        (None, Some(text), Some(policy)) => {
            let upstream: http::Uri = text
                .parse()
                .map_err(|e| CliError::Usage(format!("--upstream {text:?}: {e}")))?;
            check_upstream(&upstream, text, &args.upstream_tls)?;
            Ok(vec![ServerOptions {
                name: None,
                policy: policy.clone(),
                endpoint: Endpoint::Url {
                    upstream,
                    tls: upstream_tls(&args.upstream_tls),
                    headers,
                    timeout,
                },
            }])
        }
        (None, _, _) => Err(CliError::Usage(
            "say which server: --upstream URL --policy FILE, or --config warden.toml".into(),
        )),
        (Some(path), None, None) => {
            // Read once already (its flags are in `args`); its problems were reported then.
            let (config, _) = crate::config::load(path, crate::config::Purpose::Serve).map_err(
                |(problems, _)| CliError::Invalid {
                    path: path.clone(),
                    count: problems.len(),
                },
            )?;
            config
                .servers
                .into_iter()
                .map(|s| {
                    let endpoint = if s.command.is_empty() {
                        let (upstream, tls, headers) =
                            server_client(&s, &args.headers, &args.upstream_tls)?;
                        Endpoint::Url {
                            upstream,
                            tls,
                            headers,
                            timeout: s.timeout.map_or(timeout, Duration::from_secs),
                        }
                    } else {
                        Endpoint::Command(Launch {
                            name: s.name.clone(),
                            command: s.command.clone(),
                            env: s.env.clone(),
                            cwd: s.cwd.clone(),
                            shared: s.shared,
                            max_children: s
                                .max_children
                                .unwrap_or_else(Launch::default_max_children),
                            idle: Duration::from_secs(600),
                        })
                    };
                    Ok(ServerOptions {
                        // A lone server is served as `--upstream` serves it (at any path),
                        // and still named in the audit.
                        name: Some(s.name),
                        policy: s.policy,
                        endpoint,
                    })
                })
                .collect()
        }
        (Some(_), _, _) => Err(CliError::Usage(
            "name the servers in one place: --upstream/--policy, or --config's [servers] tables"
                .into(),
        )),
    }
}

pub fn stdio(args: StdioArgs) -> Result<ExitCode, CliError> {
    let redis = redis_config(&args.redis)?;
    let jwt = jwt_options(&args.jwt)?;
    warden_gateway::logging::init(args.audit.as_deref(), false)?;
    let rt = runtime()?;
    // One client started us: with JWTs, its token (from the environment) names the grant.
    let grant = match jwt {
        None => args.grant,
        Some(j) => {
            let token = std::env::var(&args.token_env).map_err(|_| {
                CliError::Usage(format!(
                    "--jwt-jwks given, but ${} holds no token (set it, or pick the variable \
                     with --token-env)",
                    args.token_env
                ))
            })?;
            rt.block_on(async {
                let verifier = warden_tower::jwt::JwtVerifier::new(j.config)
                    .await
                    .map_err(|e| CliError::Usage(e.to_string()))?;
                verifier
                    .verify(token.trim())
                    .await
                    .map(|v| v.grant)
                    .map_err(|why| CliError::Usage(format!("${}: {why}", args.token_env)))
            })?
        }
    };
    let opts = warden_gateway::StdioOptions {
        policy: args.policy,
        command: args.command,
        grant,
        shadow: args.shadow,
        reload_every: Duration::from_secs(1),
        redis,
        max_message_bytes: args.max_message_bytes.max(1),
        otlp_endpoint: args.otlp_endpoint,
        otlp_ca: args.otlp_ca,
    };
    let code = rt.block_on(warden_gateway::stdio(opts))?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

pub fn scan(
    upstream: Option<String>,
    headers: Vec<String>,
    tls: &UpstreamTlsArgs,
    output: Option<std::path::PathBuf>,
    save_tools: Option<std::path::PathBuf>,
    command: Vec<String>,
) -> Result<ExitCode, CliError> {
    if let Some(out) = output.as_ref().filter(|o| o.exists()) {
        return Err(CliError::Usage(format!(
            "{} exists; scan will not overwrite a policy (remove it or pick another -o)",
            out.display()
        )));
    }
    let headers = headers
        .iter()
        .map(|h| header(h))
        .collect::<Result<Vec<_>, _>>()?;
    let (server, catalog) = match (upstream, command.is_empty()) {
        (Some(url), true) => {
            let uri: http::Uri = url
                .parse()
                .map_err(|e| CliError::Usage(format!("--upstream {url:?}: {e}")))?;
            check_upstream(&uri, &url, tls)?;
            eprintln!("asking {url} for its tools...");
            (
                url.clone(),
                runtime()?.block_on(warden_gateway::scan::scan_http(
                    &uri,
                    &upstream_tls(tls),
                    &headers,
                ))?,
            )
        }
        (None, false) => {
            eprintln!(
                "starting `{}` and asking for its tools...",
                command.join(" ")
            );
            (
                command.join(" "),
                runtime()?.block_on(warden_gateway::scan::scan_stdio(&command))?,
            )
        }
        _ => {
            return Err(CliError::Usage(
                "give the server: --upstream URL, or -- CMD ARGS... for a stdio server".into(),
            ));
        }
    };
    if let Some(path) = &save_tools {
        let tools: Vec<serde_json::Value> = catalog
            .tools
            .iter()
            .map(|t| {
                let mut v = serde_json::json!({"name": t.name});
                if let Some(d) = &t.description {
                    v["description"] = d.clone().into();
                }
                if let Some(a) = &t.annotations {
                    v["annotations"] = a.clone();
                }
                v
            })
            .collect();
        // The resources and prompts too, for `warden check --tools` to name what a policy
        // denies of them.
        let resources: Vec<serde_json::Value> = catalog
            .resources
            .iter()
            .map(|uri| serde_json::json!({"uri": uri}))
            .collect();
        let prompts: Vec<serde_json::Value> = catalog
            .prompts
            .iter()
            .map(|name| serde_json::json!({"name": name}))
            .collect();
        let text = serde_json::to_string_pretty(
            &serde_json::json!({"tools": tools, "resources": resources, "prompts": prompts}),
        )
        .map_err(std::io::Error::from)?;
        std::fs::write(path, text + "\n").map_err(|source| CliError::Write {
            path: path.clone(),
            source,
        })?;
    }
    let text = warden_gateway::scan::starter_policy(&server, &catalog)?;
    match &output {
        Some(path) => {
            std::fs::write(path, &text).map_err(|source| CliError::Write {
                path: path.clone(),
                source,
            })?;
            eprintln!("wrote {} ({} tools)", path.display(), catalog.tools.len());
        }
        None => std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// How to reach one server: its URL, its TLS, its headers.
type Client = (http::Uri, ClientTls, Vec<(HeaderName, HeaderValue)>);

/// A `[servers.NAME]` table's client pieces.
fn server_client(
    s: &crate::config::ServerSpec,
    extra: &[String],
    tls: &UpstreamTlsArgs,
) -> Result<Client, CliError> {
    let uri: http::Uri = s
        .url
        .parse()
        .map_err(|e| CliError::Usage(format!("servers.{}: url {:?}: {e}", s.name, s.url)))?;
    let client = ClientTls {
        ca: s.upstream_ca.clone().or_else(|| tls.upstream_ca.clone()),
        identity: s.client_cert.clone().zip(s.client_key.clone()).or_else(|| {
            tls.upstream_client_cert
                .clone()
                .zip(tls.upstream_client_key.clone())
        }),
    };
    let client = if uri.scheme_str() == Some("https") {
        check_client_tls(&client, &format!("servers.{}", s.name))?;
        client
    } else {
        ClientTls::default()
    };
    let headers = extra
        .iter()
        .chain(&s.headers)
        .map(|h| header(h))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((uri, client, headers))
}

/// The tools (resources, prompts) a config's server lists now.
pub fn server_catalog(s: &crate::config::ServerSpec) -> Result<warden_policy::Catalog, CliError> {
    let none = UpstreamTlsArgs {
        upstream_ca: None,
        upstream_client_cert: None,
        upstream_client_key: None,
    };
    let (uri, tls, headers) = server_client(s, &[], &none)?;
    Ok(runtime()?.block_on(warden_gateway::scan::scan_http(&uri, &tls, &headers))?)
}

/// `warden scan --config warden.toml`: each server into its own starter policy.
pub fn scan_config(
    path: &std::path::Path,
    headers: Vec<String>,
    tls: &UpstreamTlsArgs,
) -> Result<ExitCode, CliError> {
    let (config, _) = crate::config::load_reported(path, crate::config::Purpose::Scan)?;
    let rt = runtime()?;
    let mut failed = 0;
    for s in &config.servers {
        if s.policy.exists() {
            eprintln!(
                "servers.{}: {} exists; left alone",
                s.name,
                s.policy.display()
            );
            continue;
        }
        let (uri, client, h) = server_client(s, &headers, tls)?;
        eprintln!("servers.{}: asking {} for its tools...", s.name, s.url);
        let written = rt
            .block_on(warden_gateway::scan::scan_http(&uri, &client, &h))
            .map_err(CliError::from)
            .and_then(|catalog| {
                let text = warden_gateway::scan::starter_policy(&s.url, &catalog)?;
                std::fs::write(&s.policy, text).map_err(|source| CliError::Write {
                    path: s.policy.clone(),
                    source,
                })?;
                Ok(catalog.tools.len())
            });
        match written {
            Ok(n) => eprintln!(
                "servers.{}: wrote {} ({n} tools)",
                s.name,
                s.policy.display()
            ),
            Err(e) => {
                failed += 1;
                eprintln!("error: servers.{}: {e}", s.name);
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `--jwt-*`, checked before anything starts.
fn jwt_options(args: &JwtArgs) -> Result<Option<warden_gateway::JwtOptions>, CliError> {
    let (Some(jwks), Some(issuer), Some(audience)) =
        (&args.jwt_jwks, &args.jwt_issuer, &args.jwt_audience)
    else {
        return Ok(None);
    };
    let source = warden_tower::jwt::JwksSource::parse(jwks)
        .map_err(|e| CliError::Usage(format!("--jwt-jwks: {e}")))?;
    let mut config = warden_tower::jwt::JwtConfig::new(source, issuer.clone(), audience.clone())
        .grant_claim(args.grant_claim.clone());
    config.tls = ClientTls {
        ca: args.jwt_jwks_ca.clone(),
        identity: None,
    };
    check_client_tls(&config.tls, "--jwt-jwks-ca")?;
    config.refetch_every = Duration::from_secs(args.jwt_jwks_refetch.max(1));
    if let Some(path) = &args.jwt_hs_secret_file {
        let secret = std::fs::read(path).map_err(|e| {
            CliError::Usage(format!("--jwt-hs-secret-file {}: {e}", path.display()))
        })?;
        // A trailing newline from `echo > file` is not part of the secret.
        let secret = secret.trim_ascii_end().to_vec();
        if secret.len() < 32 {
            return Err(CliError::Usage(format!(
                "--jwt-hs-secret-file {}: the secret is {} bytes; use at least 32",
                path.display(),
                secret.len()
            )));
        }
        config.hs_secret = Some(secret);
    }
    Ok(Some(warden_gateway::JwtOptions {
        config,
        authorization_servers: args.jwt_authorization_server.clone(),
        scopes: args.jwt_scope.clone(),
    }))
}

/// `--redis` and its options, checked before anything starts.
fn redis_config(args: &RedisArgs) -> Result<Option<RedisConfig>, CliError> {
    let Some(url) = &args.redis else {
        return Ok(None);
    };
    let shown = redact(url);
    let tls = ClientTls {
        ca: args.redis_ca.clone(),
        identity: args
            .redis_client_cert
            .clone()
            .zip(args.redis_client_key.clone()),
    };
    if url.starts_with("redis://") {
        if tls != ClientTls::default() {
            return Err(CliError::Usage(format!(
                "--redis {shown}: --redis-ca and --redis-client-cert need a rediss:// (TLS) URL"
            )));
        }
    } else if url.starts_with("rediss://") {
        check_client_tls(&tls, "--redis-ca/--redis-client-cert")?;
    } else {
        return Err(CliError::Usage(format!(
            "--redis {shown}: expected redis://[USER:PASSWORD@]HOST:PORT[/DB] or rediss://… (TLS)"
        )));
    }
    if args.redis_timeout_ms == 0 {
        return Err(CliError::Usage(
            "--redis-timeout-ms must be at least 1".into(),
        ));
    }
    Ok(Some(
        RedisConfig::new(url.clone())
            .prefix(args.redis_prefix.clone())
            .timeout(Duration::from_millis(args.redis_timeout_ms))
            .fail(match args.redis_fail {
                RedisFail::Closed => FailMode::Closed,
                RedisFail::Open => FailMode::Open,
            })
            .tls(tls),
    ))
}

/// `--upstream`: an http:// or https:// URL with a host; the TLS flags only with https.
fn check_upstream(uri: &http::Uri, text: &str, tls: &UpstreamTlsArgs) -> Result<(), CliError> {
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            return Err(CliError::Usage(format!(
                "--upstream {text:?}: expected an http:// or https:// URL such as http://127.0.0.1:3001/mcp"
            )));
        }
    };
    if uri.authority().is_none() {
        return Err(CliError::Usage(format!(
            "--upstream {text:?}: the URL has no host"
        )));
    }
    let client = upstream_tls(tls);
    if !https && client != ClientTls::default() {
        return Err(CliError::Usage(format!(
            "--upstream {text:?}: --upstream-ca and --upstream-client-cert are for an https:// upstream"
        )));
    }
    check_client_tls(&client, "--upstream-ca/--upstream-client-cert")
}

fn upstream_tls(args: &UpstreamTlsArgs) -> ClientTls {
    ClientTls {
        ca: args.upstream_ca.clone(),
        identity: args
            .upstream_client_cert
            .clone()
            .zip(args.upstream_client_key.clone()),
    }
}

/// The files load: a wrong path or a key that does not fit stops the start, named.
fn check_client_tls(tls: &ClientTls, flags: &str) -> Result<(), CliError> {
    tls.config(&[])
        .map(drop)
        .map_err(|e| CliError::Usage(format!("{flags}: {e}")))
}

pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Runtime::new()
        .map_err(|e| CliError::Usage(format!("cannot start the runtime: {e}")))
}

/// `Name: value`.
fn header(spec: &str) -> Result<(HeaderName, HeaderValue), CliError> {
    let bad =
        |why: &str| CliError::Usage(format!("--header {spec:?}: {why} (expected `Name: value`)"));
    let (name, value) = spec.split_once(':').ok_or_else(|| bad("no colon"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad("invalid name"))?;
    let value = HeaderValue::from_str(value.trim()).map_err(|_| bad("invalid value"))?;
    Ok((name, value))
}
