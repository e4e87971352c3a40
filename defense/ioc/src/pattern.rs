//! STIX 2.1 patterns, the subset indicator feeds use: equality comparisons on object paths,
//! combined with `AND` / `OR` inside a bracket (one object) and between brackets (several
//! observations), with parentheses. A pattern is kept in disjunctive normal form, so matching
//! is "any alternative whose every part matched".
//!
//! Anything else a valid STIX pattern may contain (`LIKE`, `MATCHES`, `!=`, `FOLLOWEDBY`,
//! qualifiers such as `WITHIN`) is reported as [`PatternError::Unsupported`], not guessed at.

use std::net::Ipv4Addr;

use thiserror::Error;

use crate::attribute::Attribute;

/// Most alternatives one pattern may expand to in normal form.
const MAX_ALTERNATIVES: usize = 256;

/// Why a pattern cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PatternError {
    /// The text is not a STIX pattern.
    #[error("syntax error at byte {position}: {reason}")]
    Syntax {
        /// Byte offset in the pattern.
        position: usize,
        /// What was wrong there.
        reason: &'static str,
    },
    /// An object path this engine does not know (e.g. `mutex:name`).
    #[error("unknown indicator type {0}")]
    UnknownType(String),
    /// A valid construct this engine does not evaluate.
    #[error("unsupported pattern construct {0}")]
    Unsupported(String),
    /// The pattern expands to too many alternatives.
    #[error("pattern expands to more than {MAX_ALTERNATIVES} alternatives")]
    TooComplex,
}

/// One `object:path = 'value'` comparison, the value normalized for its attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// What is compared.
    pub attribute: Attribute,
    /// The indicator's value, normalized ([`Attribute::normalize`]).
    pub value: Box<str>,
}

impl Comparison {
    /// A comparison with its value normalized.
    pub fn new(attribute: Attribute, value: &str) -> Self {
        Self {
            attribute,
            value: attribute.normalize(value).into(),
        }
    }

    /// Whether an observed value (already normalized for the attribute) satisfies this
    /// comparison: domains also match their sub-domains, paths everything beneath them, an
    /// IPv4 CIDR block its addresses, and a process name cut by the kernel (15 bytes, or 16 as
    /// on iOS) the full name it starts.
    pub fn matches(&self, observed: &str) -> bool {
        let value = &*self.value;
        match self.attribute {
            Attribute::DomainName => {
                observed == value
                    || (observed.len() > value.len()
                        && observed.ends_with(value)
                        && observed.as_bytes()[observed.len() - value.len() - 1] == b'.')
            }
            Attribute::FilePath => {
                observed == value
                    || (value == "/" && observed.starts_with('/'))
                    || (observed.len() > value.len()
                        && observed.starts_with(value)
                        && observed.as_bytes()[value.len()] == b'/')
            }
            Attribute::ProcessName => {
                observed == value
                    || (is_truncated_process_name(observed) && value.starts_with(observed))
            }
            Attribute::Ipv4Addr => {
                observed == value
                    || match (parse_cidr(value), observed.parse::<Ipv4Addr>()) {
                        (Some((network, bits)), Ok(address)) => {
                            in_network(u32::from(address), network, bits)
                        }
                        _ => false,
                    }
            }
            _ => observed == value,
        }
    }
}

/// Lengths at which a process name may have been cut: Linux keeps 15 bytes of `comm`, iOS 16.
pub fn is_truncated_process_name(name: &str) -> bool {
    matches!(name.len(), 15 | 16)
}

/// `a.b.c.d/n` → (network address, prefix length).
pub fn parse_cidr(value: &str) -> Option<(u32, u8)> {
    let (address, bits) = value.split_once('/')?;
    let address: Ipv4Addr = address.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    (bits <= 32).then_some((u32::from(address), bits))
}

/// Whether `address` lies in `network/bits`.
pub fn in_network(address: u32, network: u32, bits: u8) -> bool {
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(bits))
    };
    address & mask == network & mask
}

/// One bracket `[...]`: comparisons on a single observed object, as alternatives of
/// conjunctions (every comparison of one clause must hold for the same object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bracket {
    /// Alternatives; each is a conjunction of comparisons.
    pub clauses: Vec<Vec<Comparison>>,
}

/// A parsed pattern: alternatives, each a conjunction of brackets that must all be observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// Alternatives; each is a list of brackets that must all match (possibly different
    /// observations).
    pub alternatives: Vec<Vec<Bracket>>,
}

impl Pattern {
    /// Parses a STIX pattern.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let tokens = lex(text)?;
        let mut parser = Parser {
            tokens,
            next: 0,
            end: text.len(),
        };
        let alternatives = parser.observation_or()?;
        if parser.next < parser.tokens.len() {
            return Err(parser.syntax("unexpected text after the pattern"));
        }
        Ok(Pattern { alternatives })
    }

    /// Every comparison in the pattern.
    pub fn comparisons(&self) -> impl Iterator<Item = &Comparison> {
        self.alternatives
            .iter()
            .flatten()
            .flat_map(|bracket| bracket.clauses.iter().flatten())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    OpenParen,
    CloseParen,
    And,
    Or,
    Equals,
    Path(String),
    Text(String),
    Word(String),
}

fn lex(text: &str) -> Result<Vec<(usize, Token)>, PatternError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let byte = bytes[i];
        match byte {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'[' | b']' | b'(' | b')' => {
                tokens.push((
                    start,
                    match byte {
                        b'[' => Token::Open,
                        b']' => Token::Close,
                        b'(' => Token::OpenParen,
                        _ => Token::CloseParen,
                    },
                ));
                i += 1;
            }
            b'=' => {
                tokens.push((start, Token::Equals));
                i += 1;
            }
            b'!' | b'<' | b'>' => {
                let len = if bytes.get(i + 1) == Some(&b'=') {
                    2
                } else {
                    1
                };
                tokens.push((start, Token::Word(text[i..i + len].to_owned())));
                i += len;
            }
            b'\'' => {
                let (value, next) = string_literal(text, i)?;
                tokens.push((start, Token::Text(value)));
                i = next;
            }
            b if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' => {
                let next = word_end(text, i)?;
                let word = &text[i..next];
                let token = if word.contains(':') {
                    Token::Path(word.to_owned())
                } else if word == "AND" {
                    Token::And
                } else if word == "OR" {
                    Token::Or
                } else {
                    Token::Word(word.to_owned())
                };
                tokens.push((start, token));
                i = next;
            }
            _ => {
                return Err(PatternError::Syntax {
                    position: start,
                    reason: "unexpected character",
                });
            }
        }
    }
    Ok(tokens)
}

/// End of a word or object path; a quoted path segment (`hashes.'SHA-256'`) is part of it.
fn word_end(text: &str, mut i: usize) -> Result<usize, PatternError> {
    let bytes = text.as_bytes();
    while i < bytes.len() {
        let byte = bytes[i];
        if byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b':' | b'.') {
            i += 1;
        } else if byte == b'\'' && i > 0 && bytes[i - 1] == b'.' {
            let close = text[i + 1..].find('\'').ok_or(PatternError::Syntax {
                position: i,
                reason: "unterminated quoted path segment",
            })?;
            i += close + 2;
        } else {
            break;
        }
    }
    Ok(i)
}

/// A `'...'` literal with `\'` and `\\` escapes; returns the value and the index after it.
fn string_literal(text: &str, open: usize) -> Result<(String, usize), PatternError> {
    let mut value = String::new();
    let mut chars = text[open + 1..].char_indices();
    while let Some((offset, c)) = chars.next() {
        match c {
            '\'' => return Ok((value, open + 1 + offset + 1)),
            '\\' => match chars.next() {
                Some((_, escaped @ ('\'' | '\\'))) => value.push(escaped),
                _ => {
                    return Err(PatternError::Syntax {
                        position: open + 1 + offset,
                        reason: "invalid escape in string",
                    });
                }
            },
            c => value.push(c),
        }
    }
    Err(PatternError::Syntax {
        position: open,
        reason: "unterminated string",
    })
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    next: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next).map(|(_, token)| token)
    }

    fn position(&self) -> usize {
        self.tokens
            .get(self.next)
            .map_or(self.end, |(position, _)| *position)
    }

    fn syntax(&self, reason: &'static str) -> PatternError {
        PatternError::Syntax {
            position: self.position(),
            reason,
        }
    }

    fn take(&mut self, token: &Token, reason: &'static str) -> Result<(), PatternError> {
        if self.peek() == Some(token) {
            self.next += 1;
            Ok(())
        } else {
            Err(self.syntax(reason))
        }
    }

    fn observation_or(&mut self) -> Result<Vec<Vec<Bracket>>, PatternError> {
        let mut alternatives = self.observation_and()?;
        while self.peek() == Some(&Token::Or) {
            self.next += 1;
            alternatives.extend(self.observation_and()?);
            if alternatives.len() > MAX_ALTERNATIVES {
                return Err(PatternError::TooComplex);
            }
        }
        Ok(alternatives)
    }

    fn observation_and(&mut self) -> Result<Vec<Vec<Bracket>>, PatternError> {
        let mut product = self.observation_atom()?;
        while self.peek() == Some(&Token::And) {
            self.next += 1;
            let right = self.observation_atom()?;
            product = cross(&product, &right)?;
        }
        Ok(product)
    }

    fn observation_atom(&mut self) -> Result<Vec<Vec<Bracket>>, PatternError> {
        let result = match self.peek() {
            Some(Token::Open) => {
                self.next += 1;
                let clauses = self.comparison_or()?;
                self.take(&Token::Close, "expected ']'")?;
                vec![vec![Bracket { clauses }]]
            }
            Some(Token::OpenParen) => {
                self.next += 1;
                let inner = self.observation_or()?;
                self.take(&Token::CloseParen, "expected ')'")?;
                inner
            }
            _ => return Err(self.syntax("expected '[' or '('")),
        };
        if let Some(Token::Word(word)) = self.peek() {
            return Err(PatternError::Unsupported(word.clone()));
        }
        Ok(result)
    }

    fn comparison_or(&mut self) -> Result<Vec<Vec<Comparison>>, PatternError> {
        let mut alternatives = self.comparison_and()?;
        while self.peek() == Some(&Token::Or) {
            self.next += 1;
            alternatives.extend(self.comparison_and()?);
            if alternatives.len() > MAX_ALTERNATIVES {
                return Err(PatternError::TooComplex);
            }
        }
        Ok(alternatives)
    }

    fn comparison_and(&mut self) -> Result<Vec<Vec<Comparison>>, PatternError> {
        let mut product = self.comparison_atom()?;
        while self.peek() == Some(&Token::And) {
            self.next += 1;
            let right = self.comparison_atom()?;
            product = cross(&product, &right)?;
        }
        Ok(product)
    }

    fn comparison_atom(&mut self) -> Result<Vec<Vec<Comparison>>, PatternError> {
        match self.peek().cloned() {
            Some(Token::OpenParen) => {
                self.next += 1;
                let inner = self.comparison_or()?;
                self.take(&Token::CloseParen, "expected ')'")?;
                Ok(inner)
            }
            Some(Token::Path(path)) => {
                self.next += 1;
                match self.peek().cloned() {
                    Some(Token::Equals) => self.next += 1,
                    Some(Token::Word(word)) => return Err(PatternError::Unsupported(word)),
                    _ => return Err(self.syntax("expected '=' after the object path")),
                }
                let value = match self.peek().cloned() {
                    Some(Token::Text(value)) => value,
                    Some(Token::Word(word)) => return Err(PatternError::Unsupported(word)),
                    _ => return Err(self.syntax("expected a quoted string")),
                };
                self.next += 1;
                let attribute = Attribute::from_object_path(&path)
                    .ok_or_else(|| PatternError::UnknownType(path.clone()))?;
                Ok(vec![vec![Comparison::new(attribute, &value)]])
            }
            _ => Err(self.syntax("expected an object path")),
        }
    }
}

/// Distributes AND over two normal forms.
fn cross<T: Clone>(left: &[Vec<T>], right: &[Vec<T>]) -> Result<Vec<Vec<T>>, PatternError> {
    if left.len().saturating_mul(right.len()) > MAX_ALTERNATIVES {
        return Err(PatternError::TooComplex);
    }
    let mut out = Vec::with_capacity(left.len() * right.len());
    for l in left {
        for r in right {
            let mut both = l.clone();
            both.extend(r.iter().cloned());
            out.push(both);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(attribute: Attribute, value: &str) -> Comparison {
        Comparison::new(attribute, value)
    }

    /// A pattern's alternatives → brackets → clauses → (attribute, value) comparisons.
    type Shape = Vec<Vec<Vec<Vec<(Attribute, String)>>>>;

    fn shape(pattern: &Pattern) -> Shape {
        pattern
            .alternatives
            .iter()
            .map(|alternative| {
                alternative
                    .iter()
                    .map(|bracket| {
                        bracket
                            .clauses
                            .iter()
                            .map(|clause| {
                                clause
                                    .iter()
                                    .map(|c| (c.attribute, c.value.to_string()))
                                    .collect()
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn patterns_parse_to_normal_form() {
        use Attribute::*;
        let d = |v: &str| (DomainName, v.to_owned());
        let cases: Vec<(&str, Shape)> = vec![
            (
                "[domain-name:value='weather4free.com']",
                vec![vec![vec![vec![d("weather4free.com")]]]],
            ),
            (
                "[ domain-name:value = 'A.com' ]",
                vec![vec![vec![vec![d("a.com")]]]],
            ),
            (
                "[file:hashes.'SHA-256' = 'AB']",
                vec![vec![vec![vec![(FileSha256, "ab".to_owned())]]]],
            ),
            (
                "[domain-name:value = 'a.com' OR domain-name:value = 'b.com']",
                vec![vec![vec![vec![d("a.com")], vec![d("b.com")]]]],
            ),
            (
                "[file:name = 'x' AND file:hashes.md5 = 'ff']",
                vec![vec![vec![vec![
                    (FileName, "x".to_owned()),
                    (FileMd5, "ff".to_owned()),
                ]]]],
            ),
            (
                "[file:name = 'x' AND (file:path = '/a' OR file:path = '/b')]",
                vec![vec![vec![
                    vec![(FileName, "x".to_owned()), (FilePath, "/a".to_owned())],
                    vec![(FileName, "x".to_owned()), (FilePath, "/b".to_owned())],
                ]]],
            ),
            (
                "[domain-name:value = 'a.com'] AND [process:name = 'p']",
                vec![vec![
                    vec![vec![d("a.com")]],
                    vec![vec![(ProcessName, "p".to_owned())]],
                ]],
            ),
            (
                "[domain-name:value = 'a.com'] OR ([process:name = 'p'])",
                vec![
                    vec![vec![vec![d("a.com")]]],
                    vec![vec![vec![(ProcessName, "p".to_owned())]]],
                ],
            ),
            (
                r"[file:name = 'it\'s \\ here']",
                vec![vec![vec![vec![(FileName, r"it's \ here".to_owned())]]]],
            ),
        ];
        for (text, expected) in cases {
            let pattern = Pattern::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(shape(&pattern), expected, "{text}");
        }
    }

    #[test]
    fn bad_patterns_are_rejected_with_the_reason() {
        let cases: Vec<(&str, PatternError)> = vec![
            (
                "",
                PatternError::Syntax {
                    position: 0,
                    reason: "expected '[' or '('",
                },
            ),
            (
                "[domain-name:value='a.com'",
                PatternError::Syntax {
                    position: 26,
                    reason: "expected ']'",
                },
            ),
            (
                "[domain-name:value='a.com]",
                PatternError::Syntax {
                    position: 19,
                    reason: "unterminated string",
                },
            ),
            (
                "[domain-name:value]",
                PatternError::Syntax {
                    position: 18,
                    reason: "expected '=' after the object path",
                },
            ),
            (
                "[domain-name:value='a'] junk",
                PatternError::Unsupported("junk".to_owned()),
            ),
            (
                "[mutex:name = 'x']",
                PatternError::UnknownType("mutex:name".to_owned()),
            ),
            (
                "[file:name LIKE 'x%']",
                PatternError::Unsupported("LIKE".to_owned()),
            ),
            (
                "[file:name != 'x']",
                PatternError::Unsupported("!=".to_owned()),
            ),
            (
                "[file:name = 'x'] WITHIN 5 SECONDS",
                PatternError::Unsupported("WITHIN".to_owned()),
            ),
            (
                "[file:name = 'x'] FOLLOWEDBY [file:name = 'y']",
                PatternError::Unsupported("FOLLOWEDBY".to_owned()),
            ),
            (
                "[file:name = 'x' AND]",
                PatternError::Syntax {
                    position: 20,
                    reason: "expected an object path",
                },
            ),
            (
                "[file:name = 'x'",
                PatternError::Syntax {
                    position: 16,
                    reason: "expected ']'",
                },
            ),
            (
                "{file:name = 'x'}",
                PatternError::Syntax {
                    position: 0,
                    reason: "unexpected character",
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(Pattern::parse(text), Err(expected), "{text}");
        }
    }

    #[test]
    fn expansion_is_bounded() {
        let or = (0..20)
            .map(|i| format!("file:name = '{i}'"))
            .collect::<Vec<_>>()
            .join(" OR ");
        let text = format!("[({or}) AND ({or})]");
        assert_eq!(Pattern::parse(&text), Err(PatternError::TooComplex));
    }

    #[test]
    fn comparisons_match_per_attribute_semantics() {
        use Attribute::*;
        let cases = [
            (cmp(DomainName, "evil.com"), "evil.com", true),
            (cmp(DomainName, "evil.com"), "a.b.evil.com", true),
            (cmp(DomainName, "evil.com"), "notevil.com", false),
            (cmp(DomainName, "evil.com"), "evil.com.au", false),
            (cmp(DomainName, "dns.evil.com"), "evil.com", false),
            (
                cmp(FilePath, "/data/local/tmp/wd/"),
                "/data/local/tmp/wd",
                true,
            ),
            (
                cmp(FilePath, "/data/local/tmp/wd/"),
                "/data/local/tmp/wd/fs.db",
                true,
            ),
            (
                cmp(FilePath, "/data/local/tmp/wd"),
                "/data/local/tmp/wdx",
                false,
            ),
            (cmp(FilePath, "/"), "/etc", true),
            (cmp(ProcessName, "fservernetd"), "fservernetd", true),
            (cmp(ProcessName, "fservernetd"), "fserver", false),
            (
                cmp(ProcessName, "com.apple.webkit.net"),
                "com.apple.webki",
                true,
            ),
            (
                cmp(ProcessName, "com.apple.webkit.net"),
                "com.apple.webkit",
                true,
            ),
            (
                cmp(ProcessName, "com.apple.webkit.net"),
                "com.apple.webk",
                false,
            ),
            (cmp(Ipv4Addr, "121.201.109.98"), "121.201.109.98", true),
            (cmp(Ipv4Addr, "121.201.109.98"), "121.201.109.9", false),
            (cmp(Ipv4Addr, "10.1.0.0/16"), "10.1.200.3", true),
            (cmp(Ipv4Addr, "10.1.0.0/16"), "10.2.0.1", false),
            (cmp(Ipv4Addr, "0.0.0.0/0"), "8.8.8.8", true),
            (cmp(FileSha256, "AB"), "ab", true),
            (cmp(EmailAddr, "X@Y.com"), "x@y.com", true),
        ];
        for (comparison, observed, expected) in cases {
            let observed = comparison.attribute.normalize(observed);
            assert_eq!(
                comparison.matches(&observed),
                expected,
                "{:?} vs {observed}",
                comparison
            );
        }
    }
}
