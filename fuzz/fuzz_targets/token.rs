//! `Token::parse` on any text: never panics; a token that parses is exactly its input,
//! parses again to itself, shows its kind, region and hint where the format puts them, and
//! never shows its secret in `Debug` or `Display`. And any one-character change of a real
//! token is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tocsin_core::token::{CHECKSUM_LEN, SECRET_LEN, Token, TokenKind};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match Token::parse(s) {
        Ok(t) => {
            assert_eq!(t.expose(), s);
            assert_eq!(Token::parse(t.expose()).as_ref(), Ok(&t));
            let kind = s[4..].chars().next().and_then(TokenKind::from_letter);
            assert_eq!(kind, Some(t.kind()));
            assert_eq!(&s[6..6 + t.region().len()], t.region());
            assert!(s.ends_with(&t.hint()));
            let secret = &s[s.len() - SECRET_LEN - CHECKSUM_LEN..s.len() - CHECKSUM_LEN];
            assert!(!format!("{t:?}").contains(secret));
            assert!(!format!("{t}").contains(secret));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }

    // A fresh token, damaged at one place chosen by the input, is always refused.
    if let [k, pos, c, ..] = data {
        let kinds = [
            TokenKind::Personal,
            TokenKind::Team,
            TokenKind::Organization,
            TokenKind::Integration,
            TokenKind::Session,
        ];
        let t = Token::generate(kinds[*k as usize % kinds.len()], "us");
        let raw = t.expose().as_bytes();
        let pos = *pos as usize % raw.len();
        let c =
            b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"[*c as usize % 63];
        if raw[pos] != c {
            let mut damaged = raw.to_vec();
            damaged[pos] = c;
            let damaged = String::from_utf8(damaged).expect("ASCII");
            assert!(Token::parse(&damaged).is_err(), "{damaged} was accepted");
        }
    }
});
