//! The rules of API keys that do not need a database: kinds, names, expiry, descriptions,
//! network restrictions, and human durations (`30d`). Each constructor only yields valid
//! values; its error is the reason, ready to be put beside the field's name.

use crate::token::TokenKind;
use ipnet::IpNet;
use std::net::IpAddr;
use time::{Duration, OffsetDateTime, format_description::well_known::Rfc3339};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    Personal,
    Team,
    Organization,
    Integration,
}

impl KeyKind {
    pub const ALL: [KeyKind; 4] = [
        KeyKind::Personal,
        KeyKind::Team,
        KeyKind::Organization,
        KeyKind::Integration,
    ];

    pub fn name(self) -> &'static str {
        self.token_kind().name()
    }

    pub fn parse(s: &str) -> Option<Self> {
        KeyKind::ALL.into_iter().find(|k| k.name() == s)
    }

    pub fn token_kind(self) -> TokenKind {
        match self {
            KeyKind::Personal => TokenKind::Personal,
            KeyKind::Team => TokenKind::Team,
            KeyKind::Organization => TokenKind::Organization,
            KeyKind::Integration => TokenKind::Integration,
        }
    }

    pub fn from_token_kind(k: TokenKind) -> Option<Self> {
        KeyKind::ALL.into_iter().find(|kind| kind.token_kind() == k)
    }

    /// The indefinite article of the kind's name, for messages: "an organization key".
    pub fn article(self) -> &'static str {
        match self {
            KeyKind::Organization | KeyKind::Integration => "an",
            KeyKind::Personal | KeyKind::Team => "a",
        }
    }
}

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 1000;
pub const MAX_EXPIRY_YEARS: i32 = 5;
pub const MAX_GRACE_SECONDS: i64 = 604_800;
pub const DEFAULT_GRACE_SECONDS: i64 = 86_400;

/// A key (or team, or integration) name: trimmed, 1-200 characters, no control characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyName(String);

impl KeyName {
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.is_empty() {
            return Err("must not be empty or only spaces".into());
        }
        let n = t.chars().count();
        if n > MAX_NAME_CHARS {
            return Err(format!(
                "is {n} characters long; at most {MAX_NAME_CHARS} are allowed"
            ));
        }
        if let Some(c) = t.chars().find(|c| c.is_control()) {
            return Err(format!(
                "contains the control character U+{:04X}; names must be printable",
                c as u32
            ));
        }
        if let Some(c) = t.chars().find(|&c| is_hidden_format(c)) {
            return Err(format!(
                "contains the invisible character U+{:04X}; names must show every character they hold (bidirectional overrides and zero-width spaces are refused, since they make one name look like another)",
                c as u32
            ));
        }
        Ok(KeyName(t.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form uniqueness is decided on: names differing only in case collide.
    pub fn folded(&self) -> String {
        self.0.to_lowercase()
    }
}

/// Format characters that show nothing yet change what a name displays as: bidirectional
/// embeddings, overrides, isolates and marks (which can reorder the text around them, as
/// "Trojan Source" showed), zero-width spaces and joiners of words, the soft hyphen and the
/// byte-order mark. Zero-width (non-)joiners (U+200C, U+200D) stay allowed: Persian and
/// Indic scripts and emoji sequences need them.
fn is_hidden_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// The most requests per minute a key's `rate_limit` may allow.
pub const RATE_LIMIT_MAX: i64 = 1_000_000;

/// A key's `rate_limit`: requests per minute, 1 to `RATE_LIMIT_MAX`.
pub fn parse_rate_limit(n: i64) -> Result<u32, String> {
    if (1..=RATE_LIMIT_MAX).contains(&n) {
        Ok(n as u32)
    } else {
        Err(format!(
            "must be a number of requests per minute from 1 to {RATE_LIMIT_MAX} (null or absent: no limit of its own); got {n}"
        ))
    }
}

pub fn parse_description(s: Option<&str>) -> Result<String, String> {
    let s = s.unwrap_or("").trim();
    let n = s.chars().count();
    if n > MAX_DESCRIPTION_CHARS {
        return Err(format!(
            "is {n} characters long; at most {MAX_DESCRIPTION_CHARS} are allowed"
        ));
    }
    Ok(s.to_owned())
}

/// The latest expiry allowed when creating at `now`: five years, or an organization's lower maximum.
pub fn max_expiry(now: OffsetDateTime, org_max_days: Option<i64>) -> OffsetDateTime {
    let five_years = now
        .replace_year(now.year() + MAX_EXPIRY_YEARS)
        .unwrap_or_else(|_| now + Duration::days(365 * 5 + 1));
    match org_max_days {
        Some(days) => five_years.min(org_limit(now, days)),
        None => five_years,
    }
}

/// `now` plus an organization's maximum of `days`. The value comes from the database, so it
/// is clamped rather than trusted: beyond five years it changes nothing, and a day count
/// near `i64::MAX` would overflow the time arithmetic (found by fuzzing).
fn org_limit(now: OffsetDateTime, days: i64) -> OffsetDateTime {
    now + Duration::days(days.clamp(0, 366 * MAX_EXPIRY_YEARS as i64))
}

pub fn parse_expires_at(
    s: Option<&str>,
    now: OffsetDateTime,
    org_max_days: Option<i64>,
) -> Result<OffsetDateTime, String> {
    let s = s.ok_or_else(|| {
        "is required: every key expires (RFC 3339, e.g. 2027-01-31T00:00:00Z)".to_string()
    })?;
    let t = parse_time(s)?;
    check_expiry(t, now, org_max_days)?;
    Ok(t)
}

/// A new expiry for an existing key that now expires at `current`: an earlier one (still in
/// the future) is always allowed, even past a maximum lowered since the key was made; a
/// later one only within the maximum, as for a new key.
pub fn parse_new_expiry(
    s: &str,
    now: OffsetDateTime,
    org_max_days: Option<i64>,
    current: OffsetDateTime,
) -> Result<OffsetDateTime, String> {
    let t = parse_time(s)?;
    if t <= current && t > now {
        return Ok(t);
    }
    check_expiry(t, now, org_max_days)?;
    Ok(t)
}

/// An RFC 3339 time, in UTC and to the millisecond (as stored).
fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    let t = OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|_| format!("`{s}` is not an RFC 3339 time such as 2027-01-31T00:00:00Z"))?;
    Ok(to_millis(t.to_offset(time::UtcOffset::UTC)))
}

pub fn check_expiry(
    t: OffsetDateTime,
    now: OffsetDateTime,
    org_max_days: Option<i64>,
) -> Result<(), String> {
    if t <= now {
        return Err("must be in the future".into());
    }
    let max = max_expiry(now, org_max_days);
    if t > max {
        let limit = match org_max_days {
            Some(d) if org_limit(now, d) < max_expiry(now, None) => {
                format!("{d} days (this organization's maximum)")
            }
            _ => format!("{MAX_EXPIRY_YEARS} years"),
        };
        return Err(format!(
            "is more than {limit} ahead; the latest allowed now is {}",
            fmt_rfc3339(max)
        ));
    }
    Ok(())
}

/// A rotation issues a fresh token that lives until the key's `expires_at`: a key made before
/// its organization lowered `max_key_days` may expire later than a new key could. Such a key
/// is rotated only once it is brought within the maximum (a PATCH may always move the expiry
/// earlier), so no token is ever issued to outlive the policy in force when it is issued.
pub fn check_rotation_expiry(
    key_id: &str,
    current: OffsetDateTime,
    now: OffsetDateTime,
    org_max_days: Option<i64>,
) -> Result<(), String> {
    let max = max_expiry(now, org_max_days);
    if current <= max {
        return Ok(());
    }
    let limit = match org_max_days {
        Some(d) if org_limit(now, d) < max_expiry(now, None) => {
            format!("this organization's max_key_days of {d} days")
        }
        _ => format!("the maximum of {MAX_EXPIRY_YEARS} years"),
    };
    Err(format!(
        "is {}, beyond {limit} from now, and a rotation would issue a token valid that long; the latest allowed now is {}: set the key's expires_at to at most that (PATCH /v1/api_keys/{key_id} with an earlier expires_at), then rotate",
        fmt_rfc3339(current),
        fmt_rfc3339(max)
    ))
}

pub fn parse_cidrs(items: &[String]) -> Result<Vec<IpNet>, String> {
    let mut out = Vec::with_capacity(items.len());
    let mut bad = Vec::new();
    for item in items {
        let item = item.trim();
        match item.parse::<IpNet>() {
            Ok(net) => out.push(net.trunc()),
            Err(_) => match item.parse::<IpAddr>() {
                Ok(ip) => out.push(IpNet::from(ip)),
                Err(_) => bad.push(format!("`{item}`")),
            },
        }
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "{} not a CIDR such as 10.0.0.0/8 or 2001:db8::/32",
            bad.join(", ") + if bad.len() == 1 { " is" } else { " are" }
        ))
    }
}

/// `30d`, `12h`, `90m`, `2w`, `1y` (365 days), and a bare `0` for none (the unit of
/// nothing does not matter; any other number needs one).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: i64 = n
        .parse()
        .map_err(|_| format!("`{s}` is not a duration such as 30d, 12h or 1y"))?;
    if unit.starts_with(['.', ',']) {
        return Err(format!(
            "`{s}` is not a whole number of units; use a smaller unit (36h rather than 1.5d)"
        ));
    }
    let seconds_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        "y" => 365 * 86_400,
        _ => return Err(format!("`{s}` has an unknown unit; use s, m, h, d, w or y")),
    };
    // Nothing Tocsin times runs longer than a century; larger values are typos.
    match n.checked_mul(seconds_per) {
        Some(secs) if secs <= 100 * 365 * 86_400 => Ok(Duration::seconds(secs)),
        _ => Err(format!("`{s}` is longer than 100 years")),
    }
}

/// RFC 3339 in UTC with milliseconds (`2026-11-23T08:56:39.322Z`), the precision Tocsin stores.
pub fn fmt_rfc3339(t: OffsetDateTime) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(FORMAT)
        .unwrap_or_else(|_| t.to_string())
}

/// Drops precision below a millisecond, so what is answered equals what is stored.
pub fn to_millis(t: OffsetDateTime) -> OffsetDateTime {
    let ns = t.unix_timestamp_nanos();
    OffsetDateTime::from_unix_timestamp_nanos(ns - ns.rem_euclid(1_000_000)).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (fuzz/seeds/key_fields/regression-org-max-days-overflow): an
    /// organization maximum near i64::MAX days overflowed the time arithmetic and panicked.
    #[test]
    fn extreme_organization_maximums_do_not_overflow() {
        let now = OffsetDateTime::now_utc();
        assert_eq!(max_expiry(now, Some(i64::MAX)), max_expiry(now, None));
        assert_eq!(max_expiry(now, Some(i64::MIN)), now);
        let e = parse_expires_at(Some("9999-12-31T23:59:59Z"), now, Some(i64::MAX)).unwrap_err();
        assert!(e.contains("5 years"), "{e}");
        assert!(parse_expires_at(Some("2999-01-01T00:00:00Z"), now, Some(-1)).is_err());
    }

    #[test]
    fn names() {
        assert_eq!(
            KeyName::parse("  deploy bot ").unwrap().as_str(),
            "deploy bot"
        );
        assert!(KeyName::parse("   ").is_err());
        assert!(
            KeyName::parse(&"x".repeat(201))
                .unwrap_err()
                .contains("201")
        );
        assert!(KeyName::parse(&"é".repeat(200)).is_ok());
        assert!(KeyName::parse("a\u{7}b").unwrap_err().contains("U+0007"));
        // Invisible characters that make one name look like another are refused...
        for hidden in [
            "bidi\u{202E}x",
            "zw\u{200B}x",
            "\u{FEFF}bom",
            "iso\u{2067}late",
        ] {
            let why = KeyName::parse(hidden).unwrap_err();
            assert!(why.contains("invisible character U+"), "{hidden:?}: {why}");
        }
        // ...but not the joiners that scripts and emoji need.
        assert!(
            KeyName::parse("\u{645}\u{6CC}\u{200C}\u{62E}\u{648}\u{627}\u{647}\u{645}").is_ok()
        );
        assert!(KeyName::parse("\u{1F469}\u{200D}\u{1F4BB} devs").is_ok());
        assert_eq!(
            KeyName::parse("Deploy").unwrap().folded(),
            KeyName::parse("deploy").unwrap().folded()
        );
    }

    /// SPEC section 3: a key's expiry may move earlier, or later within the maximum. After the
    /// organization lowers its maximum, a key made under the old one can still be shortened
    /// in steps that stay beyond the new maximum.
    #[test]
    fn a_new_expiry_may_be_earlier_past_a_lowered_maximum() {
        let now = OffsetDateTime::now_utc();
        let f = |days: i64| fmt_rfc3339(now + Duration::days(days));
        let current = now + Duration::days(60);
        assert!(parse_new_expiry(&f(59), now, Some(30), current).is_ok());
        assert!(parse_new_expiry(&f(10), now, Some(30), current).is_ok());
        assert!(
            parse_new_expiry(&f(61), now, Some(30), current)
                .unwrap_err()
                .contains("30 days")
        );
        // Later than now is still required, and "later" keeps the maximum.
        assert!(
            parse_new_expiry(
                &fmt_rfc3339(now - Duration::hours(1)),
                now,
                Some(30),
                current
            )
            .unwrap_err()
            .contains("future")
        );
        let short = now + Duration::days(5);
        assert!(parse_new_expiry(&f(20), now, Some(30), short).is_ok());
        assert!(parse_new_expiry(&f(40), now, Some(30), short).is_err());
    }

    /// A rotation issues a token valid until the key's expiry: only within the maximum in
    /// force now.
    #[test]
    fn a_rotation_keeps_within_a_lowered_maximum() {
        let now = OffsetDateTime::now_utc();
        let long = now + Duration::days(365 * 4);
        assert!(check_rotation_expiry("key_x", long, now, None).is_ok());
        assert!(check_rotation_expiry("key_x", now + Duration::days(30), now, Some(30)).is_ok());
        let why = check_rotation_expiry("key_x", long, now, Some(30)).unwrap_err();
        for part in [
            "max_key_days of 30 days",
            &fmt_rfc3339(long),
            &fmt_rfc3339(now + Duration::days(30)),
            "PATCH /v1/api_keys/key_x",
        ] {
            assert!(why.contains(part), "{part}: {why}");
        }
    }

    #[test]
    fn expiry() {
        let now = OffsetDateTime::now_utc();
        let f = |t: OffsetDateTime| fmt_rfc3339(t);
        assert!(
            parse_expires_at(None, now, None)
                .unwrap_err()
                .contains("required")
        );
        assert!(
            parse_expires_at(Some("tomorrow"), now, None)
                .unwrap_err()
                .contains("RFC 3339")
        );
        assert!(
            parse_expires_at(Some(&f(now - Duration::hours(1))), now, None)
                .unwrap_err()
                .contains("future")
        );
        assert!(
            parse_expires_at(Some(&f(now + Duration::days(365 * 5 + 3))), now, None)
                .unwrap_err()
                .contains("5 years")
        );
        assert!(parse_expires_at(Some(&f(now + Duration::days(365 * 5 - 3))), now, None).is_ok());
        assert!(
            parse_expires_at(Some(&f(now + Duration::days(40))), now, Some(30))
                .unwrap_err()
                .contains("30 days")
        );
    }

    #[test]
    fn cidrs_and_durations() {
        assert_eq!(
            parse_cidrs(&["10.1.2.3/8".into(), "192.0.2.7".into()]).unwrap()[0].to_string(),
            "10.0.0.0/8"
        );
        assert!(
            parse_cidrs(&["nope".into()])
                .unwrap_err()
                .contains("`nope`")
        );
        assert_eq!(parse_duration("30d").unwrap(), Duration::days(30));
        assert_eq!(parse_duration("1y").unwrap(), Duration::days(365));
        assert!(parse_duration("3 fortnights").is_err());
        // `--grace 0`, as the help and the README write it: no grace.
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert!(parse_duration("5").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("99999999999999999d").is_err());
        assert!(parse_duration("100000y").is_err());
        // A fraction is told as such, not as an unknown unit `.5d`.
        let half = parse_duration("1.5d").unwrap_err();
        assert!(
            half.contains("whole number") && half.contains("36h"),
            "{half}"
        );
    }
}
