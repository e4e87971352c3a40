//! Caller authorization for D-Bus methods.
//!
//! The caller is identified by the unix uid the bus itself verified
//! (`org.freedesktop.DBus.GetConnectionCredentials` on the message's sender), never by anything
//! the caller says. Each method belongs to a class — [`MethodClass::Read`] or
//! [`MethodClass::Change`] — with its own allow-list; a refusal is a D-Bus `AccessDenied` error
//! and a log line.

use std::collections::BTreeSet;

use serde::Deserialize;
use zbus::fdo;
use zbus::message::Header;

/// The class of a D-Bus method, each with its own allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodClass {
    /// Reads state; allowed to the `read` list and to the `change` list.
    Read,
    /// Changes state; allowed to the `change` list only.
    Change,
}

/// The `[authorization]` section: who may call each class of method. An entry is `"*"`
/// (anyone), a user name, or a numeric uid as a string.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthorizationConfig {
    /// Callers of read-class methods.
    pub read: Vec<String>,
    /// Callers of change-class methods.
    pub change: Vec<String>,
}

impl Default for AuthorizationConfig {
    fn default() -> Self {
        Self {
            read: vec!["*".to_owned()],
            change: vec!["root".to_owned()],
        }
    }
}

/// A configured principal that names no user.
#[derive(Debug, thiserror::Error)]
#[error("authorization: `{0}` is neither \"*\", a uid, nor a known user name")]
pub struct UnknownPrincipal(pub String);

/// Who may call: anyone, or a set of uids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callers {
    /// Any uid.
    Anyone,
    /// Only these uids.
    Uids(BTreeSet<u32>),
}

impl Callers {
    fn contains(&self, uid: u32) -> bool {
        match self {
            Callers::Anyone => true,
            Callers::Uids(uids) => uids.contains(&uid),
        }
    }

    /// Resolves principals with `lookup` (user name → uid).
    pub fn resolve(
        principals: &[String],
        lookup: impl Fn(&str) -> Option<u32>,
    ) -> Result<Self, UnknownPrincipal> {
        let mut uids = BTreeSet::new();
        for principal in principals {
            if principal == "*" {
                return Ok(Callers::Anyone);
            }
            let uid = principal.parse::<u32>().ok().or_else(|| lookup(principal));
            uids.insert(uid.ok_or_else(|| UnknownPrincipal(principal.clone()))?);
        }
        Ok(Callers::Uids(uids))
    }
}

/// The resolved allow-lists of one D-Bus interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerPolicy {
    read: Callers,
    change: Callers,
}

/// Looks a user name up in the passwd database.
pub fn passwd_lookup(name: &str) -> Option<u32> {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|user| user.uid.as_raw())
}

impl CallerPolicy {
    /// Resolves the configured lists with `lookup` (see [`passwd_lookup`]).
    pub fn resolve(
        config: &AuthorizationConfig,
        lookup: impl Fn(&str) -> Option<u32>,
    ) -> Result<Self, UnknownPrincipal> {
        Ok(Self {
            read: Callers::resolve(&config.read, &lookup)?,
            change: Callers::resolve(&config.change, &lookup)?,
        })
    }

    /// Whether `uid` may call a method of `class`.
    pub fn allows(&self, class: MethodClass, uid: u32) -> bool {
        match class {
            MethodClass::Read => self.read.contains(uid) || self.change.contains(uid),
            MethodClass::Change => self.change.contains(uid),
        }
    }

    /// Checks the sender of the message behind `header`; returns its uid, or `AccessDenied`.
    pub async fn authorize(
        &self,
        connection: &zbus::Connection,
        header: &Header<'_>,
        class: MethodClass,
        method: &str,
    ) -> fdo::Result<u32> {
        let Some(sender) = header.sender() else {
            tracing::warn!(method, "refused a call with no sender");
            return Err(fdo::Error::AccessDenied(format!(
                "{method}: the caller has no bus name"
            )));
        };
        let credentials = fdo::DBusProxy::new(connection)
            .await?
            .get_connection_credentials(sender.clone().into())
            .await?;
        let Some(uid) = credentials.unix_user_id() else {
            tracing::warn!(method, "refused a caller whose uid the bus does not know");
            return Err(fdo::Error::AccessDenied(format!(
                "{method}: the bus did not verify the caller's uid"
            )));
        };
        if self.allows(class, uid) {
            Ok(uid)
        } else {
            tracing::warn!(method, uid, class = ?class, "refused a D-Bus call");
            Err(fdo::Error::AccessDenied(format!(
                "{method} is not allowed for uid {uid}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<u32> {
        match name {
            "root" => Some(0),
            "owner" => Some(1000),
            _ => None,
        }
    }

    fn policy(read: &[&str], change: &[&str]) -> CallerPolicy {
        let config = AuthorizationConfig {
            read: read.iter().map(|s| s.to_string()).collect(),
            change: change.iter().map(|s| s.to_string()).collect(),
        };
        CallerPolicy::resolve(&config, lookup).unwrap()
    }

    #[test]
    fn allow_lists_per_class() {
        use MethodClass::*;
        let cases = [
            (policy(&["*"], &["root"]), Read, 4242, true),
            (policy(&["*"], &["root"]), Change, 4242, false),
            (policy(&["*"], &["root"]), Change, 0, true),
            (policy(&["owner"], &["root"]), Read, 0, true),
            (policy(&["owner"], &["root"]), Read, 1000, true),
            (policy(&["owner"], &["root"]), Read, 1001, false),
            (policy(&[], &["1000", "root"]), Change, 1000, true),
            (policy(&[], &[]), Read, 0, false),
        ];
        for (policy, class, uid, allowed) in cases {
            assert_eq!(
                policy.allows(class, uid),
                allowed,
                "{policy:?} {class:?} {uid}"
            );
        }
    }

    #[test]
    fn unknown_principals_are_rejected() {
        let config = AuthorizationConfig {
            read: vec!["nobody-here".into()],
            change: vec![],
        };
        let err = CallerPolicy::resolve(&config, lookup).unwrap_err();
        assert!(err.to_string().contains("nobody-here"));
    }
}
