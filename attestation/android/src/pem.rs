//! PEM certificate chains (`-----BEGIN CERTIFICATE-----` blocks) to DER.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::error::AndroidError;

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// Decodes every `CERTIFICATE` block of `text`, in order, to DER. Text outside the blocks is
/// ignored; an unterminated block, nested BEGIN, bad base64 or no certificate at all is an error.
/// The DER is returned as given (not re-encoded), so signatures stay verifiable.
pub fn parse_pem_chain(text: &str) -> Result<Vec<Vec<u8>>, AndroidError> {
    let mut out = Vec::new();
    let mut body: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        match (&mut body, line) {
            (None, BEGIN) => body = Some(String::new()),
            (None, _) => {}
            (Some(_), BEGIN) => {
                return Err(AndroidError::Pem(format!(
                    "line {}: BEGIN inside a block",
                    n + 1
                )));
            }
            (Some(b), END) => {
                let der = B64.decode(b.as_bytes()).map_err(|e| {
                    AndroidError::Pem(format!("certificate {}: bad base64: {e}", out.len()))
                })?;
                if der.is_empty() {
                    return Err(AndroidError::Pem(format!(
                        "certificate {} is empty",
                        out.len()
                    )));
                }
                out.push(der);
                body = None;
            }
            (Some(b), l) => b.extend(l.chars().filter(|c| !c.is_whitespace())),
        }
    }
    if body.is_some() {
        return Err(AndroidError::Pem("unterminated CERTIFICATE block".into()));
    }
    if out.is_empty() {
        return Err(AndroidError::Pem("no CERTIFICATE block".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_blocks_and_rejects_malformed_text() {
        let ok = format!("comment\n{BEGIN}\nAQID\nBA==\n{END}\n{BEGIN}\nBQ==\n{END}\n");
        assert_eq!(
            parse_pem_chain(&ok).unwrap(),
            vec![vec![1, 2, 3, 4], vec![5]]
        );
        assert!(parse_pem_chain("").is_err());
        assert!(parse_pem_chain(&format!("{BEGIN}\nAQID\n")).is_err());
        assert!(parse_pem_chain(&format!("{BEGIN}\n{BEGIN}\n{END}\n")).is_err());
        assert!(parse_pem_chain(&format!("{BEGIN}\n!!!\n{END}\n")).is_err());
        assert!(parse_pem_chain(&format!("{BEGIN}\n{END}\n")).is_err());
    }
}
