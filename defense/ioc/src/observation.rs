//! What a scanner saw: one object (a file, a process, a connection, ...) described by its
//! attributes, each value normalized the way indicators are.

use std::borrow::Cow;
use std::net::Ipv4Addr;

use crate::attribute::Attribute;

/// One observed object: a few attribute values that belong together (a file's name, path and
/// hash; an app's id and certificate digest). Comparisons joined by `AND` inside one STIX
/// bracket must all hold for the same observation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation<'a> {
    values: Vec<(Attribute, Cow<'a, str>)>,
}

impl<'a> Observation<'a> {
    /// An empty observation.
    pub fn new() -> Self {
        Self::default()
    }

    /// An observation of one value.
    pub fn single(attribute: Attribute, value: &'a str) -> Self {
        Self::new().with(attribute, value)
    }

    /// Adds a value (normalized). A URL also adds its host as a domain (or an IPv4 address),
    /// so domain indicators match URLs as in MVT.
    pub fn with(mut self, attribute: Attribute, value: &'a str) -> Self {
        self.push(attribute, value);
        self
    }

    /// Adds a value (normalized); see [`Observation::with`].
    pub fn push(&mut self, attribute: Attribute, value: &'a str) {
        if attribute == Attribute::Url
            && let Some(host) = url_host(value)
        {
            let host_attribute = if host.parse::<Ipv4Addr>().is_ok() {
                Attribute::Ipv4Addr
            } else {
                Attribute::DomainName
            };
            let host = host_attribute.normalize(host).into_owned();
            self.values.push((host_attribute, Cow::Owned(host)));
        }
        self.values.push((attribute, attribute.normalize(value)));
    }

    /// Every (attribute, normalized value) pair.
    pub fn values(&self) -> &[(Attribute, Cow<'a, str>)] {
        &self.values
    }

    /// The values observed for one attribute.
    pub fn values_of(&self, attribute: Attribute) -> impl Iterator<Item = &str> {
        self.values
            .iter()
            .filter(move |(a, _)| *a == attribute)
            .map(|(_, v)| v.as_ref())
    }
}

/// The host part of a URL (`scheme://user@host:port/path` → `host`); `None` when there is none.
pub fn url_host(url: &str) -> Option<&str> {
    let rest = match url.find("://") {
        Some(at) => &url[at + 3..],
        None => url,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = match host_port.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => host_port,
    };
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_hosts() {
        let cases = [
            ("https://a.Evil.com/x?y", Some("a.Evil.com")),
            ("http://user:pw@host.org:8080/p", Some("host.org")),
            ("evil.com/path", Some("evil.com")),
            ("http://1.2.3.4/", Some("1.2.3.4")),
            ("https:///nohost", None),
            ("", None),
        ];
        for (url, expected) in cases {
            assert_eq!(url_host(url), expected, "{url}");
        }
    }

    #[test]
    fn urls_add_their_host() {
        let observation = Observation::single(Attribute::Url, "https://WWW.Evil.com/a");
        assert_eq!(
            observation
                .values_of(Attribute::DomainName)
                .collect::<Vec<_>>(),
            ["www.evil.com"]
        );
        let observation = Observation::single(Attribute::Url, "http://10.0.0.1:80/");
        assert_eq!(
            observation
                .values_of(Attribute::Ipv4Addr)
                .collect::<Vec<_>>(),
            ["10.0.0.1"]
        );
    }
}
