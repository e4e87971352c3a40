//! Finding indicator domains inside free text (DNS query logs) with one Aho-Corasick pass:
//! every occurrence of an indicator domain that ends a hostname token and starts at a label
//! boundary yields that whole hostname, which is then matched like any observed domain.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

/// An automaton over every domain indicator.
#[derive(Debug, Default)]
pub struct DomainText {
    automaton: Option<AhoCorasick>,
}

fn is_host_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.' || byte == b'_'
}

impl DomainText {
    /// An automaton over `domains` (normalized, lower case). With no domains nothing matches.
    pub fn new(domains: &[String]) -> Self {
        if domains.is_empty() {
            return Self::default();
        }
        let automaton = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            // A contiguous NFA builds in a fraction of a DFA's time and memory; DNS logs are
            // short lines, so search speed barely differs.
            .kind(Some(AhoCorasickKind::ContiguousNFA))
            .build(domains)
            .ok();
        Self { automaton }
    }

    /// The distinct hostnames of `text` that end with an indicator domain at a label
    /// boundary, in order of appearance.
    pub fn candidates<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let Some(automaton) = &self.automaton else {
            return Vec::new();
        };
        let bytes = text.as_bytes();
        let mut out: Vec<&'t str> = Vec::new();
        for found in automaton.find_overlapping_iter(text) {
            let (start, end) = (found.start(), found.end());
            // The match must end the hostname (a trailing root dot is allowed).
            let after = bytes.get(end).copied();
            let ends_token = match after {
                None => true,
                Some(b'.') => bytes.get(end + 1).is_none_or(|b| !is_host_byte(*b)),
                Some(byte) => !is_host_byte(byte),
            };
            if !ends_token {
                continue;
            }
            // ... and start at a label boundary.
            if start > 0 && bytes[start - 1] != b'.' && is_host_byte(bytes[start - 1]) {
                continue;
            }
            let mut token_start = start;
            while token_start > 0 && is_host_byte(bytes[token_start - 1]) {
                token_start -= 1;
            }
            let Some(token) = text.get(token_start..end) else {
                continue;
            };
            let token = token.trim_start_matches('.');
            if !out.contains(&token) {
                out.push(token);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_with_indicator_suffixes_are_found_in_text() {
        let text = DomainText::new(&["evil.com".to_owned(), "c2.net".to_owned()]);
        let cases: Vec<(&str, Vec<&str>)> = vec![
            ("query[A] a.b.EVIL.com from 10.0.0.2", vec!["a.b.EVIL.com"]),
            ("query[A] evil.com. from", vec!["evil.com"]),
            ("reply notevil.com is 1.2.3.4", vec![]),
            ("evil.com.au", vec![]),
            ("x.c2.net,evil.com;evil.com", vec!["x.c2.net", "evil.com"]),
            ("nothing here", vec![]),
        ];
        for (line, expected) in cases {
            assert_eq!(text.candidates(line), expected, "{line}");
        }
        assert!(DomainText::new(&[]).candidates("evil.com").is_empty());
    }
}
