//! The `tocsin` binary: the server (`serve`, `init`, `orgs create`, `migrate`,
//! `audit verify`) and the HTTP client commands (`client.rs`).

/// `eprintln!` without its panic: with standard error closed (`tocsin ... 2>&-`) the line is
/// lost, where `eprintln!` would abort a command whose work may already be done.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::err_line(format_args!($($arg)*))
    };
}

mod client;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tocsin_server::config::{Overrides, Settings};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tocsin",
    version,
    about = "Incident alerting with first-class API keys"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The settings of SPEC section 10: flags, then `TOCSIN_*` variables, then `--config`.
#[derive(Args, Clone, Default)]
pub(crate) struct ServerArgs {
    /// TOML file with any of the settings below (lowest precedence).
    #[arg(long, env = "TOCSIN_CONFIG")]
    config: Option<PathBuf>,
    /// Address to serve on [default: 127.0.0.1:8080].
    #[arg(long, env = "TOCSIN_LISTEN")]
    listen: Option<String>,
    /// SQLite file, owner token, local state [default: ./tocsin-data].
    #[arg(long, env = "TOCSIN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// sqlite://PATH (default: SQLite in the data dir) or postgres://...
    #[arg(long, env = "TOCSIN_DATABASE_URL")]
    database_url: Option<String>,
    /// This deployment's region id [default: us].
    #[arg(long, env = "TOCSIN_REGION")]
    region: Option<String>,
    /// Other regions' base URLs: eu=https://eu.example.com,ap=...
    #[arg(long, env = "TOCSIN_REGIONS")]
    regions: Option<String>,
    /// This deployment's base URL as clients see it [default: from --listen].
    #[arg(long, env = "TOCSIN_PUBLIC_URL")]
    public_url: Option<String>,
    /// Server secret for token HMACs [default: generated in the data dir].
    #[arg(long, env = "TOCSIN_SECRET_FILE")]
    secret_file: Option<PathBuf>,
    /// text or json [default: text].
    #[arg(long, env = "TOCSIN_LOG_FORMAT")]
    log_format: Option<String>,
    /// Accept Opsgenie's legacy `?apiKey=` on /v2 routes [default: false].
    #[arg(long, env = "TOCSIN_ALLOW_QUERY_API_KEY", num_args = 0..=1, default_missing_value = "true")]
    allow_query_api_key: Option<String>,
    /// Failed authentications or logins per minute per client address before 429 [default: 60].
    #[arg(long, env = "TOCSIN_FAILED_AUTH_PER_MINUTE")]
    failed_auth_per_minute: Option<String>,
    /// Audit every authenticated request and track keys' last use; false only to measure their cost [default: true].
    #[arg(long, env = "TOCSIN_TRACK_REQUESTS")]
    track_requests: Option<String>,
    /// Largest request body in bytes; larger ones get 413 [default: 1048576].
    #[arg(long, env = "TOCSIN_MAX_BODY_BYTES")]
    max_body_bytes: Option<String>,
    /// Largest request line plus headers in bytes; larger ones get 431 [default: 16384].
    #[arg(long, env = "TOCSIN_MAX_HEADER_BYTES")]
    max_header_bytes: Option<String>,
    /// Seconds a connection may take to send a request's headers, or sit idle between requests [default: 30].
    #[arg(long, env = "TOCSIN_HEADER_TIMEOUT_SECONDS")]
    header_timeout_seconds: Option<String>,
    /// Seconds a request may take from its headers to its answer; then 408 [default: 30].
    #[arg(long, env = "TOCSIN_REQUEST_TIMEOUT_SECONDS")]
    request_timeout_seconds: Option<String>,
}

impl ServerArgs {
    fn settings(&self) -> Result<Settings, String> {
        self.overrides()
            .and_then(|cli| Settings::load(self.config.as_deref(), cli))
            .map_err(|e| e.to_string())
    }

    /// The flags and variables as settings; numbers and booleans are parsed here, so that a
    /// bad one is one line naming the setting (and the variable that held it).
    fn overrides(&self) -> Result<Overrides, tocsin_server::config::SettingError> {
        use tocsin_server::config::parse_setting;
        const BOOL: &str = "true or false";
        const COUNT: &str = "a whole number";
        let allow_query_api_key = parse_setting(
            "allow-query-api-key",
            "TOCSIN_ALLOW_QUERY_API_KEY",
            self.allow_query_api_key.as_deref(),
            BOOL,
        )?;
        let failed_auth_per_minute = parse_setting(
            "failed-auth-per-minute",
            "TOCSIN_FAILED_AUTH_PER_MINUTE",
            self.failed_auth_per_minute.as_deref(),
            COUNT,
        )?;
        let track_requests = parse_setting(
            "track-requests",
            "TOCSIN_TRACK_REQUESTS",
            self.track_requests.as_deref(),
            BOOL,
        )?;
        let max_body_bytes = parse_setting(
            "max-body-bytes",
            "TOCSIN_MAX_BODY_BYTES",
            self.max_body_bytes.as_deref(),
            "a whole number of bytes",
        )?;
        let max_header_bytes = parse_setting(
            "max-header-bytes",
            "TOCSIN_MAX_HEADER_BYTES",
            self.max_header_bytes.as_deref(),
            "a whole number of bytes",
        )?;
        let header_timeout_seconds = parse_setting(
            "header-timeout-seconds",
            "TOCSIN_HEADER_TIMEOUT_SECONDS",
            self.header_timeout_seconds.as_deref(),
            "a whole number of seconds",
        )?;
        let request_timeout_seconds = parse_setting(
            "request-timeout-seconds",
            "TOCSIN_REQUEST_TIMEOUT_SECONDS",
            self.request_timeout_seconds.as_deref(),
            "a whole number of seconds",
        )?;
        Ok(Overrides {
            listen: self.listen.clone(),
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            region: self.region.clone(),
            regions: self.regions.clone(),
            public_url: self.public_url.clone(),
            secret_file: self.secret_file.clone(),
            log_format: self.log_format.clone(),
            allow_query_api_key,
            failed_auth_per_minute,
            track_requests,
            max_body_bytes,
            max_header_bytes,
            header_timeout_seconds,
            request_timeout_seconds,
        })
    }
}

#[derive(Args)]
struct OrgArgs {
    /// Organization name (required by `orgs create`) [default for `init`: Default].
    #[arg(long)]
    org: Option<String>,
    /// The owner's email (required by `orgs create`) [default for `init`: owner@localhost].
    #[arg(long)]
    email: Option<String>,
    /// The owner's password for logging in (optional; keys work without it).
    #[arg(long, env = "TOCSIN_OWNER_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Print {"organization_id", "user_id", "api_key_id", "token"}.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (initializes an empty data directory unless --no-init).
    Serve {
        #[command(flatten)]
        server: ServerArgs,
        /// Do not initialize an empty database.
        #[arg(long)]
        no_init: bool,
        /// When initializing an empty database: the owner's password for the web console.
        #[arg(long, env = "TOCSIN_OWNER_PASSWORD", hide_env_values = true)]
        owner_password: Option<String>,
    },
    /// Create the first organization, its owner and the owner's first key; prints the token once.
    Init {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        org: OrgArgs,
    },
    /// Organizations (tenants).
    Orgs {
        #[command(subcommand)]
        cmd: OrgsCommand,
    },
    /// Update an existing database's schema to this version, then exit (a database that does not exist is an error; `serve` or `init` creates one).
    Migrate {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Copy an embedded (SQLite) deployment into an empty PostgreSQL database.
    MigrateData {
        /// The source, e.g. sqlite://./tocsin-data/tocsin.db
        #[arg(long)]
        from: String,
        /// The target, e.g. postgres://tocsin@db.example/tocsin: a database that exists (createdb makes one); its schema is created or updated, and it must hold no organization
        #[arg(long)]
        to: String,
    },
    #[command(flatten)]
    Client(client::ClientCommand),
}

#[derive(Subcommand)]
enum OrgsCommand {
    /// Add an organization with its owner and the owner's first key.
    Create {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        org: OrgArgs,
    },
}

// One worker: requests are served on the event loops (one per core, limits.rs), so this
// runtime holds the accept loop, the background tasks and, on PostgreSQL, the batch writer.
// With a worker per core (two on the bench's machines), each of the writer's round trips
// parked one worker and woke another (a futex and an eventfd write): one worker cut the
// writer's CPU per alert by 15-20% (issue #5, bench/README.md, "Thirteenth session").
// Blocking work still goes to tokio's blocking pool. TOKIO_WORKER_THREADS is not read.
#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> ExitCode {
    let matches = command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let sources = SettingSources::of(&matches);
    let result = match cli.command {
        Command::Serve {
            server,
            no_init,
            owner_password,
        } => serve(server, no_init, owner_password).await,
        Command::Init { server, org } => create_org(server, org, true).await,
        Command::Orgs {
            cmd: OrgsCommand::Create { server, org },
        } => create_org(server, org, false).await,
        Command::Migrate { server } => migrate(server).await,
        Command::MigrateData { from, to } => migrate_data(&from, &to).await,
        Command::Client(cmd) => Ok(client::run(cmd).await),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            // One line that says what is wrong; settings errors name the setting, and the
            // variable when the value came from one.
            errln!("error: {}", sources.name_variable(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}

/// The settings only `serve` reads. The other commands that take the server's settings
/// (`init`, `orgs create`, `migrate`, `audit verify`, `audit refusals`) accept them, so that
/// one config file or environment serves every command, but do not list them in their help.
const SERVE_ONLY: &[&str] = &[
    "listen",
    "regions",
    "public_url",
    "allow_query_api_key",
    "failed_auth_per_minute",
    "track_requests",
    "max_body_bytes",
    "max_header_bytes",
    "header_timeout_seconds",
    "request_timeout_seconds",
];

/// The command line, with `serve`'s own settings hidden from the other commands' help
/// (`migrate` reads no region or secret either: it neither makes keys nor checks one).
fn command() -> clap::Command {
    let hide = |cmd: clap::Command, extra: &[&str]| {
        SERVE_ONLY
            .iter()
            .chain(extra)
            .fold(cmd, |cmd, arg| cmd.mut_arg(*arg, |a| a.hide(true)))
    };
    Cli::command()
        .mut_subcommand("init", |c| hide(c, &[]))
        .mut_subcommand("orgs", |c| c.mut_subcommand("create", |c| hide(c, &[])))
        .mut_subcommand("migrate", |c| hide(c, &["region", "secret_file"]))
        .mut_subcommand("audit", |c| {
            c.mut_subcommand("verify", |c| hide(c, &[]))
                .mut_subcommand("refusals", |c| hide(c, &[]))
        })
}

/// Where the server settings of the command that ran came from, as clap parsed them.
struct SettingSources {
    /// The settings (by flag name) whose value came from a `TOCSIN_*` variable: set, with no
    /// flag given (flags win over variables).
    from_env: Vec<String>,
    /// The `--config` file, if one was given.
    config: Option<String>,
}

impl SettingSources {
    fn of(matches: &clap::ArgMatches) -> Self {
        let mut m = matches;
        while let Some((_, sub)) = m.subcommand() {
            m = sub;
        }
        SettingSources {
            from_env: m
                .ids()
                .filter(|id| m.value_source(id.as_str()) == Some(ValueSource::EnvVariable))
                .map(|id| id.as_str().replace('_', "-"))
                .collect(),
            config: m
                .try_get_one::<PathBuf>("config")
                .ok()
                .flatten()
                .map(|p| p.display().to_string()),
        }
    }

    /// Adds the variable to an "invalid setting `x`" error when the value came from it (an
    /// error in the config file names the file, and its value came from there).
    fn name_variable(&self, message: &str) -> String {
        let Some((setting, reason)) = message
            .strip_prefix("invalid setting `")
            .and_then(|rest| rest.split_once('`'))
        else {
            return message.to_owned();
        };
        let variable = format!("TOCSIN_{}", setting.to_uppercase().replace('-', "_"));
        let from_file = self.config.as_deref().is_some_and(|c| reason.contains(c));
        if !self.from_env.iter().any(|s| s == setting) || from_file || message.contains(&variable) {
            return message.to_owned();
        }
        format!("invalid setting `{setting}` (from {variable}){reason}")
    }
}

/// Writes one line to standard error, ignoring a failure to write it (see `errln!`).
pub(crate) fn err_line(line: std::fmt::Arguments) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Writes one line to standard output and flushes it, answering an error where `println!`
/// would panic (a closed pipe: `tocsin audit verify | head`).
fn say(line: std::fmt::Arguments) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").and_then(|()| stdout.flush())
}

fn settings(server: &ServerArgs) -> anyhow::Result<Settings> {
    server.settings().map_err(anyhow::Error::msg)
}

async fn migrate(server: ServerArgs) -> anyhow::Result<i32> {
    let settings = settings(&server)?;
    // An existing database only: a mistyped path is an error, not a new empty database.
    tocsin_server::bootstrap::open_existing_store(&settings)
        .await?
        .migrate()
        .await
        .map_err(|e| anyhow::anyhow!("migration failed: {e}"))?;
    say(format_args!(
        "database is up to date: {}",
        redact_url(&settings.database_url())
    ))?;
    Ok(0)
}

async fn migrate_data(from: &str, to: &str) -> anyhow::Result<i32> {
    // The source must be an embedded deployment that exists: opening a mistyped path would
    // create an empty file, and copying nothing would "succeed" into the target.
    let Some(path) = from
        .strip_prefix("sqlite://")
        .or_else(|| from.strip_prefix("sqlite:"))
    else {
        anyhow::bail!(
            "invalid `--from`: `{}` is not sqlite://PATH (the embedded deployment's database, e.g. sqlite://./tocsin-data/tocsin.db)",
            redact_url(from)
        );
    };
    if !std::path::Path::new(path).is_file() {
        anyhow::bail!(
            "invalid `--from`: there is no database at {path}; check the path (an embedded deployment keeps it in its data directory as tocsin.db)"
        );
    }
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        anyhow::bail!(
            "invalid `--to`: `{}` is not postgres://... (the PostgreSQL database to copy into; create it first)",
            redact_url(to)
        );
    }
    let source = tocsin_store::Store::connect(from)
        .await
        .map_err(|e| anyhow::anyhow!("invalid `--from`: cannot open {path}: {e}"))?;
    source.migrate().await?;
    if source.alert_log_in_use() {
        anyhow::bail!(
            "invalid `--from`: a running server uses {path} (its alert log {path}-alerts is locked): stop it first, so that every alert it accepted is copied"
        );
    }
    let target = tocsin_store::Store::connect(to)
        .await
        .map_err(|e| anyhow::anyhow!("invalid `--to`: {e}"))?;
    target.migrate().await?;
    let copied = source.copy_into(&target).await?;
    for (table, rows) in &copied {
        say(format_args!("{table:>20}: {rows} rows"))?;
    }
    let mut broken = 0;
    for chain in target.audit_chains().await? {
        if let Some(b) = target.verify_chain(&chain).await?.broken_at {
            broken += 1;
            errln!(
                "audit chain {chain} does not verify on the target: {}",
                b.reason
            );
        }
    }
    if broken > 0 {
        anyhow::bail!("{broken} audit chain(s) did not verify after the copy");
    }
    say(format_args!(
        "Copied {} to {}; the audit chains verify. Start the PostgreSQL nodes with the same secret file as the embedded deployment (its data directory's `secret`), or no key will be recognised.",
        redact_url(from),
        redact_url(to)
    ))?;
    Ok(0)
}

fn redact_url(url: &str) -> String {
    match url.split_once('@') {
        Some((scheme_user, host)) => format!(
            "{}://…@{host}",
            scheme_user.split("://").next().unwrap_or("")
        ),
        None => url.to_owned(),
    }
}

async fn serve(
    server: ServerArgs,
    no_init: bool,
    owner_password: Option<String>,
) -> anyhow::Result<i32> {
    let settings = settings(&server)?;
    tocsin_server::init_logging(settings.log_format);
    let opts = tocsin_server::ServeOptions {
        init: !no_init,
        owner_password_hash: password_hash(owner_password.as_deref(), "--owner-password")?,
        ..Default::default()
    };
    tocsin_server::start(settings, opts).await?.wait().await;
    Ok(0)
}

/// An owner password from a flag (or TOCSIN_OWNER_PASSWORD), checked and hashed.
fn password_hash(password: Option<&str>, flag: &str) -> anyhow::Result<Option<String>> {
    match password {
        Some(p) if p.chars().count() < 8 => {
            anyhow::bail!("invalid `{flag}`: must be at least 8 characters")
        }
        Some(p) => Ok(Some(
            tocsin_server::routes::users::hash_password(p).map_err(|e| anyhow::anyhow!("{e:?}"))?,
        )),
        None => Ok(None),
    }
}

async fn create_org(server: ServerArgs, org: OrgArgs, first: bool) -> anyhow::Result<i32> {
    use tocsin_server::bootstrap;
    // The first organization may take the defaults; another one is named on purpose, or a
    // second "Default" owned by owner@localhost would appear beside the first.
    let (name, email) = match (first, org.org.clone(), org.email.clone()) {
        (_, Some(name), Some(email)) => (name, email),
        (true, name, email) => (
            name.unwrap_or_else(|| "Default".into()),
            email.unwrap_or_else(|| "owner@localhost".into()),
        ),
        (false, name, _) => anyhow::bail!(
            "`orgs create` needs {}: the new organization's name and its owner's email (tocsin orgs create --org NAME --email EMAIL)",
            if name.is_none() { "--org" } else { "--email" }
        ),
    };
    let settings = settings(&server)?;
    let hash = password_hash(org.password.as_deref(), "--password")?;
    // `orgs create` checks that the deployment is initialized before it makes anything:
    // refused, it leaves no database, data directory or secret behind.
    let open = async {
        if first {
            return bootstrap::open_store(&settings).await;
        }
        let not_initialized = || {
            anyhow::anyhow!(
                "this deployment ({}) is not initialized yet; run `tocsin init` first",
                redact_url(&settings.database_url())
            )
        };
        if settings.sqlite_path().is_some_and(|p| !p.is_file()) {
            return Err(not_initialized());
        }
        let store = existing_migrated(&settings).await?;
        if !bootstrap::is_initialized(&store).await? {
            return Err(not_initialized());
        }
        Ok(store)
    };
    let (secret, store) = bootstrap::secret_and_store(&settings, open).await?;
    bootstrap::check_secret(&store, &secret).await?;
    bootstrap::check_region(&store, &settings.region).await?;
    let hasher = tocsin_core::token::TokenHasher::new(Some(&secret));
    let (region, name, email) = (&settings.region, &name, &email);
    let created = if first {
        bootstrap::init(&store, &hasher, region, name, email, hash.as_deref()).await?
    } else {
        bootstrap::create_org(&store, &hasher, region, name, email, hash.as_deref()).await?
    };
    let line = if org.json {
        serde_json::to_string(&created)?
    } else {
        created.token.clone()
    };
    if let Err(e) = say(format_args!("{line}")) {
        let recover = if org.password.is_some() {
            "sign in as the owner with the password given (POST /v1/auth/login, or the web console) and create a key"
        } else if first {
            "nothing else can act as the owner: start over with an empty data directory (or database)"
        } else {
            "nothing else can act as this organization's owner"
        };
        anyhow::bail!(
            "organization {} and its owner {} were created, but the owner's token could not be written to standard output ({e}) and is shown only once; {recover}",
            created.organization_id,
            email
        );
    }
    if !org.json {
        errln!(
            "Organization {} and owner {} created. The line above is the owner's API key token: it is shown only this once.",
            created.organization_id,
            email
        );
    }
    // On PostgreSQL every node needs the secret this command used: say where it is when it
    // was the data directory's (made there now, if it was not there before).
    if settings.sqlite_path().is_none() && settings.secret_file.is_none() {
        errln!(
            "The server secret is {}: start every node with it (--secret-file), or no key will be recognised.",
            settings.data_dir.join("secret").display()
        );
    }
    Ok(0)
}

/// An existing database (a mistyped path is an error, not a new empty database), migrated,
/// so that a copy made by an older version is read in the current layout (its audit events
/// moved into segments, say).
async fn existing_migrated(settings: &Settings) -> anyhow::Result<tocsin_store::Store> {
    let store = tocsin_server::bootstrap::open_existing_store(settings).await?;
    store
        .migrate()
        .await
        .map_err(|e| anyhow::anyhow!("migration failed: {e}"))?;
    Ok(store)
}

/// `tocsin audit refusals`: the unattributed refusals as JSON Lines; exit 0, or 2 on error.
pub(crate) async fn audit_refusals(
    server: ServerArgs,
    since: Option<time::OffsetDateTime>,
    outcome: Option<String>,
) -> i32 {
    let printed = async {
        let store = existing_migrated(&settings(&server)?).await?;
        let filter = tocsin_store::audit::AuditFilter {
            since,
            outcome,
            ..Default::default()
        };
        let mut cursor = None;
        loop {
            let page = store.list_unattributed(&filter, 500, cursor).await?;
            for event in &page.items {
                // A reader that stops early (`| head`) ends the output quietly.
                if say(format_args!("{}", tocsin_server::views::audit_event(event))).is_err() {
                    return Ok(());
                }
            }
            match page.next_cursor.map(|c| c.parse::<i64>()) {
                Some(Ok(next)) => cursor = Some(next),
                _ => return anyhow::Ok(()),
            }
        }
    };
    match printed.await {
        Ok(()) => 0,
        Err(e) => {
            errln!("error: {e:#}");
            2
        }
    }
}

/// `tocsin audit verify`: exit 0 when every chain is intact, 1 when one is broken, 2 on error.
pub(crate) async fn audit_verify(server: ServerArgs, json: bool) -> i32 {
    match verify_chains(server, json).await {
        Ok(code) => code,
        Err(e) => {
            errln!("error: {e:#}");
            2
        }
    }
}

async fn verify_chains(server: ServerArgs, json: bool) -> anyhow::Result<i32> {
    // Verification never creates a database: a mistyped path fails instead of proving an
    // empty new one intact.
    let store = existing_migrated(&settings(&server)?).await?;
    let reports = store.verify_all_chains().await?;
    let broken = reports.iter().any(|r| r.broken_at.is_some());
    // A reader that stops early (`| head`) does not change the verdict: the exit code.
    if json {
        let _ = say(format_args!(
            "{}",
            serde_json::json!({"intact": !broken, "chains": reports})
        ));
    } else {
        for r in &reports {
            let name = if r.chain.is_empty() {
                "(unattributed refusals)"
            } else {
                &r.chain
            };
            let said = match &r.broken_at {
                None => say(format_args!("{name}: intact, {} events", r.events)),
                Some(b) => match &b.event_id {
                    Some(id) => say(format_args!(
                        "{name}: BROKEN at event {id} (seq {}): {}",
                        b.seq, b.reason
                    )),
                    None => say(format_args!(
                        "{name}: BROKEN at seq {}: {}",
                        b.seq, b.reason
                    )),
                },
            };
            if said.is_err() {
                break;
            }
        }
        if reports.is_empty() {
            let _ = say(format_args!("no audit events yet"));
        }
    }
    Ok(i32::from(broken))
}
