//! Settings (SPEC section 10): defaults, then a TOML file, then `TOCSIN_*` variables, then
//! flags, each later source winning. The binary parses flags and the environment with clap
//! and hands `Overrides` here; a bad value stops the start with one line naming the setting.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `None`: SQLite at `<data_dir>/tocsin.db`.
    pub database_url: Option<String>,
    pub region: String,
    pub regions: BTreeMap<String, String>,
    pub public_url: String,
    pub secret_file: Option<PathBuf>,
    pub log_format: LogFormat,
    /// Accept Opsgenie's legacy `?apiKey=` query parameter on `/v2` routes. Off by default:
    /// tokens in URLs end up in proxy and browser logs.
    pub allow_query_api_key: bool,
    /// Failed authentications (and logins) one client address may make per minute before
    /// it is answered 429; valid keys are never slowed.
    pub failed_auth_per_minute: u32,
    /// Record an audit event and the key's last use for every authenticated request (SPEC:
    /// the audit trail holds every request made with a key). `false` exists to measure what
    /// that costs (bench/run); key lifecycle events are recorded either way.
    pub track_requests: bool,
    /// Hostile-input limits (issue 6): the largest request body (413 above it).
    pub max_body_bytes: usize,
    /// The largest request head, request line and headers together (431 above it).
    pub max_header_bytes: usize,
    /// How long a connection may take to send a request's headers, counted from when it
    /// opens or finishes its previous request; so also how long a kept-alive connection may
    /// sit idle. A slow or silent client is disconnected after it.
    pub header_timeout: std::time::Duration,
    /// How long a request may take from its headers to its answer, reading the body
    /// included (408 after it).
    pub request_timeout: std::time::Duration,
}

/// Defaults of the limits above, stated once for the settings table and the tests.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
pub const DEFAULT_HEADER_TIMEOUT_SECONDS: u64 = 30;
pub const DEFAULT_REQUEST_TIMEOUT_SECONDS: u64 = 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Values from one source; `None` leaves the setting to a lower source.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub region: Option<String>,
    #[serde(default, deserialize_with = "regions_from_toml")]
    pub regions: Option<String>,
    pub public_url: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub log_format: Option<String>,
    pub allow_query_api_key: Option<bool>,
    pub failed_auth_per_minute: Option<u32>,
    pub track_requests: Option<bool>,
    pub max_body_bytes: Option<usize>,
    pub max_header_bytes: Option<usize>,
    pub header_timeout_seconds: Option<u64>,
    pub request_timeout_seconds: Option<u64>,
}

/// `regions` in TOML may be the flag's string (`"eu=https://..."`) or a table
/// (`[regions]` with `eu = "https://..."`).
fn regions_from_toml<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Regions {
        Text(String),
        Table(BTreeMap<String, String>),
    }
    Ok(Some(match Regions::deserialize(d)? {
        Regions::Text(s) => s,
        Regions::Table(t) => t
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    }))
}

impl Overrides {
    fn or(self, lower: Overrides) -> Overrides {
        Overrides {
            listen: self.listen.or(lower.listen),
            data_dir: self.data_dir.or(lower.data_dir),
            database_url: self.database_url.or(lower.database_url),
            region: self.region.or(lower.region),
            regions: self.regions.or(lower.regions),
            public_url: self.public_url.or(lower.public_url),
            secret_file: self.secret_file.or(lower.secret_file),
            log_format: self.log_format.or(lower.log_format),
            allow_query_api_key: self.allow_query_api_key.or(lower.allow_query_api_key),
            failed_auth_per_minute: self.failed_auth_per_minute.or(lower.failed_auth_per_minute),
            track_requests: self.track_requests.or(lower.track_requests),
            max_body_bytes: self.max_body_bytes.or(lower.max_body_bytes),
            max_header_bytes: self.max_header_bytes.or(lower.max_header_bytes),
            header_timeout_seconds: self.header_timeout_seconds.or(lower.header_timeout_seconds),
            request_timeout_seconds: self
                .request_timeout_seconds
                .or(lower.request_timeout_seconds),
        }
    }
}

/// A setting that cannot be used, with why: printed as one line.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting `{setting}`: {reason}")]
pub struct SettingError {
    pub setting: &'static str,
    pub reason: String,
}

fn bad(setting: &'static str, reason: impl Into<String>) -> SettingError {
    SettingError {
        setting,
        reason: reason.into(),
    }
}

/// A timeout setting in whole seconds: 1 to 3600.
fn seconds(
    setting: &'static str,
    value: Option<u64>,
    default: u64,
) -> Result<std::time::Duration, SettingError> {
    match value.unwrap_or(default) {
        n @ 1..=3600 => Ok(std::time::Duration::from_secs(n)),
        _ => Err(bad(setting, "must be from 1 to 3600 seconds")),
    }
}

/// A number or boolean setting given as a flag or a `TOCSIN_*` variable. The binary takes
/// these as text and parses them here: clap's own errors run to several lines and name the
/// flag even when the value came from the variable. The variable is named when it holds
/// the value (flags win, so a different value came from the flag).
pub fn parse_setting<T: std::str::FromStr>(
    setting: &'static str,
    env: &str,
    value: Option<&str>,
    expected: &str,
) -> Result<Option<T>, SettingError> {
    let Some(value) = value else {
        return Ok(None);
    };
    value.trim().parse().map(Some).map_err(|_| {
        let shown = if std::env::var(env).is_ok_and(|v| v == value) {
            format!("{env}=`{value}`")
        } else {
            format!("`{value}`")
        };
        bad(setting, format!("{shown} is not {expected}"))
    })
}

/// A base URL as clients use it: `http://` or `https://` and a host (`https://eu.example.com`),
/// without its trailing `/`.
fn base_url(u: &str) -> Result<String, String> {
    if !(u.starts_with("http://") || u.starts_with("https://")) {
        return Err(format!("`{u}` must start with http:// or https://"));
    }
    let uri: axum::http::Uri = u
        .parse()
        .map_err(|_| format!("`{u}` is not a URL such as https://tocsin.example.com"))?;
    match uri.host() {
        Some(host) if !host.is_empty() => Ok(u.trim_end_matches('/').to_owned()),
        _ => Err(format!(
            "`{u}` has no host, as in https://tocsin.example.com"
        )),
    }
}

pub fn valid_region(r: &str) -> bool {
    (2..=8).contains(&r.len())
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The settings of a TOML file. A problem in one setting's value names that setting
/// (`listen = 5` is a problem of `listen`); any other (a syntax error, an unknown key, which
/// the reason names) is a problem of `config`.
fn from_toml(text: &str) -> Result<Overrides, (&'static str, String)> {
    /// Each TOML key and the name its setting goes by in errors (the flag's, without `--`).
    const SETTINGS: &[(&str, &str)] = &[
        ("listen", "listen"),
        ("data_dir", "data-dir"),
        ("database_url", "database-url"),
        ("region", "region"),
        ("regions", "regions"),
        ("public_url", "public-url"),
        ("secret_file", "secret-file"),
        ("log_format", "log-format"),
        ("allow_query_api_key", "allow-query-api-key"),
        ("failed_auth_per_minute", "failed-auth-per-minute"),
        ("track_requests", "track-requests"),
        ("max_body_bytes", "max-body-bytes"),
        ("max_header_bytes", "max-header-bytes"),
        ("header_timeout_seconds", "header-timeout-seconds"),
        ("request_timeout_seconds", "request-timeout-seconds"),
    ];
    let de = toml::de::Deserializer::parse(text).map_err(|e| ("config", e.message().to_owned()))?;
    serde_path_to_error::deserialize::<_, Overrides>(de).map_err(|e| {
        let path = e.path().to_string();
        let key = path.split('.').next().unwrap_or_default().to_owned();
        let why = e.into_inner().message().to_owned();
        let setting = SETTINGS
            .iter()
            .find(|(toml_key, _)| *toml_key == key)
            .map_or("config", |(_, setting)| setting);
        (setting, why)
    })
}

impl Settings {
    /// Merges `cli` (flags and environment, already merged by clap) over the TOML file.
    pub fn load(
        config_file: Option<&std::path::Path>,
        cli: Overrides,
    ) -> Result<Settings, SettingError> {
        let file = match config_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| bad("config", format!("cannot read {}: {e}", path.display())))?;
                from_toml(&text)
                    .map_err(|(setting, why)| bad(setting, format!("{}: {why}", path.display())))?
            }
            None => Overrides::default(),
        };
        Settings::from_overrides(cli.or(file))
    }

    pub fn from_overrides(o: Overrides) -> Result<Settings, SettingError> {
        let listen_text = o.listen.unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            bad(
                "listen",
                format!("`{listen_text}` is not an address such as 127.0.0.1:8080"),
            )
        })?;
        let region = o.region.unwrap_or_else(|| "us".into());
        if !valid_region(&region) {
            return Err(bad(
                "region",
                format!("`{region}` must be 2-8 lowercase letters or digits"),
            ));
        }
        let mut regions = BTreeMap::new();
        for pair in o
            .regions
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let (id, url) = pair.split_once('=').ok_or_else(|| {
                bad(
                    "regions",
                    format!("`{pair}` is not REGION=URL (eu=https://eu.example.com)"),
                )
            })?;
            if !valid_region(id) {
                return Err(bad(
                    "regions",
                    format!("region id `{id}` must be 2-8 lowercase letters or digits"),
                ));
            }
            if id == region {
                return Err(bad(
                    "regions",
                    format!(
                        "`{id}` is this deployment's own region (`region`); list only the other regions"
                    ),
                ));
            }
            let url = base_url(url.trim())
                .map_err(|why| bad("regions", format!("the URL of region `{id}`: {why}")))?;
            if regions.insert(id.to_owned(), url).is_some() {
                return Err(bad("regions", format!("region `{id}` is given twice")));
            }
        }
        let public_url = match o.public_url {
            Some(u) => base_url(&u).map_err(|why| bad("public-url", why))?,
            None => format!("http://{listen}"),
        };
        let log_format = match o.log_format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(bad(
                    "log-format",
                    format!("`{other}` is not `text` or `json`"),
                ));
            }
        };
        if let Some(url) = &o.database_url {
            let sqlite_path = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"));
            if !(sqlite_path.is_some()
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                return Err(bad(
                    "database-url",
                    "must be sqlite://PATH or postgres://USER@HOST/DB",
                ));
            }
            if sqlite_path.is_some_and(|p| p.trim().is_empty()) {
                return Err(bad(
                    "database-url",
                    "names no file: give sqlite://PATH, such as sqlite://./tocsin-data/tocsin.db",
                ));
            }
        }
        Ok(Settings {
            listen,
            data_dir: o.data_dir.unwrap_or_else(|| PathBuf::from("./tocsin-data")),
            database_url: o.database_url,
            region,
            regions,
            public_url,
            secret_file: o.secret_file,
            log_format,
            allow_query_api_key: o.allow_query_api_key.unwrap_or(false),
            failed_auth_per_minute: match o.failed_auth_per_minute {
                Some(0) => return Err(bad("failed-auth-per-minute", "must be at least 1")),
                Some(n) => n,
                None => 60,
            },
            track_requests: o.track_requests.unwrap_or(true),
            max_body_bytes: match o.max_body_bytes {
                Some(n) if n < 1024 => {
                    return Err(bad("max-body-bytes", "must be at least 1024 bytes"));
                }
                Some(n) => n,
                None => DEFAULT_MAX_BODY_BYTES,
            },
            max_header_bytes: match o.max_header_bytes {
                Some(n) if n < 1024 => {
                    return Err(bad("max-header-bytes", "must be at least 1024 bytes"));
                }
                Some(n) => n,
                None => DEFAULT_MAX_HEADER_BYTES,
            },
            header_timeout: seconds(
                "header-timeout-seconds",
                o.header_timeout_seconds,
                DEFAULT_HEADER_TIMEOUT_SECONDS,
            )?,
            request_timeout: seconds(
                "request-timeout-seconds",
                o.request_timeout_seconds,
                DEFAULT_REQUEST_TIMEOUT_SECONDS,
            )?,
        })
    }

    /// The SQLite file the database URL names (`None` for PostgreSQL).
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let url = self.database_url();
        url.strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .filter(|path| !path.starts_with(":memory:"))
            .map(PathBuf::from)
    }

    /// The setting that chose the database, for errors about it: `database-url` when given,
    /// else `data-dir`, where the default SQLite file lives.
    pub fn database_setting(&self) -> &'static str {
        if self.database_url.is_some() {
            "database-url"
        } else {
            "data-dir"
        }
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("tocsin.db").display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_sources_win_and_bad_values_name_the_setting() {
        let flags = Overrides {
            region: Some("eu".into()),
            ..Default::default()
        };
        let file = Overrides {
            region: Some("us".into()),
            listen: Some("0.0.0.0:9000".into()),
            ..Default::default()
        };
        let s = Settings::from_overrides(flags.or(file)).unwrap();
        assert_eq!(s.region, "eu");
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.public_url, "http://0.0.0.0:9000");
        let e = Settings::from_overrides(Overrides {
            regions: Some("eu".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.setting, "regions");
        let e = Settings::from_overrides(Overrides {
            log_format: Some("xml".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("log-format"));
        for empty in ["sqlite://", "sqlite:", "sqlite:// "] {
            let e = Settings::from_overrides(Overrides {
                database_url: Some(empty.into()),
                ..Default::default()
            })
            .unwrap_err();
            assert_eq!(e.setting, "database-url", "{empty}: {e}");
            assert!(e.to_string().contains("names no file"), "{empty}: {e}");
        }
    }

    /// Review ops #12: `regions` refuses this deployment's own region, an id given twice,
    /// and URLs without a host.
    #[test]
    fn regions_are_other_regions_with_real_urls() {
        let regions = |r: &str| {
            Settings::from_overrides(Overrides {
                regions: Some(r.into()),
                ..Default::default()
            })
        };
        let ok = regions("eu=https://eu.example.com/, ap=http://10.0.0.1:8080").unwrap();
        assert_eq!(ok.regions["eu"], "https://eu.example.com");
        assert_eq!(ok.regions["ap"], "http://10.0.0.1:8080");
        for (given, why) in [
            ("us=https://us.example.com", "own region"),
            (
                "eu=https://a.example.com,eu=https://b.example.com",
                "given twice",
            ),
            ("eu=https://", "eu"),
            ("eu=http://exa mple.com", "eu"),
            ("eu=ftp://eu.example.com", "http://"),
        ] {
            let e = regions(given).unwrap_err();
            assert_eq!(e.setting, "regions", "{given}: {e}");
            assert!(e.to_string().contains(why), "{given}: {e}");
        }
        let e = Settings::from_overrides(Overrides {
            public_url: Some("https://".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.setting, "public-url", "{e}");
    }

    /// Review ops #12: numbers and booleans name the setting, and the variable when the value
    /// came from it, in one line.
    #[test]
    fn numbers_and_booleans_name_their_variable() {
        let e = parse_setting::<bool>(
            "track-requests",
            "TOCSIN_TEST_UNSET_VARIABLE",
            Some("yes"),
            "true or false",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "invalid setting `track-requests`: `yes` is not true or false"
        );
        assert_eq!(
            parse_setting::<u32>("failed-auth-per-minute", "X", Some("60"), "a number").unwrap(),
            Some(60)
        );
        assert_eq!(
            parse_setting::<u32>("failed-auth-per-minute", "X", None, "a number").unwrap(),
            None
        );
        // The variable's own value: PATH is set in every test environment.
        let path = std::env::var("PATH").unwrap();
        let e = parse_setting::<usize>("max-body-bytes", "PATH", Some(&path), "a whole number")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid setting `max-body-bytes`: PATH=`"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn a_toml_type_error_names_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "region = \"eu\"\nlisten = 5\n").unwrap();
        let e = Settings::load(Some(&file), Overrides::default()).unwrap_err();
        assert_eq!(e.setting, "listen", "{e}");
        assert!(e.to_string().contains("expected a string"), "{e}");
        std::fs::write(&file, "listen = \"127.0.0.1:1\"\n[nope\n").unwrap();
        let e = Settings::load(Some(&file), Overrides::default()).unwrap_err();
        assert_eq!(e.setting, "config", "{e}");
    }
}
