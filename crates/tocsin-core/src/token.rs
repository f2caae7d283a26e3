//! The token format `tcs_{kind}_{region}_{secret}{checksum}`: generation, offline parsing
//! (shape and CRC32 checksum, so a damaged token is told apart from an unknown one without
//! a lookup), the keyed hash stored at rest, and the four-character hint.
//! The plaintext never leaves this type except through `expose`, used once per token.

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::{Digest, Sha256};
use std::fmt;

pub const PREFIX: &str = "tcs_";
pub const SECRET_LEN: usize = 32;
pub const CHECKSUM_LEN: usize = 6;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenKind {
    Personal,
    Team,
    Organization,
    Integration,
    Session,
}

impl TokenKind {
    pub fn letter(self) -> char {
        match self {
            TokenKind::Personal => 'p',
            TokenKind::Team => 't',
            TokenKind::Organization => 'o',
            TokenKind::Integration => 'i',
            TokenKind::Session => 's',
        }
    }

    pub fn from_letter(c: char) -> Option<Self> {
        Some(match c {
            'p' => TokenKind::Personal,
            't' => TokenKind::Team,
            'o' => TokenKind::Organization,
            'i' => TokenKind::Integration,
            's' => TokenKind::Session,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            TokenKind::Personal => "personal",
            TokenKind::Team => "team",
            TokenKind::Organization => "organization",
            TokenKind::Integration => "integration",
            TokenKind::Session => "session",
        }
    }
}

/// Why a string is not a token. Each variant's message says what kind of damage it is,
/// never that the token is unknown: these are decided without looking anything up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedToken {
    #[error("the token is empty")]
    Empty,
    #[error("the token is wrapped in quotes; send it without them")]
    Quoted,
    #[error("the token contains whitespace (an extra space or a line break was copied with it)")]
    Whitespace,
    #[error(
        "the token does not start with `tcs_`; Tocsin tokens look like tcs_p_us_<38 characters>"
    )]
    Prefix,
    #[error("the token's kind letter is not one of p, t, o, i or s")]
    Kind,
    #[error("the token's region part is not 2-8 lowercase letters or digits")]
    Region,
    #[error(
        "the token has {found} characters after its region where 38 are expected: it was truncated or extended when copied"
    )]
    Length { found: usize },
    #[error("the token contains characters that are not letters or digits after its region")]
    Alphabet,
    #[error("the token's checksum does not match: it was mistyped or damaged when copied")]
    Checksum,
}

/// A token whose shape and checksum are valid. Its `Debug` and `Display` show only the
/// kind, region and hint, so it cannot leak through logs or error messages.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    raw: String,
    kind: TokenKind,
    region_end: usize,
}

impl Token {
    /// A fresh token from the operating system's CSPRNG.
    pub fn generate(kind: TokenKind, region: &str) -> Self {
        // ThreadRng is ChaCha12, seeded and periodically reseeded from the OS: a CSPRNG.
        let mut rng = rand::rng();
        let mut raw =
            String::with_capacity(PREFIX.len() + 3 + region.len() + SECRET_LEN + CHECKSUM_LEN);
        raw.push_str(PREFIX);
        raw.push(kind.letter());
        raw.push('_');
        raw.push_str(region);
        raw.push('_');
        for _ in 0..SECRET_LEN {
            raw.push(BASE62[rng.random_range(0..62)] as char);
        }
        let sum = checksum(&raw);
        raw.push_str(&sum);
        let region_end = PREFIX.len() + 2 + region.len();
        Token {
            raw,
            kind,
            region_end,
        }
    }

    pub fn parse(s: &str) -> Result<Self, MalformedToken> {
        if s.is_empty() {
            return Err(MalformedToken::Empty);
        }
        if s.starts_with(['"', '\'']) || s.ends_with(['"', '\'']) {
            return Err(MalformedToken::Quoted);
        }
        // Every well-formed token is ASCII, whose whitespace is checked byte by byte (issue
        // #5: decoding each character was a third of a parse); other text, by character.
        // The bytes are `char::is_whitespace`'s ASCII ones: U+0009 to U+000D and the space
        // (`u8::is_ascii_whitespace` leaves out U+000B).
        let whitespace = if s.is_ascii() {
            s.bytes().any(|b| matches!(b, b' ' | b'\t'..=b'\r'))
        } else {
            s.chars().any(char::is_whitespace)
        };
        if whitespace {
            return Err(MalformedToken::Whitespace);
        }
        let rest = s.strip_prefix(PREFIX).ok_or(MalformedToken::Prefix)?;
        let mut chars = rest.chars();
        let kind = chars
            .next()
            .and_then(TokenKind::from_letter)
            .ok_or(MalformedToken::Kind)?;
        let rest = chars
            .as_str()
            .strip_prefix('_')
            .ok_or(MalformedToken::Kind)?;
        let (region, body) = rest.split_once('_').ok_or(MalformedToken::Region)?;
        if !(2..=8).contains(&region.len())
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(MalformedToken::Region);
        }
        if !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(MalformedToken::Alphabet);
        }
        if body.len() != SECRET_LEN + CHECKSUM_LEN {
            return Err(MalformedToken::Length { found: body.len() });
        }
        let split = s.len() - CHECKSUM_LEN;
        // Not secret (anyone can compute it), so an ordinary compare is fine here.
        if checksum_digits(&s[..split]) != s.as_bytes()[split..] {
            return Err(MalformedToken::Checksum);
        }
        Ok(Token {
            raw: s.to_owned(),
            kind,
            region_end: PREFIX.len() + 2 + region.len(),
        })
    }

    pub fn kind(&self) -> TokenKind {
        self.kind
    }

    pub fn region(&self) -> &str {
        &self.raw[PREFIX.len() + 2..self.region_end]
    }

    /// The last four characters, which the audit trail and key listings show.
    pub fn hint(&self) -> String {
        self.raw[self.raw.len() - 4..].to_owned()
    }

    /// The plaintext: only for the one response that shows a new token.
    pub fn expose(&self) -> &str {
        &self.raw
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Token(tcs_{}_{}_…{})",
            self.kind.letter(),
            self.region(),
            self.hint()
        )
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// `text` with everything that could be a token (`tcs_` and the letters, digits and
/// underscores after it) replaced by `tcs_[redacted]`: for logging text a client chose, such
/// as a request path, where a token may have been pasted by mistake. A percent-encoded token
/// (`tcs%5Fp%5F...`, encoded once or more) is a token too: text holding one is answered
/// decoded, with the token redacted.
pub fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(PREFIX) {
        return std::borrow::Cow::Owned(redact_plain(&decoded(text)));
    }
    if !text.contains('%') {
        return std::borrow::Cow::Borrowed(text);
    }
    let plain = decoded(text);
    if plain.contains(PREFIX) {
        std::borrow::Cow::Owned(redact_plain(&plain))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// `text` percent-decoded until nothing is left to decode (at most four times: a token is
/// never encoded deeper by accident), with bytes that are not UTF-8 replaced.
fn decoded(text: &str) -> String {
    let mut plain = text.to_owned();
    for _ in 0..4 {
        if !plain.contains('%') {
            break;
        }
        let next = percent_encoding::percent_decode_str(&plain)
            .decode_utf8_lossy()
            .into_owned();
        if next == plain {
            break;
        }
        plain = next;
    }
    plain
}

fn redact_plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(PREFIX) {
        out.push_str(&rest[..at]);
        out.push_str("tcs_[redacted]");
        let after = &rest[at + PREFIX.len()..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// CRC32 (IEEE) of `s`, in base62, most significant digit first, padded to six characters.
pub fn checksum(s: &str) -> String {
    String::from_utf8(checksum_digits(s).to_vec()).expect("base62 is ASCII")
}

/// `checksum`'s digits, without an allocation (every request's token is checked).
fn checksum_digits(s: &str) -> [u8; CHECKSUM_LEN] {
    let mut n = crc32fast::hash(s.as_bytes());
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// The one-way, keyed digest under which a token is stored and looked up.
/// HMAC-SHA-256 with the server secret; SHA-256 when a deployment has none.
#[derive(Clone)]
pub struct TokenHasher {
    key: Option<Hmac<Sha256>>,
}

pub type TokenDigest = [u8; 32];

impl TokenHasher {
    pub fn new(secret: Option<&[u8]>) -> Self {
        TokenHasher {
            key: secret
                .map(|s| Hmac::<Sha256>::new_from_slice(s).expect("HMAC takes any key length")),
        }
    }

    pub fn digest(&self, token: &Token) -> TokenDigest {
        match &self.key {
            Some(mac) => {
                let mut mac = mac.clone();
                mac.update(token.raw.as_bytes());
                mac.finalize().into_bytes().into()
            }
            None => Sha256::digest(token.raw.as_bytes()).into(),
        }
    }

    /// A value derived from `data` for one `purpose` (e.g. a session's CSRF token from its
    /// digest): keyed like `digest`, and domain-separated so it never equals a token digest.
    pub fn derive(&self, purpose: &str, data: &[u8]) -> TokenDigest {
        let prefix = format!("tocsin {purpose} v1\0");
        match &self.key {
            Some(mac) => {
                let mut mac = mac.clone();
                mac.update(prefix.as_bytes());
                mac.update(data);
                mac.finalize().into_bytes().into()
            }
            None => {
                let mut h = Sha256::new();
                h.update(prefix.as_bytes());
                h.update(data);
                h.finalize().into()
            }
        }
    }

    /// A short, non-reversible fingerprint of the secret itself, so nodes can
    /// check they share one without revealing it.
    pub fn secret_fingerprint(secret: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
        mac.update(b"tocsin secret fingerprint v1");
        hex::encode(&mac.finalize().into_bytes()[..8])
    }
}

/// Constant-time equality for digests and other secrets.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// A new random server secret (32 bytes, hex-encoded for the secret file).
pub fn generate_secret_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_tokens_parse_and_match_the_scanner_pattern() {
        for kind in [
            TokenKind::Personal,
            TokenKind::Team,
            TokenKind::Organization,
            TokenKind::Integration,
        ] {
            let t = Token::generate(kind, "us");
            let raw = t.expose();
            assert!(raw.starts_with(&format!("tcs_{}_us_", kind.letter())));
            assert_eq!(raw.len(), "tcs_p_us_".len() + 38);
            let parsed = Token::parse(raw).unwrap();
            assert_eq!(parsed.kind(), kind);
            assert_eq!(parsed.region(), "us");
            assert_eq!(parsed.hint(), raw[raw.len() - 4..]);
        }
    }

    #[test]
    fn checksum_is_base62_of_crc32() {
        // crc32("") is 0, which pads to six zeros.
        assert_eq!(checksum(""), "000000");
        let n = crc32fast::hash(b"tcs_p_us_abc");
        let s = checksum("tcs_p_us_abc");
        let back = s.bytes().fold(0u64, |acc, b| {
            acc * 62 + BASE62.iter().position(|&c| c == b).unwrap() as u64
        });
        assert_eq!(back, n as u64);
    }

    #[test]
    fn damaged_tokens_say_how() {
        let t = Token::generate(TokenKind::Personal, "eu");
        let raw = t.expose();
        assert_eq!(Token::parse(""), Err(MalformedToken::Empty));
        assert_eq!(
            Token::parse(&format!("\"{raw}\"")),
            Err(MalformedToken::Quoted)
        );
        assert_eq!(
            Token::parse(&format!("{raw} ")),
            Err(MalformedToken::Whitespace)
        );
        // Whitespace anywhere, ASCII (checked byte by byte) or not (by character).
        for ws in [
            '\t', '\n', '\u{b}', '\u{c}', '\r', ' ', '\u{85}', '\u{a0}', '\u{2003}',
        ] {
            let (head, tail) = raw.split_at(12);
            assert_eq!(
                Token::parse(&format!("{head}{ws}{tail}")),
                Err(MalformedToken::Whitespace),
                "{ws:?}"
            );
        }
        // Every ASCII character is whitespace to the parse exactly when it is to
        // `char::is_whitespace` (which, unlike `u8::is_ascii_whitespace`, counts U+000B).
        for c in (0u8..=0x7f).map(char::from) {
            let (head, tail) = raw.split_at(12);
            assert_eq!(
                Token::parse(&format!("{head}{c}{tail}")) == Err(MalformedToken::Whitespace),
                c.is_whitespace(),
                "{c:?}"
            );
        }
        assert_eq!(
            Token::parse(&raw[..raw.len() - 1]),
            Err(MalformedToken::Length { found: 37 })
        );
        assert_eq!(Token::parse("xyz"), Err(MalformedToken::Prefix));
        assert_eq!(
            Token::parse(&raw.replacen("tcs_p", "tcs_x", 1)),
            Err(MalformedToken::Kind)
        );
        let mut flipped = raw.to_owned().into_bytes();
        flipped[12] = if flipped[12] == b'a' { b'b' } else { b'a' };
        assert_eq!(
            Token::parse(std::str::from_utf8(&flipped).unwrap()),
            Err(MalformedToken::Checksum)
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let t = Token::generate(TokenKind::Team, "us");
        let shown = format!("{t:?} {t}");
        assert!(!shown.contains(&t.expose()[9..30]));
    }

    #[test]
    fn keyed_digest_differs_from_plain_and_by_secret() {
        let t = Token::generate(TokenKind::Personal, "us");
        let a = TokenHasher::new(Some(b"one")).digest(&t);
        let b = TokenHasher::new(Some(b"two")).digest(&t);
        let c = TokenHasher::new(None).digest(&t);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert!(ct_eq(&a, &TokenHasher::new(Some(b"one")).digest(&t)));
    }

    #[test]
    fn derived_values_depend_on_secret_purpose_and_data_and_never_equal_a_digest() {
        let t = Token::generate(TokenKind::Session, "us");
        let h = TokenHasher::new(Some(b"one"));
        let d = h.digest(&t);
        let csrf = h.derive("csrf", &d);
        assert_eq!(csrf, h.derive("csrf", &d));
        assert_ne!(csrf, h.derive("other", &d));
        assert_ne!(csrf, h.derive("csrf", &[0u8; 32]));
        assert_ne!(csrf, TokenHasher::new(Some(b"two")).derive("csrf", &d));
        assert_ne!(csrf, d);
        assert_ne!(TokenHasher::new(None).derive("csrf", &d), csrf);
    }

    #[test]
    fn redact_hides_anything_token_shaped_and_keeps_the_rest() {
        let t = Token::generate(TokenKind::Personal, "us");
        let path = format!("/v1/api_keys/{}/rotate", t.expose());
        assert_eq!(redact(&path), "/v1/api_keys/tcs_[redacted]/rotate");
        assert_eq!(redact("/v2/alerts/abc"), "/v2/alerts/abc");
        assert_eq!(redact("tcs_tcs_x-tcs_"), "tcs_[redacted]-tcs_[redacted]");
        assert_eq!(redact("é/tcs_ü"), "é/tcs_[redacted]ü");
        // Encoded, once or twice, wholly or in part: decoded, then redacted.
        let encoded: String = t.expose().bytes().map(|b| format!("%{b:02X}")).collect();
        for path in [
            format!("/v1/api_keys/{encoded}"),
            format!("/v1/api_keys/{}", t.expose().replace('_', "%5F")),
            format!("/v1/api_keys/{}", t.expose().replace('_', "%255F")),
            format!("/a%20b/{}", t.expose()),
        ] {
            let r = redact(&path);
            assert!(r.ends_with("/tcs_[redacted]"), "{path} -> {r}");
            assert!(!r.contains(&t.expose()[9..]), "{path} -> {r}");
        }
        // Encoded text without a token is left as it came.
        assert_eq!(redact("/v2/alerts/a%20b"), "/v2/alerts/a%20b");
    }

    proptest! {
        #[test]
        fn redact_never_leaves_a_secret(prefix in "[a-z/%]{0,8}", suffix in "[/?a-z]{0,8}") {
            let t = Token::generate(TokenKind::Team, "eu");
            let text = format!("{prefix}{}{suffix}", t.expose());
            let redacted = redact(&text);
            prop_assert!(!redacted.contains(&t.expose()[9..]));
        }

        #[test]
        fn redact_never_leaves_an_encoded_secret(
            prefix in "[a-z/%]{0,8}",
            encode in proptest::collection::vec(any::<bool>(), 47),
        ) {
            let t = Token::generate(TokenKind::Team, "eu");
            let text: String = t
                .expose()
                .chars()
                .zip(&encode)
                .map(|(c, &e)| if e { format!("%{:02X}", c as u32) } else { c.to_string() })
                .collect();
            let text = format!("{prefix}{text}");
            let redacted = redact(&text);
            prop_assert!(!redacted.contains(&t.expose()[9..]), "{}", redacted);
        }

        #[test]
        fn any_single_character_change_is_caught(pos in 9usize..47, c in "[0-9A-Za-z]") {
            let t = Token::generate(TokenKind::Organization, "us");
            let mut s = t.expose().to_owned();
            let c = c.chars().next().unwrap();
            prop_assume!(s.as_bytes()[pos] as char != c);
            s.replace_range(pos..pos + 1, &c.to_string());
            prop_assert!(Token::parse(&s).is_err());
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = Token::parse(&s);
        }
    }
}
