//! Canonical JSON as TUF signs it (securesystemslib's `encode_canonical`, after OLPC): object
//! keys sorted by their UTF-8 bytes, no whitespace, strings with only `"` and `\` escaped,
//! integers only.

use serde_json::Value;

use crate::error::TufError;

/// The canonical encoding of `value`.
pub fn encode(value: &Value) -> Result<Vec<u8>, TufError> {
    let mut out = Vec::new();
    write(value, &mut out)?;
    Ok(out)
}

fn write(value: &Value, out: &mut Vec<u8>) -> Result<(), TufError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            if n.is_f64() {
                return Err(TufError::Format(format!(
                    "{n}: canonical JSON has no floating-point numbers"
                )));
            }
            out.extend_from_slice(n.to_string().as_bytes());
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                if let Some(v) = map.get(key) {
                    write(v, out)?;
                }
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in s.as_bytes() {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorted_compact_minimal_escapes() {
        let cases = [
            (
                json!({"b": 1, "a": [true, null, "x"]}),
                r#"{"a":[true,null,"x"],"b":1}"#,
            ),
            (
                json!({"q": "say \"hi\"\\ é\n"}),
                "{\"q\":\"say \\\"hi\\\"\\\\ é\n\"}",
            ),
            (
                json!({"Z": 0, "a": -5, "_": {}}),
                r#"{"Z":0,"_":{},"a":-5}"#,
            ),
            (json!([]), "[]"),
        ];
        for (value, expected) in cases {
            assert_eq!(
                String::from_utf8(encode(&value).unwrap()).unwrap(),
                expected
            );
        }
        assert!(encode(&json!({"f": 1.5})).is_err());
    }
}
