//! The HTTP client commands: `keys`, `alerts`, `whoami`, `explain`, `doctor` and
//! `audit list|export`. They talk to a Tocsin server (`--url`, `TOCSIN_URL`) with a token
//! (`--token`, `TOCSIN_TOKEN`, sent as `Authorization: Bearer`), print human tables or
//! `--json`, and on a refusal print the server's explanation and exit non-zero. The calling
//! token is never printed, whatever happens. `alerts` speaks the Opsgenie-compatible `/v2`
//! Alert API: writes answer 202 with a request id, whose status says what became of them.

use clap::{Args, Subcommand};
use comfy_table::{ContentArrangement, Table, presets};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Map, Value, json};
use std::fmt;
use std::io::Write;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use tocsin_core::alert::Priority;
use tocsin_core::key::{KeyKind, fmt_rfc3339, parse_duration};
use tocsin_core::token::Token;

/// Exit code of a command whose request failed or was refused.
const EXIT_FAILED: i32 = 1;
/// Exit code of a command that could not be sent at all (bad flags, no token).
const EXIT_USAGE: i32 = 2;
/// Page size when following every page (`--all`, `audit export`).
const FULL_PAGE: u32 = 500;

/// The options every client command shares.
#[derive(Args, Clone)]
pub struct ClientOpts {
    /// Base URL of the Tocsin server.
    #[arg(long, env = "TOCSIN_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// API token to call with (prefer TOCSIN_TOKEN: command lines are visible to other users).
    #[arg(long, env = "TOCSIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the server's JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Never shows the token, so a stray `{:?}` cannot leak it.
impl fmt::Debug for ClientOpts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOpts")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("json", &self.json)
            .finish()
    }
}

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Create, list, show, update, rotate and revoke API keys.
    Keys {
        #[command(subcommand)]
        cmd: KeysCommand,
    },
    /// Create, list, show, acknowledge and close alerts (the Opsgenie-compatible /v2 API).
    Alerts {
        #[command(subcommand)]
        cmd: AlertsCommand,
    },
    /// The calling key: kind, organization, roles and effective permissions.
    Whoami {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Would a route or a permission be allowed, and why (performs nothing).
    Explain {
        #[command(flatten)]
        explain: ExplainArgs,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Diagnose a token: offline (shape, checksum, kind, region), then online (status, expiry, permissions).
    Doctor {
        /// The token to diagnose [default: the one from --token or TOCSIN_TOKEN].
        #[arg(id = "token_to_check", value_name = "TOKEN")]
        token: Option<String>,
        /// Check the token's shape only; send nothing.
        #[arg(long)]
        offline: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// The audit trail: list events, export them all as JSON Lines, or verify the hash chains.
    Audit {
        #[command(subcommand)]
        cmd: AuditClientCommand,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key; its token is printed once and never again.
    Create {
        #[command(flatten)]
        key: CreateArgs,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// List the keys you may see.
    List {
        #[command(flatten)]
        filter: ListArgs,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Show one key (never its token).
    Show {
        id: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Change a key's name, description, expiry, roles, networks or rate limit; its token stays.
    Update {
        id: String,
        #[command(flatten)]
        change: UpdateArgs,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Issue a new token; the old one keeps working until the grace period ends.
    Rotate {
        id: String,
        /// How long the old token keeps working: 0, 90m, 24h, 7d (at most 7 days).
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        grace: Duration,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Revoke a key at once, every token of it.
    Revoke {
        id: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

#[derive(Subcommand)]
pub enum AuditClientCommand {
    /// List audit events, newest first.
    List {
        #[command(flatten)]
        filter: AuditFilter,
        /// Events per page (1-500).
        #[arg(long)]
        limit: Option<u32>,
        /// Start from this cursor (a previous page's next_cursor).
        #[arg(long)]
        cursor: Option<String>,
        /// Follow next_cursor to the end.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Print every matching event as JSON Lines (one object a line), whatever --json says.
    Export {
        #[command(flatten)]
        filter: AuditFilter,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Check every hash chain in the database directly (offline; takes the server settings).
    Verify {
        #[command(flatten)]
        server: crate::ServerArgs,
        /// Print {"intact", "chains": [...]}.
        #[arg(long)]
        json: bool,
    },
    /// Print the refusals recorded before any key was identified (no credential, a malformed,
    /// unknown or other region's token, a client address over its failed-authentication
    /// budget), which belong to no organization and so to no API listing, as JSON Lines,
    /// newest first (offline: reads the database directly; takes the server settings).
    Refusals {
        #[command(flatten)]
        server: crate::ServerArgs,
        /// Only those at or after this time: RFC 3339, or a duration back from now (24h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Only this refusal code, e.g. unknown_key or malformed_token.
        #[arg(long)]
        outcome: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum AlertsCommand {
    /// Create an alert; an open alert with the same alias is counted instead. Prints the outcome.
    Create {
        #[command(flatten)]
        alert: AlertArgs,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// List alerts (newest first unless --sort/--order say otherwise).
    List {
        #[command(flatten)]
        filter: AlertListArgs,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Show one alert, every field.
    Show {
        /// The alert's id, tiny id or alias (see --by).
        id: String,
        /// What ID is: the alert's id, its tiny id (the short number) or its alias.
        #[arg(long, value_enum, default_value_t)]
        by: IdentifierType,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Acknowledge an alert; prints what the server made of the request.
    Ack {
        #[command(flatten)]
        target: AlertTarget,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Close an alert; prints what the server made of the request.
    Close {
        #[command(flatten)]
        target: AlertTarget,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

/// How an alert is named on the command line (`identifierType`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum IdentifierType {
    #[default]
    Id,
    Tiny,
    Alias,
}

impl IdentifierType {
    fn name(self) -> &'static str {
        match self {
            IdentifierType::Id => "id",
            IdentifierType::Tiny => "tiny",
            IdentifierType::Alias => "alias",
        }
    }
}

#[derive(Args, Clone, Debug, Default)]
pub struct AlertArgs {
    /// What is wrong (at most 130 characters; the server truncates longer ones).
    #[arg(long)]
    pub message: String,
    /// De-duplication key: while an alert with this alias is open, creating it again counts it.
    #[arg(long)]
    pub alias: Option<String>,
    /// P1 (highest) to P5 [server default: P3].
    #[arg(long, value_parser = parse_priority)]
    pub priority: Option<String>,
    /// A tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Longer text about the alert.
    #[arg(long)]
    pub description: Option<String>,
    /// A note to add to the alert.
    #[arg(long)]
    pub note: Option<String>,
    /// A team that responds, by name (repeatable).
    #[arg(long = "responder-team", value_name = "NAME")]
    pub responder_teams: Vec<String>,
}

#[derive(Args, Clone, Debug, Default)]
pub struct AlertListArgs {
    /// A search, e.g. 'status:open AND priority:P1' or 'tag:prod'.
    #[arg(long)]
    pub query: Option<String>,
    /// Alerts per page (1-100) [server default: 20].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub limit: Option<u32>,
    /// Skip this many alerts (a previous page's next offset).
    #[arg(long)]
    pub offset: Option<u32>,
    /// Field to sort by: createdAt, updatedAt, tinyId, count, status, priority...
    #[arg(long)]
    pub sort: Option<String>,
    /// asc or desc [server default: desc].
    #[arg(long, value_parser = ["asc", "desc"])]
    pub order: Option<String>,
}

#[derive(Args, Clone, Debug, Default)]
pub struct AlertTarget {
    /// The alert's id, tiny id or alias (see --by).
    pub id: String,
    /// What ID is: the alert's id, its tiny id (the short number) or its alias.
    #[arg(long, value_enum, default_value_t)]
    pub by: IdentifierType,
    /// A note to add to the alert with the action.
    #[arg(long)]
    pub note: Option<String>,
}

fn parse_priority(s: &str) -> Result<String, String> {
    Priority::parse(s)
        .map(|p| p.name().to_owned())
        .ok_or_else(|| format!("`{s}` is not a priority: P1, P2, P3, P4 or P5"))
}

#[derive(Args, Clone, Debug)]
pub struct CreateArgs {
    /// The key's name (unique within its kind and scope).
    #[arg(long)]
    pub name: String,
    /// personal, team, organization or integration.
    #[arg(long, default_value = "personal", value_parser = parse_kind)]
    pub kind: KeyKind,
    /// An account role (repeatable).
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
    /// A team: the team of a team key, or each team of an organization key (repeatable).
    #[arg(long = "team", value_name = "TEAM_ID")]
    pub teams: Vec<String>,
    /// A team role (repeatable).
    #[arg(long = "team-role", value_name = "ROLE")]
    pub team_roles: Vec<String>,
    /// The integration of an integration key.
    #[arg(long, value_name = "INTEGRATION_ID")]
    pub integration: Option<String>,
    /// Lifetime from now: 30d, 12h, 2w, 1y.
    #[arg(long, value_parser = parse_lifetime, required_unless_present = "expires_at", conflicts_with = "expires_at")]
    pub expires_in: Option<Duration>,
    /// Expiry as RFC 3339, e.g. 2027-01-31T00:00:00Z.
    #[arg(long)]
    pub expires_at: Option<String>,
    /// What the key is for (at most 1,000 characters).
    #[arg(long)]
    pub description: Option<String>,
    /// Accept this key only from this network, e.g. 10.0.0.0/8 (repeatable).
    #[arg(long = "allow-cidr", value_name = "CIDR")]
    pub allow_cidrs: Vec<String>,
}

/// What `keys update` changes: only what is given (at least one).
#[derive(Args, Clone, Debug, Default)]
pub struct UpdateArgs {
    /// A new name (unique within its kind and scope).
    #[arg(long)]
    pub name: Option<String>,
    /// A new description; an empty one clears it.
    #[arg(long)]
    pub description: Option<String>,
    /// A new lifetime from now: 30d, 12h, 2w, 1y (extending a key needs every permission it holds).
    #[arg(long, value_parser = parse_lifetime, conflicts_with = "expires_at")]
    pub expires_in: Option<Duration>,
    /// A new expiry as RFC 3339, e.g. 2027-01-31T00:00:00Z.
    #[arg(long)]
    pub expires_at: Option<String>,
    /// Replace the account roles with these (repeatable).
    #[arg(long = "role", value_name = "ROLE", conflicts_with = "no_roles")]
    pub roles: Option<Vec<String>>,
    /// Remove every account role.
    #[arg(long)]
    pub no_roles: bool,
    /// Replace the team roles with these (repeatable).
    #[arg(long = "team-role", value_name = "ROLE")]
    pub team_roles: Option<Vec<String>>,
    /// Replace the networks the key is accepted from (repeatable), e.g. 10.0.0.0/8.
    #[arg(
        long = "allow-cidr",
        value_name = "CIDR",
        conflicts_with = "any_network"
    )]
    pub allow_cidrs: Option<Vec<String>>,
    /// Accept the key from any network.
    #[arg(long)]
    pub any_network: bool,
    /// Requests per minute the key may make.
    #[arg(long, value_name = "PER_MINUTE", conflicts_with = "no_rate_limit")]
    pub rate_limit: Option<u32>,
    /// Remove the key's rate limit.
    #[arg(long)]
    pub no_rate_limit: bool,
}

#[derive(Args, Clone, Debug, Default)]
pub struct ListArgs {
    /// Only keys of this kind: personal, team, organization or integration.
    #[arg(long, value_parser = parse_kind)]
    pub kind: Option<KeyKind>,
    /// Only keys granted on this team.
    #[arg(long, value_name = "TEAM_ID")]
    pub team: Option<String>,
    /// Only the keys of this integration.
    #[arg(long, value_name = "INTEGRATION_ID")]
    pub integration: Option<String>,
    /// Include revoked keys.
    #[arg(long)]
    pub include_revoked: bool,
    /// Keys per page (1-500).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Start from this cursor (a previous page's next_cursor).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Follow next_cursor to the end.
    #[arg(long)]
    pub all: bool,
}

/// What to explain: a route (`--method` with `--path`) or a permission; clap's usage line
/// names both forms when neither is given.
#[derive(Args, Clone, Debug, Default)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["method", "permission"])))]
pub struct ExplainArgs {
    /// HTTP method of the route to explain (with --path).
    #[arg(long, requires = "path", conflicts_with = "permission")]
    pub method: Option<String>,
    /// Path of the route to explain, e.g. /v1/teams (with --method).
    #[arg(long, requires = "method")]
    pub path: Option<String>,
    /// A permission to explain, e.g. alerts:delete.
    #[arg(long)]
    pub permission: Option<String>,
    /// The team the permission is wanted in (with --permission).
    #[arg(long, value_name = "TEAM_ID", requires = "permission")]
    pub team: Option<String>,
    /// Explain for this key instead of the calling one (needs api_keys:read).
    #[arg(long, value_name = "KEY_ID")]
    pub key: Option<String>,
}

#[derive(Args, Clone, Debug, Default)]
pub struct AuditFilter {
    /// Events of requests made with this key (key_...).
    #[arg(long)]
    pub api_key_id: Option<String>,
    /// Events whose actor is this user, key or service account (usr_..., key_..., sa_...).
    #[arg(long)]
    pub actor_id: Option<String>,
    /// Events about this object (a key id: its rotations, revocation, requests addressing it).
    #[arg(long)]
    pub target_id: Option<String>,
    /// e.g. api_key.created, http.request.
    #[arg(long)]
    pub action: Option<String>,
    /// allowed, or a refusal code such as revoked_key.
    #[arg(long)]
    pub outcome: Option<String>,
    /// RFC 3339 time, or a duration back from now (24h, 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// RFC 3339 time, or a duration back from now (24h, 7d).
    #[arg(long)]
    pub until: Option<String>,
}

fn parse_kind(s: &str) -> Result<KeyKind, String> {
    KeyKind::parse(s).ok_or_else(|| {
        format!("`{s}` is not a key kind: personal, team, organization or integration")
    })
}

// ---------------------------------------------------------------------------------------------
// Failures and their one printer.

/// Why a command did not succeed. None of these ever holds the calling token.
#[derive(Debug)]
enum Failure {
    /// Found before anything was sent.
    Usage(String),
    /// The server could not be reached, or its answer could not be read.
    Network { url: String, detail: String },
    /// The server answered with an error status.
    Http { status: StatusCode, body: String },
    /// The server answered 2xx with something this client does not understand.
    Unexpected(String),
    /// A failure after an earlier step succeeded (a write accepted, then its status unreadable).
    After { done: String, failure: Box<Failure> },
    /// Standard output could not be written. A reader that has gone (`tocsin keys list |
    /// head`, a closed pipe) is no failure: the command ends quietly with exit code 0.
    Stdout(std::io::Error),
    /// A new token could not be written to standard output: it is lost, since the server
    /// never shows it again. `redo` says what to do.
    TokenNotWritten { error: std::io::Error, redo: String },
}

impl Failure {
    fn exit_code(&self) -> i32 {
        match self {
            Failure::Usage(_) => EXIT_USAGE,
            Failure::After { failure, .. } => failure.exit_code(),
            Failure::Stdout(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
            _ => EXIT_FAILED,
        }
    }

    /// The lines to print on stderr.
    fn lines(&self) -> Vec<String> {
        match self {
            Failure::Usage(msg) | Failure::Unexpected(msg) => vec![format!("error: {msg}")],
            Failure::Network { url, detail } => {
                vec![format!("error: could not reach {url}: {detail}")]
            }
            Failure::Http { status, body } => match api_error(body) {
                Some(e) => explain_error(*status, e),
                None => {
                    let text = body.trim();
                    let text = if text.is_empty() {
                        "(empty body)"
                    } else {
                        text
                    };
                    vec![format!(
                        "error: the server answered {status}: {}",
                        truncate(text, 2000)
                    )]
                }
            },
            Failure::After { done, failure } => {
                let mut lines = vec![format!("note: {done}")];
                lines.extend(failure.lines());
                lines
            }
            Failure::Stdout(e) if e.kind() == std::io::ErrorKind::BrokenPipe => vec![],
            Failure::Stdout(e) => vec![format!("error: cannot write to standard output: {e}")],
            Failure::TokenNotWritten { error, redo } => vec![format!(
                "error: the new token could not be written to standard output ({error}), and the server never shows it again; {redo}"
            )],
        }
    }
}

/// The explanation in an error body: the `error` object of a `/v1` body, or of a `/v2`
/// (Opsgenie) body, which carries it beside `message`, `code`, `errors` and `requestId`; for
/// an Opsgenie-shaped body without one, an object made of its `message` and `code`. The
/// per-field reasons end up in `fields`, the request id in `request_id`.
fn api_error(body: &str) -> Option<Map<String, Value>> {
    let v: Value = serde_json::from_str(body).ok()?;
    let mut e = match v.get("error") {
        Some(error) => {
            let e = error.as_object()?.clone();
            e.get("code")?.as_str()?;
            e.get("message")?.as_str()?;
            e
        }
        None => {
            let mut e = Map::new();
            if let Some(code) = v.get("code").filter(|c| !c.is_null()) {
                e.insert(
                    "code".into(),
                    json!(
                        code.as_str()
                            .map_or_else(|| code.to_string(), str::to_owned)
                    ),
                );
            }
            e.insert("message".into(), json!(v.get("message")?.as_str()?));
            e
        }
    };
    if !e.contains_key("fields")
        && let Some(errors) = v.get("errors").and_then(Value::as_object)
    {
        e.insert("fields".into(), Value::Object(errors.clone()));
    }
    for key in ["request_id", "requestId"] {
        if let Some(id) = v.get(key).filter(|id| !id.is_null()) {
            e.entry("request_id").or_insert_with(|| id.clone());
        }
    }
    Some(e)
}

/// The server's explanation: code and message, then fixes, offending fields, request id.
fn explain_error(status: StatusCode, e: Map<String, Value>) -> Vec<String> {
    let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
    let mut lines = vec![match s("code") {
        "" => format!("error ({}): {}", status.as_u16(), s("message")),
        code => format!("error: {code} ({}): {}", status.as_u16(), s("message")),
    }];
    if let Some(fields) = e.get("fields").and_then(Value::as_object) {
        for (field, reason) in fields {
            lines.push(format!("  field `{field}`: {}", text(reason)));
        }
    }
    for fix in e
        .get("fixes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        lines.push(format!("  fix: {}", text(fix)));
    }
    if let Some(url) = e.get("region_url").and_then(Value::as_str) {
        lines.push(format!("  region {}: {url}", s("region")));
    }
    if !s("request_id").is_empty() {
        lines.push(format!("  request id: {}", s("request_id")));
    }
    lines
}

fn report(f: &Failure) {
    for line in f.lines() {
        errln!("{line}");
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// The HTTP client.

struct Client {
    http: reqwest::Client,
    base: Url,
    /// `Bearer <token>`, marked sensitive.
    auth: HeaderValue,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &shown(&self.base))
            .finish_non_exhaustive()
    }
}

type Query = Vec<(&'static str, String)>;

impl Client {
    /// A client calling with the token of `--token` / `TOCSIN_TOKEN`.
    fn new(opts: &ClientOpts) -> Result<Self, Failure> {
        let token = opts
            .token
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Failure::Usage("no API token: set TOCSIN_TOKEN or pass --token".into())
            })?;
        Client::with_token(&opts.url, token)
    }

    fn with_token(url: &str, token: &str) -> Result<Self, Failure> {
        let base = base_url(url)?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            let why = Token::parse(token).err().map_or_else(
                || "it has characters HTTP headers cannot carry".to_owned(),
                |e| e.to_string(),
            );
            Failure::Usage(format!("the token cannot be sent: {why}"))
        })?;
        auth.set_sensitive(true);
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(60))
            .user_agent(concat!("tocsin-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Failure::Unexpected(format!("cannot start the HTTP client: {e}")))?;
        Ok(Client { http, base, auth })
    }

    fn url(&self, path: &[&str], query: &[(&'static str, String)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(path);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    async fn get(&self, path: &[&str], query: &[(&'static str, String)]) -> Result<Value, Failure> {
        self.send(Method::GET, path, query, None).await
    }

    async fn post(&self, path: &[&str], body: &Value) -> Result<Value, Failure> {
        self.send(Method::POST, path, &[], Some(body)).await
    }

    async fn send(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&'static str, String)],
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let url = self.url(path, query);
        let mut req = self
            .http
            .request(method.clone(), url.clone())
            .header(AUTHORIZATION, self.auth.clone());
        if let Some(body) = body {
            req = req.json(body);
        }
        let network = |e: reqwest::Error| Failure::Network {
            url: format!("{} ({method} {})", shown(&self.base), url.path()),
            detail: cause(&e),
        };
        let resp = req.send().await.map_err(network)?;
        let status = resp.status();
        let text = resp.text().await.map_err(network)?;
        if !status.is_success() {
            return Err(Failure::Http { status, body: text });
        }
        serde_json::from_str(&text).map_err(|e| {
            Failure::Unexpected(format!(
                "{} answered {status} to {method} {} with something that is not JSON ({e}): {}",
                shown(&self.base),
                url.path(),
                truncate(text.trim(), 200)
            ))
        })
    }

    /// Fetches a list, following `next_cursor` while `follow`, and hands each page's items to
    /// `each`, which returns whether to go on. Returns the last page's `next_cursor`.
    async fn pages(
        &self,
        path: &[&str],
        mut query: Query,
        follow: bool,
        mut each: impl FnMut(Vec<Value>) -> bool,
    ) -> Result<Option<String>, Failure> {
        loop {
            let page = self.get(path, &query).await?;
            let data = match page.get("data") {
                Some(Value::Array(items)) => items.clone(),
                _ => {
                    return Err(Failure::Unexpected(format!(
                        "the list at /{} has no `data` array",
                        path.join("/")
                    )));
                }
            };
            let go_on = each(data);
            let next = page
                .get("next_cursor")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let previous = query
                .iter()
                .find(|(k, _)| *k == "cursor")
                .map(|(_, v)| v.clone());
            match next {
                Some(cursor) if go_on && follow && previous.as_deref() != Some(cursor.as_str()) => {
                    query.retain(|(k, _)| *k != "cursor");
                    query.push(("cursor", cursor));
                }
                next => return Ok(next),
            }
        }
    }

    /// A whole list as one `{"data": [...], "next_cursor"}` value.
    async fn list(&self, path: &[&str], query: Query, all: bool) -> Result<Value, Failure> {
        let mut items = Vec::new();
        let next = self
            .pages(path, query, all, |page| {
                items.extend(page);
                true
            })
            .await?;
        Ok(json!({"data": items, "next_cursor": next}))
    }
}

fn base_url(raw: &str) -> Result<Url, Failure> {
    let bad = |why: &str| Failure::Usage(format!("--url / TOCSIN_URL `{raw}` {why}"));
    let url = Url::parse(raw.trim()).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    match url.scheme() {
        "http" | "https" if !url.cannot_be_a_base() && url.host().is_some() => Ok(url),
        _ => Err(bad("is not an http:// URL such as http://127.0.0.1:8080")),
    }
}

/// A URL fit to print: without any user name or password it may carry.
fn shown(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.as_str().trim_end_matches('/').to_owned()
}

/// The underlying reason of a transport error (connection refused, timeout, DNS...).
fn cause(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let msg = s.to_string();
        if !parts.iter().any(|p| p.contains(&msg)) {
            parts.push(msg);
        }
        source = s.source();
    }
    if e.is_timeout() {
        parts.insert(0, "timed out".into());
    }
    if parts.is_empty() {
        parts.push(if e.is_decode() || e.is_body() {
            "the answer could not be read".into()
        } else {
            e.to_string()
        });
    }
    parts.join(": ")
}

// ---------------------------------------------------------------------------------------------
// Requests built from flags (pure, tested below).

/// The `expires_at` that `--expires-in` or `--expires-at` give, if either does.
fn expiry(
    expires_in: Option<Duration>,
    expires_at: &Option<String>,
    now: OffsetDateTime,
) -> Result<Option<String>, String> {
    match (expires_in, expires_at) {
        (Some(d), None) => Ok(Some(fmt_rfc3339(now + d))),
        (None, Some(t)) => Ok(Some(t.trim().to_owned())),
        (Some(_), Some(_)) => Err("give --expires-in or --expires-at, not both".into()),
        (None, None) => Ok(None),
    }
}

fn create_body(a: &CreateArgs, now: OffsetDateTime) -> Result<Value, String> {
    let expires_at = expiry(a.expires_in, &a.expires_at, now)?.ok_or_else(|| {
        "every key expires: give --expires-in (30d, 1y) or --expires-at (RFC 3339)".to_owned()
    })?;
    let mut body = json!({
        "name": a.name,
        "kind": a.kind.name(),
        "role_names": a.roles,
        "team_role_names": a.team_roles,
        "expires_at": expires_at,
    });
    match (a.kind, a.teams.as_slice()) {
        (_, []) => {}
        (KeyKind::Team, [team]) => body["team_id"] = json!(team),
        (KeyKind::Team, _) => return Err("a team key belongs to one team: give --team once".into()),
        (KeyKind::Organization, teams) => body["team_ids"] = json!(teams),
        (kind, _) => {
            return Err(format!(
                "--team applies to team and organization keys, not {} keys",
                kind.name()
            ));
        }
    }
    if let Some(i) = &a.integration {
        body["integration_id"] = json!(i);
    }
    if let Some(d) = &a.description {
        body["description"] = json!(d);
    }
    if !a.allow_cidrs.is_empty() {
        body["allowed_cidrs"] = json!(a.allow_cidrs);
    }
    Ok(body)
}

/// The `PATCH` body of `keys update`: only the fields given.
fn update_body(a: &UpdateArgs, now: OffsetDateTime) -> Result<Value, String> {
    let mut body = Map::new();
    if let Some(n) = &a.name {
        body.insert("name".into(), json!(n));
    }
    if let Some(d) = &a.description {
        body.insert("description".into(), json!(d));
    }
    if let Some(e) = expiry(a.expires_in, &a.expires_at, now)? {
        body.insert("expires_at".into(), json!(e));
    }
    let lists = [
        ("role_names", &a.roles, a.no_roles),
        ("team_role_names", &a.team_roles, false),
        ("allowed_cidrs", &a.allow_cidrs, a.any_network),
    ];
    for (field, given, cleared) in lists {
        match (given, cleared) {
            (Some(v), _) => {
                body.insert(field.into(), json!(v));
            }
            (None, true) => {
                body.insert(field.into(), json!([]));
            }
            (None, false) => {}
        }
    }
    match (a.rate_limit, a.no_rate_limit) {
        (Some(n), _) => {
            body.insert("rate_limit".into(), json!(n));
        }
        (None, true) => {
            body.insert("rate_limit".into(), Value::Null);
        }
        (None, false) => {}
    }
    if body.is_empty() {
        return Err("nothing to change: give at least one of --name, --description, --expires-in, --expires-at, --role, --no-roles, --team-role, --allow-cidr, --any-network, --rate-limit, --no-rate-limit".into());
    }
    Ok(Value::Object(body))
}

fn page_query(q: &mut Query, limit: Option<u32>, cursor: &Option<String>, all: bool) {
    match (limit, all) {
        (Some(n), _) => q.push(("limit", n.to_string())),
        (None, true) => q.push(("limit", FULL_PAGE.to_string())),
        (None, false) => {}
    }
    if let Some(c) = cursor {
        q.push(("cursor", c.clone()));
    }
}

fn key_list_query(a: &ListArgs) -> Query {
    let mut q = Query::new();
    if let Some(k) = a.kind {
        q.push(("kind", k.name().to_owned()));
    }
    if let Some(t) = &a.team {
        q.push(("team_id", t.clone()));
    }
    if let Some(i) = &a.integration {
        q.push(("integration_id", i.clone()));
    }
    if a.include_revoked {
        q.push(("include_revoked", "true".into()));
    }
    page_query(&mut q, a.limit, &a.cursor, a.all);
    q
}

/// `--expires-in`: a duration, as for `--grace`, but never none: a key that expires as it
/// is made would be refused by the server with a less helpful message.
fn parse_lifetime(v: &str) -> Result<Duration, String> {
    let d = parse_duration(v)?;
    if d <= Duration::ZERO {
        return Err(format!(
            "`{}` would expire the key as it is made; give a lifetime such as 30d, 12h or 1y",
            v.trim()
        ));
    }
    Ok(d)
}

/// `since`/`until`: an RFC 3339 time as given, or a duration meaning that long ago.
fn audit_time(v: &str, now: OffsetDateTime) -> String {
    match parse_duration(v) {
        Ok(d) => fmt_rfc3339(now - d),
        Err(_) => v.trim().to_owned(),
    }
}

fn audit_query(f: &AuditFilter, now: OffsetDateTime) -> Query {
    let mut q = Query::new();
    let fields = [
        ("api_key_id", &f.api_key_id),
        ("actor_id", &f.actor_id),
        ("target_id", &f.target_id),
        ("action", &f.action),
        ("outcome", &f.outcome),
    ];
    for (k, v) in fields {
        if let Some(v) = v {
            q.push((k, v.clone()));
        }
    }
    for (k, v) in [("since", &f.since), ("until", &f.until)] {
        if let Some(v) = v {
            q.push((k, audit_time(v, now)));
        }
    }
    q
}

fn explain_body(a: &ExplainArgs) -> Result<Value, String> {
    let mut body = match (&a.method, &a.path, &a.permission) {
        (Some(m), Some(p), None) => json!({"method": m.to_uppercase(), "path": p}),
        (None, None, Some(perm)) => {
            let mut b = json!({"permission": perm});
            if let Some(t) = &a.team {
                b["team_id"] = json!(t);
            }
            b
        }
        _ => return Err("give --method with --path, or --permission [--team]".into()),
    };
    if let Some(k) = &a.key {
        body["key_id"] = json!(k);
    }
    Ok(body)
}

/// The `POST /v2/alerts` body of `alerts create`; only the fields given are sent.
fn alert_body(a: &AlertArgs) -> Result<Value, String> {
    if a.message.trim().is_empty() {
        return Err("--message must say something: it is the alert's title".into());
    }
    let mut body = json!({"message": a.message});
    let optional = [
        ("alias", &a.alias),
        ("priority", &a.priority),
        ("description", &a.description),
        ("note", &a.note),
    ];
    for (field, value) in optional {
        if let Some(v) = value {
            body[field] = json!(v);
        }
    }
    if !a.tags.is_empty() {
        body["tags"] = json!(a.tags);
    }
    if !a.responder_teams.is_empty() {
        body["responders"] = a
            .responder_teams
            .iter()
            .map(|name| json!({"type": "team", "name": name}))
            .collect();
    }
    Ok(body)
}

/// The query of `GET /v2/alerts`; only the flags given are sent.
fn alert_list_query(a: &AlertListArgs) -> Query {
    let mut q = Query::new();
    if let Some(v) = &a.query {
        q.push(("query", v.clone()));
    }
    if let Some(n) = a.limit {
        q.push(("limit", n.to_string()));
    }
    if let Some(n) = a.offset {
        q.push(("offset", n.to_string()));
    }
    if let Some(v) = &a.sort {
        q.push(("sort", v.clone()));
    }
    if let Some(v) = &a.order {
        q.push(("order", v.clone()));
    }
    q
}

/// The body of an action (`acknowledge`, `close`): `{}` or `{"note"}`.
fn alert_action_body(note: Option<&str>) -> Value {
    match note {
        Some(n) => json!({"note": n}),
        None => json!({}),
    }
}

/// An alert identifier fit for a URL path: not empty, and not `.` or `..`, which URLs
/// cannot carry as a path segment (they would name another route).
fn alert_identifier(id: &str) -> Result<&str, String> {
    match id {
        "" => Err("give the alert's id, tiny id or alias".into()),
        "." | ".." => Err(format!(
            "`{id}` cannot be sent as an alert identifier in a URL path"
        )),
        id => Ok(id),
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering (pure, tested below).

/// A JSON value as table text: null `-`, lists joined, actors by name.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        Value::Object(o) => match (
            o.get("name").and_then(Value::as_str),
            o.get("type").and_then(Value::as_str),
        ) {
            (Some(name), Some(kind)) => format!("{name} ({kind})"),
            (Some(name), None) => name.to_owned(),
            _ if o.is_empty() => "-".into(),
            _ => o
                .iter()
                .map(|(k, v)| format!("{k}: {}", text(v)))
                .collect::<Vec<_>>()
                .join("\n"),
        },
        other => other.to_string(),
    }
}

fn time_field(v: &Value, field: &str) -> Option<OffsetDateTime> {
    v.get(field)
        .and_then(Value::as_str)
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
}

/// revoked, expired, disabled, rotating (in a grace period) or active.
fn key_status(key: &Value, now: OffsetDateTime) -> &'static str {
    if key.get("revoked_at").is_some_and(|v| !v.is_null()) {
        "revoked"
    } else if time_field(key, "expires_at").is_some_and(|t| t <= now) {
        "expired"
    } else if key.get("status").and_then(Value::as_str) == Some("disabled") {
        // Only the server knows (the key's user is deactivated, its integration disabled).
        "disabled"
    } else if time_field(key, "grace_period_ends_at").is_some_and(|t| t > now) {
        "rotating"
    } else {
        "active"
    }
}

/// Account roles, then team roles marked as such.
fn roles_text(v: &Value) -> String {
    let names = |field: &str| -> Vec<String> {
        v.get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    let mut all = names("role_names");
    all.extend(
        names("team_role_names")
            .into_iter()
            .map(|r| format!("{r} (team)")),
    );
    if all.is_empty() {
        "-".into()
    } else {
        all.join(", ")
    }
}

fn new_table() -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    t
}

fn list_table(items: &[Value], columns: &[&str], cell: impl Fn(&Value, &str) -> String) -> Table {
    let mut t = new_table();
    t.set_header(columns.to_vec());
    for item in items {
        t.add_row(columns.iter().map(|c| cell(item, c)).collect::<Vec<_>>());
    }
    t
}

/// One object as `field | value` rows, in the given order, with any `extra` rows first.
fn fields_table(v: &Value, fields: &[&str], extra: &[(&str, String)]) -> Table {
    let mut t = new_table();
    for (k, val) in extra {
        t.add_row(vec![k.to_string(), val.clone()]);
    }
    for f in fields {
        t.add_row(vec![f.to_string(), text(v.get(*f).unwrap_or(&Value::Null))]);
    }
    t
}

const KEY_COLUMNS: &[&str] = &[
    "id",
    "name",
    "kind",
    "roles",
    "expires_at",
    "last_used_at",
    "status",
];

fn key_cell(key: &Value, column: &str, now: OffsetDateTime) -> String {
    match column {
        "roles" => roles_text(key),
        "status" => key_status(key, now).into(),
        "last_used_at" if key.get(column).is_none_or(Value::is_null) => "never".into(),
        c => text(key.get(c).unwrap_or(&Value::Null)),
    }
}

const KEY_FIELDS: &[&str] = &[
    "id",
    "name",
    "description",
    "kind",
    "team_id",
    "team_ids",
    "integration_id",
    "user_id",
    "service_account_id",
    "role_names",
    "team_role_names",
    "permissions",
    "team_permissions",
    "region",
    "token_hint",
    "created_at",
    "created_by",
    "updated_at",
    "expires_at",
    "token_last_issued_at",
    "grace_period_ends_at",
    "last_used_at",
    "last_used_ip",
    "revoked_at",
    "revoked_by",
    "allowed_cidrs",
];

const WHOAMI_FIELDS: &[&str] = &[
    "id",
    "name",
    "kind",
    "organization",
    "team_id",
    "integration_id",
    "user_id",
    "user_role_name",
    "region",
    "role_names",
    "team_role_names",
    "permissions",
    "team_permissions",
    "expires_at",
    "grace_period_ends_at",
    "created_by",
];

const AUDIT_COLUMNS: &[&str] = &[
    "occurred_at",
    "action",
    "outcome",
    "status",
    "method",
    "route",
    "actor",
    "api_key_id",
];

fn audit_cell(event: &Value, column: &str) -> String {
    match column {
        "actor" => event
            .get("actor")
            .and_then(|a| a.get("name"))
            .map_or_else(|| "-".into(), text),
        c => text(event.get(c).unwrap_or(&Value::Null)),
    }
}

fn explain_lines(v: &Value) -> Vec<String> {
    let allowed = v.get("allowed").and_then(Value::as_bool).unwrap_or(false);
    let mut head = if allowed {
        "ALLOWED".to_owned()
    } else {
        "REFUSED".to_owned()
    };
    if let Some(code) = v.get("code").and_then(Value::as_str) {
        head.push_str(&format!(" ({code})"));
    }
    let about: Vec<&str> = ["permission", "route"]
        .iter()
        .filter_map(|k| v.get(*k).and_then(Value::as_str))
        .collect();
    if !about.is_empty() {
        head.push_str(&format!(": {}", about.join(" on ")));
    }
    let mut lines = vec![head];
    for (title, field) in [("Reasons:", "reasons"), ("Fixes:", "fixes")] {
        let items = v
            .get(field)
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty());
        if let Some(items) = items {
            lines.push(title.into());
            lines.extend(items.iter().map(|i| format!("  - {}", text(i))));
        }
    }
    lines
}

const ALERT_COLUMNS: &[&str] = &[
    "tinyId",
    "status",
    "acknowledged",
    "priority",
    "count",
    "message",
    "createdAt",
];

/// Characters of a message shown in the list table.
const MESSAGE_WIDTH: usize = 60;

const ALERT_FIELDS: &[&str] = &[
    "id",
    "tinyId",
    "alias",
    "message",
    "status",
    "acknowledged",
    "isSeen",
    "snoozed",
    "snoozedUntil",
    "priority",
    "count",
    "tags",
    "source",
    "owner",
    "ownerTeamId",
    "responders",
    "teams",
    "integration",
    "entity",
    "actions",
    "details",
    "description",
    "report",
    "createdAt",
    "updatedAt",
    "lastOccurredAt",
];

/// One field of an alert as table text.
fn alert_cell(alert: &Value, field: &str) -> String {
    let v = alert.get(field).unwrap_or(&Value::Null);
    let items = || v.as_array().into_iter().flatten();
    match field {
        "message" => truncate(&text(v), MESSAGE_WIDTH),
        // [{type, id}], shown as `team 0190…`.
        "responders" if v.as_array().is_some_and(|a| !a.is_empty()) => items()
            .map(
                |r| match (r["type"].as_str(), r.get("id").or(r.get("name"))) {
                    (Some(kind), Some(id)) => format!("{kind} {}", text(id)),
                    _ => text(r),
                },
            )
            .collect::<Vec<_>>()
            .join(", "),
        // [{id}]
        "teams" if v.as_array().is_some_and(|a| !a.is_empty()) => items()
            .map(|t| text(t.get("id").unwrap_or(t)))
            .collect::<Vec<_>>()
            .join(", "),
        "description" | "entity" | "owner" | "source" if v.as_str() == Some("") => "-".into(),
        _ => text(v),
    }
}

/// The offset of a `paging.next` link, to tell the user how to get the next page.
fn next_offset(list: &Value) -> Option<String> {
    let next = Url::parse(list.get("paging")?.get("next")?.as_str()?).ok()?;
    next.query_pairs()
        .find(|(k, _)| k == "offset")
        .map(|(_, v)| v.into_owned())
}

/// What became of a 202: whether it succeeded, and the lines to print (stdout on success,
/// stderr on failure). `done` is the past tense of the action, e.g. "Acknowledged".
fn outcome_lines(status: &Value, request_id: &str, done: &str) -> (bool, Vec<String>) {
    let s = |k: &str| status.get(k).and_then(Value::as_str).unwrap_or("");
    let ok = status
        .get("isSuccess")
        .or(status.get("success"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut alert = s("alertId").to_owned();
    if !s("alias").is_empty() && s("alias") != s("alertId") {
        alert.push_str(&format!(" (alias {})", s("alias")));
    }
    let said = match s("status") {
        "" => "no status given".to_owned(),
        t => t.to_owned(),
    };
    if !ok {
        let action = match s("action") {
            "" => "The request",
            a => a,
        };
        let mut lines = vec![format!("error: {action} failed: {said}")];
        if !alert.is_empty() {
            lines.push(format!("  alert: {alert}"));
        }
        if !request_id.is_empty() {
            lines.push(format!("  request id: {request_id}"));
        }
        return (false, lines);
    }
    let line = if s("action") == "Create" && said.contains("already exists") {
        format!("Deduplicated into open alert {alert}: {said}")
    } else {
        format!("{done} alert {alert}: {said}")
    };
    (true, vec![line])
}

/// Writes one line to standard output and flushes it. `println!` panics when the reader has
/// gone (`tocsin keys list --json | head`); this answers `Failure::Stdout` instead, which
/// ends the command quietly for a closed pipe.
fn out(line: fmt::Arguments) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(Failure::Stdout)
}

/// `println!` for the client commands, through `out` (and `?`).
macro_rules! outln {
    ($($arg:tt)*) => {
        out(format_args!($($arg)*))?
    };
}

fn print_json(v: &Value) -> Result<(), Failure> {
    outln!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
    Ok(())
}

/// A create or rotate answer with `--json`: the token comes first, so that a reader that
/// stops early (`| head -c 100`) still has it, then the rest of the answer.
fn print_json_token_first(answer: &Value, redo: &str) -> Result<(), Failure> {
    #[derive(serde::Serialize)]
    struct TokenFirst<'a> {
        token: &'a Value,
        #[serde(flatten)]
        rest: Map<String, Value>,
    }
    let mut rest = answer.as_object().cloned().unwrap_or_default();
    let token = rest.remove("token").unwrap_or(Value::Null);
    let text = serde_json::to_string_pretty(&TokenFirst {
        token: &token,
        rest,
    })
    .unwrap_or_else(|_| answer.to_string());
    token_written(out(format_args!("{text}")), redo)
}

/// The outcome of writing a new token: a failure, a closed pipe included, is reported on
/// standard error with what to do about the lost token (`redo`).
fn token_written(written: Result<(), Failure>, redo: &str) -> Result<(), Failure> {
    written.map_err(|f| match f {
        Failure::Stdout(error) => Failure::TokenNotWritten {
            error,
            redo: redo.to_owned(),
        },
        other => other,
    })
}

// ---------------------------------------------------------------------------------------------
// The commands.

/// Runs a client command; returns the process exit code (0 success, 1 failed or refused,
/// 2 not sent because of the flags).
pub async fn run(cmd: ClientCommand) -> i32 {
    let result = match cmd {
        ClientCommand::Keys { cmd } => keys(cmd).await,
        ClientCommand::Alerts { cmd } => alerts(cmd).await,
        ClientCommand::Whoami { opts } => whoami(&opts).await,
        ClientCommand::Explain {
            explain: args,
            opts,
        } => explain(&args, &opts).await,
        ClientCommand::Doctor {
            token,
            offline,
            opts,
        } => doctor(token, offline, &opts).await,
        ClientCommand::Audit { cmd } => audit(cmd).await,
    };
    exit_code(result)
}

fn exit_code(result: Result<i32, Failure>) -> i32 {
    result.unwrap_or_else(|f| {
        report(&f);
        f.exit_code()
    })
}

async fn keys(cmd: KeysCommand) -> Result<i32, Failure> {
    let now = OffsetDateTime::now_utc();
    match cmd {
        KeysCommand::Create { key, opts } => {
            let body = create_body(&key, now).map_err(Failure::Usage)?;
            let created = Client::new(&opts)?.post(&["v1", "api_keys"], &body).await?;
            let id = text(&created["api_key"]["id"]);
            let redo = format!(
                "the key {id} was created: revoke it (`tocsin keys revoke {id}`) and create another"
            );
            if opts.json {
                print_json_token_first(&created, &redo)?;
            } else {
                print_new_token(&created, "Created", &redo)?;
            }
        }
        KeysCommand::List { filter, opts } => {
            let list = Client::new(&opts)?
                .list(&["v1", "api_keys"], key_list_query(&filter), filter.all)
                .await?;
            if opts.json {
                print_json(&list)?;
            } else {
                let items = list["data"].as_array().cloned().unwrap_or_default();
                if items.is_empty() {
                    outln!("no keys");
                } else {
                    outln!(
                        "{}",
                        list_table(&items, KEY_COLUMNS, |k, c| key_cell(k, c, now))
                    );
                }
                if let Some(next) = list["next_cursor"].as_str() {
                    errln!("more keys: add --cursor {next}, or --all");
                }
            }
        }
        KeysCommand::Show { id, opts } => {
            let key = Client::new(&opts)?
                .get(&["v1", "api_keys", &id], &[])
                .await?;
            if opts.json {
                print_json(&key)?;
            } else {
                outln!(
                    "{}",
                    fields_table(
                        &key,
                        KEY_FIELDS,
                        &[("status", key_status(&key, now).into())]
                    )
                );
            }
        }
        KeysCommand::Update { id, change, opts } => {
            let body = update_body(&change, now).map_err(Failure::Usage)?;
            let key = Client::new(&opts)?
                .send(Method::PATCH, &["v1", "api_keys", &id], &[], Some(&body))
                .await?;
            if opts.json {
                print_json(&key)?;
            } else {
                outln!("Updated key {} ({}).", text(&key["id"]), text(&key["name"]));
                outln!(
                    "{}",
                    fields_table(
                        &key,
                        KEY_FIELDS,
                        &[("status", key_status(&key, now).into())]
                    )
                );
            }
        }
        KeysCommand::Rotate { id, grace, opts } => {
            let body = json!({"grace_period_seconds": grace.whole_seconds()});
            let rotated = Client::new(&opts)?
                .post(&["v1", "api_keys", &id, "rotate"], &body)
                .await?;
            let redo = format!(
                "the key {id} was rotated: rotate it again (`tocsin keys rotate {id}`) to get a token you can keep"
            );
            if opts.json {
                print_json_token_first(&rotated, &redo)?;
            } else {
                print_new_token(&rotated, "Rotated", &redo)?;
                match rotated["api_key"]["grace_period_ends_at"].as_str() {
                    Some(t) => outln!("The previous token keeps working until {t}."),
                    None => outln!("The previous token no longer works."),
                }
            }
        }
        KeysCommand::Revoke { id, opts } => {
            let key = Client::new(&opts)?
                .post(&["v1", "api_keys", &id, "revoke"], &json!({}))
                .await?;
            if opts.json {
                print_json(&key)?;
            } else {
                outln!(
                    "Revoked key {} ({}) at {}; none of its tokens work any more.",
                    text(&key["id"]),
                    text(&key["name"]),
                    text(&key["revoked_at"])
                );
            }
        }
    }
    Ok(0)
}

async fn alerts(cmd: AlertsCommand) -> Result<i32, Failure> {
    match cmd {
        AlertsCommand::Create { alert, opts } => {
            let body = alert_body(&alert).map_err(Failure::Usage)?;
            let client = Client::new(&opts)?;
            let accepted = client.post(&["v2", "alerts"], &body).await?;
            return print_outcome(&client, &accepted, "Created", opts.json).await;
        }
        AlertsCommand::List { filter, opts } => {
            let list = Client::new(&opts)?
                .get(&["v2", "alerts"], &alert_list_query(&filter))
                .await?;
            if opts.json {
                print_json(&list)?;
                return Ok(0);
            }
            let items = list["data"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                outln!("no alerts");
            } else {
                outln!("{}", list_table(&items, ALERT_COLUMNS, alert_cell));
            }
            if let Some(offset) = next_offset(&list) {
                errln!("more alerts: add --offset {offset}");
            }
        }
        AlertsCommand::Show { id, by, opts } => {
            let id = alert_identifier(&id).map_err(Failure::Usage)?;
            let alert = Client::new(&opts)?
                .get(
                    &["v2", "alerts", id],
                    &[("identifierType", by.name().to_owned())],
                )
                .await?;
            if opts.json {
                print_json(&alert)?;
                return Ok(0);
            }
            let data = &alert["data"];
            let mut t = new_table();
            for f in ALERT_FIELDS {
                if data.get(*f).is_some() {
                    t.add_row(vec![f.to_string(), alert_cell(data, f)]);
                }
            }
            outln!("{t}");
        }
        AlertsCommand::Ack { target, opts } => {
            return alert_action(&target, "acknowledge", "Acknowledged", &opts).await;
        }
        AlertsCommand::Close { target, opts } => {
            return alert_action(&target, "close", "Closed", &opts).await;
        }
    }
    Ok(0)
}

/// `POST /v2/alerts/{id}/{action}`, then what became of it.
async fn alert_action(
    target: &AlertTarget,
    action: &str,
    done: &str,
    opts: &ClientOpts,
) -> Result<i32, Failure> {
    let id = alert_identifier(&target.id).map_err(Failure::Usage)?;
    let client = Client::new(opts)?;
    let accepted = client
        .send(
            Method::POST,
            &["v2", "alerts", id, action],
            &[("identifierType", target.by.name().to_owned())],
            Some(&alert_action_body(target.note.as_deref())),
        )
        .await?;
    print_outcome(&client, &accepted, done, opts.json).await
}

/// Reads the status of an accepted (202) request once and prints it: the status object with
/// --json, else one line. Exits non-zero when the server reports the request failed.
async fn print_outcome(
    client: &Client,
    accepted: &Value,
    done: &str,
    json: bool,
) -> Result<i32, Failure> {
    let request_id = accepted
        .get("requestId")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            Failure::Unexpected(format!(
                "the server accepted the request but named no requestId to follow it: {}",
                truncate(&accepted.to_string(), 200)
            ))
        })?;
    let after = |failure: Failure| Failure::After {
        done: format!(
            "the server accepted the request (request id {request_id}), but what became of it could not be read"
        ),
        failure: Box::new(failure),
    };
    let answer = client
        .get(&["v2", "alerts", "requests", request_id], &[])
        .await
        .map_err(after)?;
    let status = match answer.get("data") {
        Some(d @ Value::Object(_)) => d.clone(),
        _ => {
            return Err(after(Failure::Unexpected(
                "the request status has no `data` object".into(),
            )));
        }
    };
    let (ok, lines) = outcome_lines(&status, request_id, done);
    if json {
        print_json(&status)?;
    }
    for line in lines {
        if !ok {
            errln!("{line}");
        } else if !json {
            outln!("{line}");
        }
    }
    Ok(if ok { 0 } else { EXIT_FAILED })
}

/// The one place a new token is printed: the first line of standard output, alone (as
/// `init` and `orgs create` print theirs, so `| head -1` takes it), flushed before anything
/// else is written, so that a reader that stops early has it; standard error then says it is
/// shown only once, and standard output names the key it belongs to. If the token cannot be
/// written, standard error says so and what to do (`redo`).
fn print_new_token(answer: &Value, verb: &str, redo: &str) -> Result<(), Failure> {
    let token = answer["token"]
        .as_str()
        .ok_or_else(|| Failure::Unexpected("the server's answer carries no token".into()))?;
    let key = &answer["api_key"];
    token_written(out(format_args!("{token}")), redo)?;
    errln!(
        "The line above is the key's new token, shown only this once: store it now, it cannot be shown again."
    );
    outln!(
        "{verb} {} key {} ({})",
        text(&key["kind"]),
        text(&key["name"]),
        text(&key["id"])
    );
    outln!("expires_at: {}", text(&key["expires_at"]));
    Ok(())
}

async fn whoami(opts: &ClientOpts) -> Result<i32, Failure> {
    let me = Client::new(opts)?
        .get(&["v1", "auth", "whoami"], &[])
        .await?;
    if opts.json {
        print_json(&me)?;
    } else {
        outln!("{}", fields_table(&me, WHOAMI_FIELDS, &[]));
    }
    Ok(0)
}

async fn explain(args: &ExplainArgs, opts: &ClientOpts) -> Result<i32, Failure> {
    let body = explain_body(args).map_err(Failure::Usage)?;
    let answer = Client::new(opts)?
        .post(&["v1", "auth", "explain"], &body)
        .await?;
    if opts.json {
        print_json(&answer)?;
    } else {
        for line in explain_lines(&answer) {
            outln!("{line}");
        }
    }
    Ok(0)
}

async fn audit(cmd: AuditClientCommand) -> Result<i32, Failure> {
    let now = OffsetDateTime::now_utc();
    let path = ["v1", "audit_events"];
    match cmd {
        AuditClientCommand::Verify { server, json } => {
            return Ok(crate::audit_verify(server, json).await);
        }
        AuditClientCommand::Refusals {
            server,
            since,
            outcome,
        } => {
            if let Some(code) = &outcome
                && !tocsin_server::error::OUTCOMES.contains(&code.as_str())
            {
                return Err(Failure::Usage(format!(
                    "invalid `--outcome`: `{code}` is not a code the trail records, such as unknown_key, malformed_token or missing_credentials"
                )));
            }
            let since = match since {
                None => None,
                Some(v) => Some(
                    OffsetDateTime::parse(&audit_time(&v, now), &Rfc3339).map_err(|_| {
                        Failure::Usage(format!(
                            "invalid `--since`: `{v}` is neither an RFC 3339 time nor a duration such as 24h or 7d"
                        ))
                    })?,
                ),
            };
            return Ok(crate::audit_refusals(server, since, outcome).await);
        }
        AuditClientCommand::List {
            filter,
            limit,
            cursor,
            all,
            opts,
        } => {
            let mut q = audit_query(&filter, now);
            page_query(&mut q, limit, &cursor, all);
            let list = Client::new(&opts)?.list(&path, q, all).await?;
            if opts.json {
                print_json(&list)?;
            } else {
                let items = list["data"].as_array().cloned().unwrap_or_default();
                if items.is_empty() {
                    outln!("no audit events");
                } else {
                    outln!("{}", list_table(&items, AUDIT_COLUMNS, audit_cell));
                }
                if let Some(next) = list["next_cursor"].as_str() {
                    errln!("more events: add --cursor {next}, or --all");
                }
            }
        }
        AuditClientCommand::Export { filter, opts } => {
            let mut q = audit_query(&filter, now);
            page_query(&mut q, None, &None, true);
            let client = Client::new(&opts)?;
            let mut out = std::io::stdout().lock();
            let mut written = Ok(());
            client
                .pages(&path, q, true, |events| {
                    written = events
                        .iter()
                        .try_for_each(|e| writeln!(out, "{e}"))
                        .and_then(|()| out.flush());
                    written.is_ok()
                })
                .await?;
            match written {
                // The reader has had enough (`audit export | head`): not a failure.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(Failure::Unexpected(format!("cannot write the export: {e}")));
                }
                _ => {}
            }
        }
    }
    Ok(0)
}

// ---------------------------------------------------------------------------------------------
// doctor

/// What can be told about a token without the network.
fn doctor_offline(token: &str) -> Value {
    match Token::parse(token) {
        Ok(t) => {
            json!({"well_formed": true, "kind": t.kind().name(), "region": t.region(), "hint": t.hint()})
        }
        Err(e) => json!({"well_formed": false, "error": e.to_string()}),
    }
}

/// Asks the server what it makes of the token: `whoami` with that token.
async fn doctor_online(url: &str, token: &str) -> Result<Value, Failure> {
    let client = Client::with_token(url, token)?;
    let shown_url = shown(&client.base);
    Ok(match client.get(&["v1", "auth", "whoami"], &[]).await {
        Ok(me) => {
            json!({"url": shown_url, "reachable": true, "usable": true, "status": 200, "whoami": me})
        }
        Err(Failure::Http { status, body }) => {
            let error = api_error(&body).map(Value::Object).unwrap_or_else(
                || json!({"code": null, "message": format!("the server answered {status}: {}", truncate(body.trim(), 500))}),
            );
            json!({"url": shown_url, "reachable": true, "usable": false, "status": status.as_u16(), "error": error})
        }
        Err(Failure::Network { url, detail }) => json!({
            "url": shown_url, "reachable": false, "usable": false, "status": null,
            "error": {"code": null, "message": format!("could not reach {url}: {detail}")},
        }),
        Err(other) => return Err(other),
    })
}

fn doctor_lines(offline: &Value, online: Option<&Value>, now: OffsetDateTime) -> Vec<String> {
    let s = |v: &Value, k: &str| text(v.get(k).unwrap_or(&Value::Null));
    let row = |k: &str, v: String| format!("  {k:<12} {v}");
    let mut lines = vec!["offline (nothing sent):".to_owned()];
    if offline["well_formed"] == true {
        lines.push(row(
            "shape",
            "OK: prefix, kind, region, length and checksum are valid".into(),
        ));
        lines.push(row("kind", s(offline, "kind")));
        lines.push(row("region", s(offline, "region")));
        lines.push(row("hint", format!("…{}", s(offline, "hint"))));
    } else {
        lines.push(row("shape", format!("MALFORMED: {}", s(offline, "error"))));
        lines.push(row(
            "",
            "a server answers such a token with malformed_token; copy it again, whole".into(),
        ));
    }
    let Some(online) = online else { return lines };
    lines.push(format!("online ({}):", s(online, "url")));
    if online["usable"] == true {
        let me = &online["whoami"];
        let mut status = format!("active, expires {}", s(me, "expires_at"));
        if let Some(t) = time_field(me, "expires_at") {
            let days = (t - now).whole_days();
            status.push_str(&format!(
                " (in {days} day{})",
                if days == 1 { "" } else { "s" }
            ));
        }
        lines.push(row("status", status));
        if let Some(g) = me["grace_period_ends_at"].as_str() {
            lines.push(row(
                "rotation",
                format!("in a grace period until {g}; only one token works after it"),
            ));
        }
        lines.push(row(
            "key",
            format!("{} {} ({})", s(me, "kind"), s(me, "name"), s(me, "id")),
        ));
        lines.push(row("organization", s(me, "organization")));
        lines.push(row("roles", roles_text(me)));
        lines.push(row("permissions", s(me, "permissions")));
        if me["team_permissions"]
            .as_object()
            .is_some_and(|m| !m.is_empty())
        {
            lines.push(row(
                "in teams",
                s(me, "team_permissions").replace('\n', "; "),
            ));
        }
    } else {
        let e = &online["error"];
        let status = match e["code"].as_str() {
            Some(code) => format!("REFUSED: {code} ({})", s(online, "status")),
            None if online["reachable"] == false => {
                "UNKNOWN: the server could not be reached".into()
            }
            None => format!("REFUSED ({})", s(online, "status")),
        };
        lines.push(row("status", status));
        lines.push(row("message", s(e, "message")));
        for fix in e["fixes"].as_array().into_iter().flatten() {
            lines.push(row("fix", text(fix)));
        }
        if let Some(url) = e["region_url"].as_str() {
            lines.push(row("use", url.to_owned()));
        }
    }
    lines
}

async fn doctor(
    token: Option<String>,
    offline_only: bool,
    opts: &ClientOpts,
) -> Result<i32, Failure> {
    let token = token.or_else(|| opts.token.clone()).ok_or_else(|| {
        Failure::Usage(
            "give the token to diagnose: tocsin doctor <TOKEN> (or set TOCSIN_TOKEN)".into(),
        )
    })?;
    let offline = doctor_offline(&token);
    let well_formed = offline["well_formed"] == true;
    // A malformed token cannot be sent usefully (or, with line breaks, at all).
    let online = if offline_only || !well_formed {
        None
    } else {
        Some(doctor_online(&opts.url, &token).await?)
    };
    let usable = match &online {
        Some(o) => o["usable"] == true,
        None => well_formed,
    };
    if opts.json {
        print_json(&json!({"offline": offline, "online": online}))?;
    } else {
        for line in doctor_lines(&offline, online.as_ref(), OffsetDateTime::now_utc()) {
            outln!("{line}");
        }
    }
    Ok(if usable { 0 } else { EXIT_FAILED })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};
    use tocsin_core::token::TokenKind;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: ClientCommand,
    }

    fn parse(args: &[&str]) -> Result<ClientCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("tocsin").chain(args.iter().copied())).map(|c| c.cmd)
    }

    fn create_args(args: &[&str]) -> CreateArgs {
        match parse(&[&["keys", "create", "--name", "k"], args].concat()) {
            Ok(ClientCommand::Keys {
                cmd: KeysCommand::Create { key, .. },
            }) => key,
            Ok(_) => panic!("not keys create"),
            Err(e) => panic!("{e}"),
        }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse("2026-01-01T00:00:00Z", &Rfc3339).unwrap()
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    fn update_args(args: &[&str]) -> Result<UpdateArgs, clap::Error> {
        match parse(&[&["keys", "update", "key_1"], args].concat())? {
            ClientCommand::Keys {
                cmd: KeysCommand::Update { change, .. },
            } => Ok(change),
            _ => panic!("not keys update"),
        }
    }

    #[test]
    fn update_sends_only_what_is_given() {
        let a = update_args(&["--name", "renamed", "--expires-in", "30d"]).unwrap();
        assert_eq!(
            update_body(&a, now()).unwrap(),
            json!({"name": "renamed", "expires_at": "2026-01-31T00:00:00.000Z"})
        );
        let a = update_args(&[
            "--role",
            "viewer",
            "--role",
            "responder",
            "--team-role",
            "responder",
            "--allow-cidr",
            "10.0.0.0/8",
            "--rate-limit",
            "60",
            "--description",
            "",
        ])
        .unwrap();
        assert_eq!(
            update_body(&a, now()).unwrap(),
            json!({
                "role_names": ["viewer", "responder"], "team_role_names": ["responder"],
                "allowed_cidrs": ["10.0.0.0/8"], "rate_limit": 60, "description": "",
            })
        );
        // Clearing is said outright: an empty list, and null for no limit.
        let a = update_args(&["--no-roles", "--any-network", "--no-rate-limit"]).unwrap();
        assert_eq!(
            update_body(&a, now()).unwrap(),
            json!({"role_names": [], "allowed_cidrs": [], "rate_limit": null})
        );
        let a = update_args(&["--expires-at", " 2027-01-01T00:00:00Z "]).unwrap();
        assert_eq!(
            update_body(&a, now()).unwrap(),
            json!({"expires_at": "2027-01-01T00:00:00Z"})
        );
        let nothing = update_body(&update_args(&[]).unwrap(), now()).unwrap_err();
        assert!(nothing.contains("nothing to change"), "{nothing}");
        for clash in [
            &["--role", "viewer", "--no-roles"][..],
            &["--allow-cidr", "10.0.0.0/8", "--any-network"],
            &["--rate-limit", "5", "--no-rate-limit"],
            &["--expires-in", "1d", "--expires-at", "2027-01-01T00:00:00Z"],
        ] {
            assert!(update_args(clash).is_err(), "{clash:?} parsed");
        }
        assert!(update_args(&["--expires-in", "0"]).is_err());
    }

    #[test]
    fn create_maps_flags_to_the_body() {
        let a = create_args(&[
            "--role",
            "viewer",
            "--role",
            "responder",
            "--expires-in",
            "30d",
            "--allow-cidr",
            "10.0.0.0/8",
        ]);
        let body = create_body(&a, now()).unwrap();
        assert_eq!(
            body,
            json!({
                "name": "k", "kind": "personal", "role_names": ["viewer", "responder"], "team_role_names": [],
                "expires_at": "2026-01-31T00:00:00.000Z", "allowed_cidrs": ["10.0.0.0/8"],
            })
        );

        let a = create_args(&[
            "--kind",
            "team",
            "--team",
            "t1",
            "--team-role",
            "responder",
            "--expires-at",
            "2027-01-01T00:00:00Z",
        ]);
        let body = create_body(&a, now()).unwrap();
        assert_eq!(body["team_id"], "t1");
        assert_eq!(body["team_role_names"], json!(["responder"]));
        assert_eq!(body["expires_at"], "2027-01-01T00:00:00Z");
        assert!(body.get("team_ids").is_none() && body.get("description").is_none());

        let a = create_args(&[
            "--kind",
            "organization",
            "--team",
            "t1",
            "--team",
            "t2",
            "--team-role",
            "viewer",
            "--expires-in",
            "1y",
        ]);
        let body = create_body(&a, now()).unwrap();
        assert_eq!(body["team_ids"], json!(["t1", "t2"]));
        assert!(body.get("team_id").is_none());
        assert_eq!(body["expires_at"], "2027-01-01T00:00:00.000Z");

        let a = create_args(&[
            "--kind",
            "integration",
            "--integration",
            "int_1",
            "--description",
            "ci",
            "--expires-in",
            "12h",
        ]);
        let body = create_body(&a, now()).unwrap();
        assert_eq!(body["integration_id"], "int_1");
        assert_eq!(body["description"], "ci");
        assert_eq!(body["expires_at"], "2026-01-01T12:00:00.000Z");
    }

    #[test]
    fn create_refuses_what_it_cannot_map() {
        let two = create_args(&[
            "--kind",
            "team",
            "--team",
            "a",
            "--team",
            "b",
            "--expires-in",
            "1d",
        ]);
        assert!(create_body(&two, now()).unwrap_err().contains("one team"));
        let personal = create_args(&["--team", "a", "--expires-in", "1d"]);
        assert!(
            create_body(&personal, now())
                .unwrap_err()
                .contains("personal")
        );
        // Expiry: one of the two is required, not both; durations are checked by clap.
        assert!(parse(&["keys", "create", "--name", "k"]).is_err());
        assert!(
            parse(&[
                "keys",
                "create",
                "--name",
                "k",
                "--expires-in",
                "1d",
                "--expires-at",
                "2027-01-01T00:00:00Z"
            ])
            .is_err()
        );
        let bad = parse(&[
            "keys",
            "create",
            "--name",
            "k",
            "--expires-in",
            "3 fortnights",
        ])
        .err()
        .unwrap();
        assert!(bad.to_string().contains("fortnights"));
        assert!(
            parse(&[
                "keys",
                "create",
                "--name",
                "k",
                "--kind",
                "robot",
                "--expires-in",
                "1d"
            ])
            .is_err()
        );
    }

    #[test]
    fn durations() {
        match parse(&["keys", "rotate", "key_1", "--grace", "1h"]).unwrap() {
            ClientCommand::Keys {
                cmd: KeysCommand::Rotate { grace, .. },
            } => assert_eq!(grace.whole_seconds(), 3600),
            _ => panic!(),
        }
        match parse(&["keys", "rotate", "key_1"]).unwrap() {
            ClientCommand::Keys {
                cmd: KeysCommand::Rotate { grace, .. },
            } => assert_eq!(grace.whole_seconds(), 86_400),
            _ => panic!(),
        }
        // The help and the README give `--grace 0` for "no grace" (a suspected leak).
        match parse(&["keys", "rotate", "key_1", "--grace", "0"]).unwrap() {
            ClientCommand::Keys {
                cmd: KeysCommand::Rotate { grace, .. },
            } => assert_eq!(grace.whole_seconds(), 0),
            _ => panic!(),
        }
        // A lifetime of nothing is refused, naming the flag and why.
        for zero in ["0", "0s", "0d"] {
            let e = parse(&["keys", "create", "--name", "n", "--expires-in", zero])
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains("--expires-in"), "{e}");
            assert!(e.contains("would expire the key as it is made"), "{e}");
        }
        assert_eq!(audit_time("24h", now()), "2025-12-31T00:00:00.000Z");
        assert_eq!(
            audit_time("2025-06-01T00:00:00Z", now()),
            "2025-06-01T00:00:00Z"
        );
    }

    #[test]
    fn list_and_audit_queries() {
        let a = ListArgs {
            kind: Some(KeyKind::Team),
            team: Some("t1".into()),
            include_revoked: true,
            all: true,
            ..Default::default()
        };
        assert_eq!(
            key_list_query(&a),
            vec![
                ("kind", "team".to_owned()),
                ("team_id", "t1".into()),
                ("include_revoked", "true".into()),
                ("limit", "500".into())
            ]
        );
        assert!(key_list_query(&ListArgs::default()).is_empty());
        let f = AuditFilter {
            api_key_id: Some("key_1".into()),
            since: Some("1d".into()),
            ..Default::default()
        };
        assert_eq!(
            audit_query(&f, now()),
            vec![
                ("api_key_id", "key_1".to_owned()),
                ("since", "2025-12-31T00:00:00.000Z".into())
            ]
        );
    }

    #[test]
    fn urls_are_built_and_encoded() {
        let c = Client::with_token("http://127.0.0.1:8080/", "tcs_x").unwrap();
        let u = c.url(
            &["v1", "api_keys", "a b/c", "rotate"],
            &[("cursor", "x&y".into())],
        );
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:8080/v1/api_keys/a%20b%2Fc/rotate?cursor=x%26y"
        );
        let c = Client::with_token("http://example.com/tocsin", "tcs_x").unwrap();
        assert_eq!(
            c.url(&["v1", "auth", "whoami"], &[]).as_str(),
            "http://example.com/tocsin/v1/auth/whoami"
        );
        assert!(matches!(base_url("127.0.0.1:8080"), Err(Failure::Usage(_))));
        assert_eq!(shown(&Url::parse("http://u:p@h:1/").unwrap()), "http://h:1");
    }

    #[test]
    fn explain_bodies() {
        let body = |args: &[&str]| match parse(&[&["explain"], args].concat()).unwrap() {
            ClientCommand::Explain { explain, .. } => explain_body(&explain).unwrap(),
            _ => panic!(),
        };
        assert_eq!(
            body(&["--method", "delete", "--path", "/v1/teams/x"]),
            json!({"method": "DELETE", "path": "/v1/teams/x"})
        );
        assert_eq!(
            body(&["--permission", "alerts:delete", "--team", "t", "--key", "k"]),
            json!({"permission": "alerts:delete", "team_id": "t", "key_id": "k"})
        );
        // Without either form, the error names both, not only --permission.
        let none = parse(&["explain"]).err().unwrap().to_string();
        assert!(
            none.contains("--method") && none.contains("--permission"),
            "{none}"
        );
        assert!(parse(&["explain", "--method", "GET"]).is_err());
        assert!(
            parse(&[
                "explain",
                "--method",
                "GET",
                "--path",
                "/",
                "--permission",
                "a:b"
            ])
            .is_err()
        );
        let lines = explain_lines(
            &json!({"allowed": false, "code": "permission_denied", "permission": "teams:write", "reasons": ["r1"], "fixes": ["f1"]}),
        );
        assert_eq!(
            lines,
            [
                "REFUSED (permission_denied): teams:write",
                "Reasons:",
                "  - r1",
                "Fixes:",
                "  - f1"
            ]
        );
    }

    #[test]
    fn status_derivation() {
        let n = now();
        let k = |v: Value| key_status(&v, n);
        assert_eq!(
            k(
                json!({"expires_at": "2026-06-01T00:00:00Z", "revoked_at": null, "grace_period_ends_at": null})
            ),
            "active"
        );
        assert_eq!(
            k(json!({"expires_at": "2025-06-01T00:00:00Z", "revoked_at": null})),
            "expired"
        );
        assert_eq!(
            k(json!({"expires_at": "2025-06-01T00:00:00Z", "revoked_at": "2025-05-01T00:00:00Z"})),
            "revoked"
        );
        assert_eq!(
            k(
                json!({"expires_at": "2026-06-01T00:00:00Z", "grace_period_ends_at": "2026-01-02T00:00:00Z"})
            ),
            "rotating"
        );
        assert_eq!(
            k(
                json!({"expires_at": "2026-06-01T00:00:00Z", "grace_period_ends_at": "2025-12-31T00:00:00.000Z"})
            ),
            "active"
        );
        let key = json!({"role_names": ["viewer"], "team_role_names": ["responder"], "last_used_at": null});
        assert_eq!(key_cell(&key, "roles", n), "viewer, responder (team)");
        assert_eq!(key_cell(&key, "last_used_at", n), "never");
        assert_eq!(
            text(&json!({"type": "user", "id": "u1", "name": "Ann"})),
            "Ann (user)"
        );
    }

    #[test]
    fn errors_print_the_servers_explanation() {
        let body = r#"{"error": {"code": "revoked_key", "message": "This key was revoked.", "fixes": ["Create a new key."]}, "request_id": "r-1"}"#;
        let f = Failure::Http {
            status: StatusCode::UNAUTHORIZED,
            body: body.into(),
        };
        assert_eq!(
            f.lines(),
            [
                "error: revoked_key (401): This key was revoked.",
                "  fix: Create a new key.",
                "  request id: r-1"
            ]
        );
        let body = r#"{"error": {"code": "validation_failed", "message": "Invalid.", "fields": {"expires_at": "must be in the future"}}}"#;
        let f = Failure::Http {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: body.into(),
        };
        assert!(
            f.lines()
                .contains(&"  field `expires_at`: must be in the future".to_owned())
        );
        let f = Failure::Http {
            status: StatusCode::BAD_GATEWAY,
            body: "<html>upstream</html>".into(),
        };
        assert_eq!(
            f.lines(),
            ["error: the server answered 502 Bad Gateway: <html>upstream</html>"]
        );
        assert_eq!(f.exit_code(), 1);
    }

    fn alert_args(args: &[&str]) -> AlertArgs {
        match parse(&[&["alerts", "create"], args].concat()) {
            Ok(ClientCommand::Alerts {
                cmd: AlertsCommand::Create { alert, .. },
            }) => alert,
            Ok(_) => panic!("not alerts create"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn alert_create_maps_flags_to_the_body() {
        let a = alert_args(&["--message", "Disk full"]);
        assert_eq!(alert_body(&a).unwrap(), json!({"message": "Disk full"}));
        let a = alert_args(&[
            "--message",
            "Disk full",
            "--alias",
            "disk-db1",
            "--priority",
            "p2",
            "--tag",
            "prod",
            "--tag",
            "db",
            "--description",
            "/var is at 99%",
            "--note",
            "first",
            "--responder-team",
            "sre",
            "--responder-team",
            "Data Base",
        ]);
        assert_eq!(
            alert_body(&a).unwrap(),
            json!({
                "message": "Disk full", "alias": "disk-db1", "priority": "P2", "tags": ["prod", "db"],
                "description": "/var is at 99%", "note": "first",
                "responders": [{"type": "team", "name": "sre"}, {"type": "team", "name": "Data Base"}],
            })
        );
        assert!(
            alert_body(&alert_args(&["--message", "  "]))
                .unwrap_err()
                .contains("--message")
        );
        assert!(
            parse(&["alerts", "create"]).is_err(),
            "--message is required"
        );
        let bad = parse(&["alerts", "create", "--message", "m", "--priority", "P9"])
            .err()
            .unwrap();
        assert!(bad.to_string().contains("P9"), "{bad}");
    }

    #[test]
    fn alert_list_queries_and_targets() {
        let list = |args: &[&str]| match parse(&[&["alerts", "list"], args].concat()) {
            Ok(ClientCommand::Alerts {
                cmd: AlertsCommand::List { filter, .. },
            }) => alert_list_query(&filter),
            Ok(_) => panic!("not alerts list"),
            Err(e) => panic!("{e}"),
        };
        assert!(list(&[]).is_empty());
        assert_eq!(
            list(&[
                "--query",
                "status:open AND tag:prod",
                "--limit",
                "50",
                "--offset",
                "100",
                "--sort",
                "tinyId",
                "--order",
                "asc",
            ]),
            vec![
                ("query", "status:open AND tag:prod".to_owned()),
                ("limit", "50".into()),
                ("offset", "100".into()),
                ("sort", "tinyId".into()),
                ("order", "asc".into()),
            ]
        );
        assert!(parse(&["alerts", "list", "--limit", "500"]).is_err());
        assert!(parse(&["alerts", "list", "--order", "up"]).is_err());

        match parse(&[
            "alerts", "ack", "disk-db1", "--by", "alias", "--note", "on it",
        ])
        .unwrap()
        {
            ClientCommand::Alerts {
                cmd: AlertsCommand::Ack { target, .. },
            } => {
                assert_eq!(target.by, IdentifierType::Alias);
                assert_eq!(
                    alert_action_body(target.note.as_deref()),
                    json!({"note": "on it"})
                );
            }
            _ => panic!(),
        }
        match parse(&["alerts", "close", "42"]).unwrap() {
            ClientCommand::Alerts {
                cmd: AlertsCommand::Close { target, .. },
            } => {
                assert_eq!(target.by.name(), "id");
                assert_eq!(alert_action_body(target.note.as_deref()), json!({}));
            }
            _ => panic!(),
        }
        match parse(&["alerts", "show", "7", "--by", "tiny"]).unwrap() {
            ClientCommand::Alerts {
                cmd: AlertsCommand::Show { by, .. },
            } => assert_eq!(by.name(), "tiny"),
            _ => panic!(),
        }
        assert!(parse(&["alerts", "show", "7", "--by", "name"]).is_err());
        assert!(alert_identifier("..").is_err() && alert_identifier("").is_err());
        assert_eq!(alert_identifier("a/b"), Ok("a/b"));
    }

    #[test]
    fn alert_identifiers_are_one_encoded_path_segment() {
        let c = Client::with_token("http://127.0.0.1:8080", "tcs_x").unwrap();
        let u = c.url(
            &["v2", "alerts", "db 1/disk?x#y%", "close"],
            &[("identifierType", "alias".into())],
        );
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:8080/v2/alerts/db%201%2Fdisk%3Fx%23y%25/close?identifierType=alias"
        );
        let u = c.url(
            &["v2", "alerts"],
            &[("query", "tag:prod AND message:\"a&b\"".into())],
        );
        assert_eq!(
            u.query(),
            Some("query=tag%3Aprod+AND+message%3A%22a%26b%22")
        );
    }

    #[test]
    fn alert_outcomes_and_cells() {
        let created = json!({"success": true, "isSuccess": true, "action": "Create", "status": "Created alert",
            "alertId": "a1", "alias": "disk", "integrationId": "", "processedAt": "2026-01-01T00:00:00.000Z"});
        assert_eq!(
            outcome_lines(&created, "r1", "Created"),
            (
                true,
                vec!["Created alert a1 (alias disk): Created alert".to_owned()]
            )
        );
        let dedup = json!({"isSuccess": true, "action": "Create", "alertId": "a1", "alias": "disk",
            "status": "Alert already exists and its count was increased"});
        let (ok, lines) = outcome_lines(&dedup, "r2", "Created");
        assert!(
            ok && lines[0]
                .starts_with("Deduplicated into open alert a1 (alias disk): Alert already")
        );
        // An alert without an alias has its id as alias: said once.
        let no_alias = json!({"isSuccess": true, "action": "Acknowledge", "alertId": "a1", "alias": "a1",
            "status": "Request processed successfully"});
        assert_eq!(
            outcome_lines(&no_alias, "r3", "Acknowledged").1,
            ["Acknowledged alert a1: Request processed successfully"]
        );
        let failed = json!({"isSuccess": false, "success": false, "action": "Close", "alertId": "", "alias": "",
            "status": "Alert does not exist"});
        assert_eq!(
            outcome_lines(&failed, "r4", "Closed"),
            (
                false,
                vec![
                    "error: Close failed: Alert does not exist".to_owned(),
                    "  request id: r4".into()
                ]
            )
        );

        let alert = json!({"message": "x".repeat(100), "responders": [{"type": "team", "id": "t1"}, {"type": "user", "id": "u1"}],
            "teams": [{"id": "t1"}], "integration": {"id": "i1", "name": "Alertmanager", "type": "API"},
            "tags": [], "description": "", "count": 3, "acknowledged": false});
        assert_eq!(
            alert_cell(&alert, "message"),
            format!("{}…", "x".repeat(MESSAGE_WIDTH))
        );
        assert_eq!(alert_cell(&alert, "responders"), "team t1, user u1");
        assert_eq!(alert_cell(&alert, "teams"), "t1");
        assert_eq!(alert_cell(&alert, "integration"), "Alertmanager (API)");
        assert_eq!(alert_cell(&alert, "tags"), "-");
        assert_eq!(alert_cell(&alert, "description"), "-");
        assert_eq!(alert_cell(&alert, "count"), "3");
        assert_eq!(alert_cell(&alert, "acknowledged"), "false");
        assert_eq!(alert_cell(&alert, "snoozedUntil"), "-");

        let list = json!({"data": [], "paging": {"first": "http://h/v2/alerts?offset=0&limit=20",
            "next": "http://h/v2/alerts?query=tag%3Aprod&offset=40&limit=20&sort=createdAt&order=desc"}});
        assert_eq!(next_offset(&list).as_deref(), Some("40"));
        assert_eq!(next_offset(&json!({"data": [], "paging": {}})), None);
    }

    #[test]
    fn v2_errors_print_the_servers_explanation() {
        // Tocsin's /v2 body: Opsgenie's envelope with the /v1 error object alongside.
        let body = r#"{"message": "The request is invalid: query.", "took": 0.001, "requestId": "r-2",
            "errors": {"query": "unknown field `stauts` at character 0"},
            "error": {"code": "validation_failed", "message": "The request is invalid: query.",
                      "fields": {"query": "unknown field `stauts` at character 0"}}}"#;
        let f = Failure::Http {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: body.into(),
        };
        assert_eq!(
            f.lines(),
            [
                "error: validation_failed (422): The request is invalid: query.",
                "  field `query`: unknown field `stauts` at character 0",
                "  request id: r-2"
            ]
        );
        // Refusals carry fixes in the error object and Opsgenie's numeric code beside it.
        let body = r#"{"message": "Needs alerts:write.", "code": 40301, "took": 0.0, "requestId": "r-3",
            "error": {"code": "permission_denied", "message": "Needs alerts:write.", "fixes": ["Ask an admin."]}}"#;
        let f = Failure::Http {
            status: StatusCode::FORBIDDEN,
            body: body.into(),
        };
        assert_eq!(
            f.lines(),
            [
                "error: permission_denied (403): Needs alerts:write.",
                "  fix: Ask an admin.",
                "  request id: r-3"
            ]
        );
        // Opsgenie itself: no error object; `errors` still shown.
        let body = r#"{"message": "Request body is not processable.", "took": 0.0, "requestId": "r-4",
            "errors": {"message": "Message can not be empty."}}"#;
        let f = Failure::Http {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: body.into(),
        };
        assert_eq!(
            f.lines(),
            [
                "error (422): Request body is not processable.",
                "  field `message`: Message can not be empty.",
                "  request id: r-4"
            ]
        );
        let body = r#"{"message": "Key format is not valid!", "code": 40301, "took": 0.0, "requestId": "r-5"}"#;
        let f = Failure::Http {
            status: StatusCode::FORBIDDEN,
            body: body.into(),
        };
        assert_eq!(f.lines()[0], "error: 40301 (403): Key format is not valid!");
        // A failure after an accepted write says so first, and keeps the inner exit code.
        let f = Failure::After {
            done: "accepted (request id r-6)".into(),
            failure: Box::new(Failure::Unexpected("no data".into())),
        };
        assert_eq!(
            f.lines(),
            ["note: accepted (request id r-6)", "error: no data"]
        );
        assert_eq!(f.exit_code(), 1);
    }

    #[test]
    fn the_token_is_never_shown() {
        let token = Token::generate(TokenKind::Personal, "us");
        let secret = &token.expose()[9..];
        let opts = ClientOpts {
            url: "http://127.0.0.1:8080".into(),
            token: Some(token.expose().into()),
            json: false,
        };
        let client = Client::new(&opts).unwrap();
        assert!(!format!("{opts:?} {client:?}").contains(secret));
        let with_break = format!("{}\n", token.expose());
        let err = Client::with_token("http://127.0.0.1:8080", &with_break).unwrap_err();
        let said = err.lines().join("\n");
        assert!(
            !said.contains(secret) && said.contains("whitespace"),
            "{said}"
        );
        assert!(
            Client::new(&ClientOpts {
                token: None,
                ..opts
            })
            .is_err()
        );
    }

    #[test]
    fn doctor_offline_diagnosis() {
        let token = Token::generate(TokenKind::Team, "eu");
        let ok = doctor_offline(token.expose());
        assert_eq!(ok["well_formed"], true);
        assert_eq!(ok["kind"], "team");
        assert_eq!(ok["region"], "eu");
        assert_eq!(ok["hint"], token.hint());
        let raw = token.expose();
        let bad = doctor_offline(&raw[..raw.len() - 3]);
        assert_eq!(bad["well_formed"], false);
        assert!(bad["error"].as_str().unwrap().contains("truncated"));
        let lines = doctor_lines(&bad, None, now()).join("\n");
        assert!(lines.contains("MALFORMED") && !lines.contains(&raw[9..30]));
        let online = json!({"url": "http://h", "reachable": true, "usable": false, "status": 401,
            "error": {"code": "expired_key", "message": "It expired.", "fixes": ["Rotate it."]}});
        let lines = doctor_lines(&ok, Some(&online), now()).join("\n");
        assert!(
            lines.contains("REFUSED: expired_key (401)") && lines.contains("Rotate it."),
            "{lines}"
        );
    }
}
