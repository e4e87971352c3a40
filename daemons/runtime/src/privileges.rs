//! Privilege drop: switch to the daemon's configured user and group, keeping only the Linux
//! capabilities it needs.
//!
//! A daemon started as root drops before it serves; one started by systemd as its own user
//! (`User=` in the unit) is already there and only sheds capabilities. The user is the
//! configured one, or else the daemon's own system user: a daemon never serves as root.

use std::collections::HashSet;

use caps::{CapSet, Capability};
use nix::unistd::{Gid, Group, Uid, User};
use serde::Deserialize;

/// The `[privileges]` section of a daemon's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivilegeConfig {
    /// User to run as (a name from the passwd database); empty means the daemon's own system
    /// user (e.g. `enigm-tscd`).
    pub user: String,
    /// Group to run as; empty means the user's primary group.
    pub group: String,
}

/// A privilege drop that could not be done; the daemon must not go on.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// The configured user is not in the passwd database.
    #[error("user `{0}` does not exist (create it with systemd-sysusers)")]
    NoSuchUser(String),
    /// The configured group is not in the group database.
    #[error("group `{0}` does not exist")]
    NoSuchGroup(String),
    /// No user to drop to.
    #[error("no user to run as: set privileges.user")]
    WouldStayRoot,
    /// Started as some third user that is neither root nor the configured one.
    #[error(
        "started as uid {current}, but configured user `{user}` has uid {target}; start as root or as that user"
    )]
    WrongUser {
        /// The uid the process has.
        current: u32,
        /// The configured user.
        user: String,
        /// Its uid.
        target: u32,
    },
    /// A system call failed.
    #[error("privilege drop failed at {step}: {source}")]
    Sys {
        /// What was being done.
        step: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// Root could be regained after the drop.
    #[error("privilege drop did not stick: root is still reachable")]
    NotDropped,
}

/// The identity the daemon ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Real, effective and saved uid.
    pub uid: u32,
    /// Real, effective and saved gid.
    pub gid: u32,
    /// Capabilities left in the permitted and effective sets.
    pub capabilities: Vec<Capability>,
}

fn sys(step: &'static str) -> impl FnOnce(nix::Error) -> PrivilegeError {
    move |errno| PrivilegeError::Sys {
        step,
        source: errno.into(),
    }
}

fn caps_err(step: &'static str) -> impl FnOnce(caps::errors::CapsError) -> PrivilegeError {
    move |err| PrivilegeError::Sys {
        step,
        source: std::io::Error::other(err.to_string()),
    }
}

/// Drops to the configured user (else `system_user`) and group, keeping only `keep`
/// capabilities.
pub fn drop_privileges(
    config: &PrivilegeConfig,
    system_user: &str,
    keep: &[Capability],
) -> Result<Identity, PrivilegeError> {
    let current = Uid::effective();
    let name = if config.user.is_empty() {
        system_user
    } else {
        config.user.as_str()
    };
    if name.is_empty() {
        return Err(PrivilegeError::WouldStayRoot);
    }
    let user = User::from_name(name)
        .map_err(sys("looking up user"))?
        .ok_or_else(|| PrivilegeError::NoSuchUser(name.to_owned()))?;
    let gid = if config.group.is_empty() {
        user.gid
    } else {
        Group::from_name(&config.group)
            .map_err(sys("looking up group"))?
            .ok_or_else(|| PrivilegeError::NoSuchGroup(config.group.clone()))?
            .gid
    };
    if current == user.uid {
        restrict_capabilities(keep)?;
        return identity();
    }
    if !current.is_root() {
        return Err(PrivilegeError::WrongUser {
            current: current.as_raw(),
            user: name.to_owned(),
            target: user.uid.as_raw(),
        });
    }
    switch_user(user.uid, gid, keep)?;
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(PrivilegeError::NotDropped);
    }
    let identity = identity()?;
    tracing::info!(uid = identity.uid, gid = identity.gid, capabilities = ?identity.capabilities, "privileges dropped");
    Ok(identity)
}

fn switch_user(uid: Uid, gid: Gid, keep: &[Capability]) -> Result<(), PrivilegeError> {
    let keep_set: HashSet<Capability> = keep.iter().copied().collect();
    // While still root: drop every bounding-set capability we will never need again.
    for cap in caps::all() {
        if !keep_set.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(caps_err("dropping bounding capability"))?;
        }
    }
    caps::clear(None, CapSet::Inheritable)
        .map_err(caps_err("clearing inheritable capabilities"))?;
    caps::clear(None, CapSet::Ambient).map_err(caps_err("clearing ambient capabilities"))?;
    if !keep_set.is_empty() {
        caps::securebits::set_keepcaps(true).map_err(caps_err("setting keep-caps"))?;
    }
    nix::unistd::setgroups(&[gid]).map_err(sys("setgroups"))?;
    nix::unistd::setresgid(gid, gid, gid).map_err(sys("setresgid"))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(sys("setresuid"))?;
    restrict_capabilities(keep)
}

/// Leaves exactly `keep` in the permitted and effective sets, and nothing inheritable.
/// Makes no system call to change them when they are already so (a daemon started by systemd
/// with an empty bounding set), so its syscall filter need not allow `capset`.
fn restrict_capabilities(keep: &[Capability]) -> Result<(), PrivilegeError> {
    let keep_set: caps::CapsHashSet = keep.iter().copied().collect();
    let read = |set| caps::read(None, set).map_err(caps_err("reading capabilities"));
    if read(CapSet::Permitted)? == keep_set
        && read(CapSet::Effective)? == keep_set
        && read(CapSet::Inheritable)?.is_empty()
    {
        return Ok(());
    }
    caps::set(None, CapSet::Effective, &keep_set)
        .map_err(caps_err("setting effective capabilities"))?;
    caps::set(None, CapSet::Permitted, &keep_set)
        .map_err(caps_err("setting permitted capabilities"))?;
    caps::clear(None, CapSet::Inheritable)
        .map_err(caps_err("clearing inheritable capabilities"))?;
    if !keep_set.is_empty() {
        caps::securebits::set_keepcaps(false).map_err(caps_err("clearing keep-caps"))?;
    }
    Ok(())
}

fn identity() -> Result<Identity, PrivilegeError> {
    let uid = nix::unistd::getresuid().map_err(sys("getresuid"))?;
    let gid = nix::unistd::getresgid().map_err(sys("getresgid"))?;
    if uid.real != uid.effective
        || uid.effective != uid.saved
        || gid.real != gid.effective
        || gid.effective != gid.saved
    {
        return Err(PrivilegeError::NotDropped);
    }
    let mut capabilities: Vec<Capability> = caps::read(None, CapSet::Permitted)
        .map_err(caps_err("reading capabilities"))?
        .into_iter()
        .collect();
    capabilities.sort_by_key(|cap| cap.index());
    Ok(Identity {
        uid: uid.effective.as_raw(),
        gid: gid.effective.as_raw(),
        capabilities,
    })
}
