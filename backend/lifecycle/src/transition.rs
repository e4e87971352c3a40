//! The device transition table, who may request each move, and the one-step *replace*.
//!
//! Moves (anything not listed is refused with [`LifecycleError::InvalidTransition`]):
//!
//! | from                                   | request     | to        |
//! |----------------------------------------|-------------|-----------|
//! | pending                                | `Approve`   | trusted   |
//! | trusted                                | `Suspend`   | suspended |
//! | suspended                              | `Reinstate` | trusted   |
//! | pending, trusted, suspended            | `Revoke`    | revoked   |
//! | pending, trusted, suspended, revoked   | `Retire`    | retired   |
//!
//! Nothing leaves `retired`; nothing returns from `revoked` except into `retired`.
//!
//! Who may ask ([`Actor`]):
//!
//! - An **admin** (named, for the audit record) may request any allowed move.
//! - The **system** (compliance policy, retention jobs) may suspend, revoke and retire, but never
//!   grant trust (`Approve`, `Reinstate`): trust comes from a person.
//! - A **device** must be *trusted* and belong to the *same account* as the subject; a pending,
//!   suspended, revoked or retired device decides nothing. It may suspend, revoke or retire any
//!   device of its account, itself included ("sign out this device"), and approve or reinstate
//!   any device of its account except itself: no device grants itself trust.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::state::DeviceState;

/// A device's privacy-preserving handle (a keyed hash of its attestation public key, encoded
/// by the caller). Never a hardware identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeviceHandle(String);

impl DeviceHandle {
    /// Wraps an already-computed handle.
    pub fn new(handle: impl Into<String>) -> Self {
        Self(handle.into())
    }

    /// The handle's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An account's opaque identifier (not its username).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountId(String);

impl AccountId {
    /// Wraps an identifier.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The identifier's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the rules need to know about one device: who it is, whose it is, where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeviceRef {
    /// Its handle.
    pub handle: DeviceHandle,
    /// The account it is enrolled in.
    pub account: AccountId,
    /// Its current state.
    pub state: DeviceState,
}

impl DeviceRef {
    /// Builds a reference.
    pub fn new(handle: impl Into<String>, account: impl Into<String>, state: DeviceState) -> Self {
        Self {
            handle: DeviceHandle::new(handle),
            account: AccountId::new(account),
            state,
        }
    }
}

/// Who asks for a transition. Recorded with every transition by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "who")]
pub enum Actor {
    /// A device, acting through an authenticated session (its state as stored now).
    Device(DeviceRef),
    /// A named administrator of Enigm Command.
    Admin(String),
    /// The backend itself: compliance policy, retention jobs.
    System,
}

/// A requested change of state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Request {
    /// pending → trusted.
    Approve,
    /// trusted → suspended.
    Suspend,
    /// suspended → trusted.
    Reinstate,
    /// pending | trusted | suspended → revoked.
    Revoke,
    /// any but retired → retired.
    Retire,
}

impl Request {
    /// Every request (for tables and tests).
    pub const ALL: [Request; 5] = [
        Request::Approve,
        Request::Suspend,
        Request::Reinstate,
        Request::Revoke,
        Request::Retire,
    ];

    /// Whether the move grants trust (and so needs a person, and never the subject itself).
    pub const fn grants_trust(self) -> bool {
        matches!(self, Request::Approve | Request::Reinstate)
    }

    /// The stable lowercase name used in audit records.
    pub const fn as_str(self) -> &'static str {
        match self {
            Request::Approve => "approve",
            Request::Suspend => "suspend",
            Request::Reinstate => "reinstate",
            Request::Revoke => "revoke",
            Request::Retire => "retire",
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a lifecycle decision was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LifecycleError {
    /// The table has no such move from this state.
    #[error("a {from} device cannot be asked to {request}")]
    InvalidTransition {
        /// The subject's current state.
        from: DeviceState,
        /// What was asked.
        request: Request,
    },
    /// A device tried to approve or reinstate itself.
    #[error("a device cannot {request} itself")]
    SelfApproval {
        /// What was asked.
        request: Request,
    },
    /// The acting device is not trusted.
    #[error("a {state} device cannot {request} devices")]
    ActorNotTrusted {
        /// The actor's state.
        state: DeviceState,
        /// What was asked.
        request: Request,
    },
    /// The acting device belongs to another account.
    #[error("a device cannot {request} a device of another account")]
    ForeignAccount {
        /// What was asked.
        request: Request,
    },
    /// The system tried to grant trust.
    #[error("the system cannot {request} a device: granting trust needs a person")]
    SystemCannotGrantTrust {
        /// What was asked.
        request: Request,
    },
    /// An admin actor without a name (the audit record needs one).
    #[error("an admin actor needs a name")]
    AnonymousAdmin,
    /// Replace was asked with the same device as old and new.
    #[error("a device cannot replace itself")]
    ReplaceSameDevice,
    /// Replace was asked across two accounts.
    #[error("a device can only be replaced by a device of the same account")]
    ReplaceAcrossAccounts,
    /// The replacing device is neither pending nor trusted.
    #[error("a {state} device cannot take over from another device")]
    ReplacementNotEligible {
        /// The new device's state.
        state: DeviceState,
    },
    /// The replaced device is already revoked or retired.
    #[error("a {state} device cannot be replaced")]
    ReplacedNotEligible {
        /// The old device's state.
        state: DeviceState,
    },
    /// A stored state name that is not one of ours.
    #[error("unknown device state {0:?}")]
    UnknownState(String),
}

/// The move table: the state `request` leads to from `from`, if the move exists at all
/// (regardless of who asks).
pub const fn target_state(from: DeviceState, request: Request) -> Option<DeviceState> {
    use DeviceState::{Pending, Retired, Revoked, Suspended, Trusted};
    match (from, request) {
        (Pending, Request::Approve) => Some(Trusted),
        (Trusted, Request::Suspend) => Some(Suspended),
        (Suspended, Request::Reinstate) => Some(Trusted),
        (Pending | Trusted | Suspended, Request::Revoke) => Some(Revoked),
        (Pending | Trusted | Suspended | Revoked, Request::Retire) => Some(Retired),
        _ => None,
    }
}

/// Decides one transition of `subject` asked by `actor`: the new state, or why not.
///
/// Checks, in order: the move exists ([`target_state`]), then the actor's authority (see the
/// module docs).
pub fn transition(
    subject: &DeviceRef,
    request: Request,
    actor: &Actor,
) -> Result<DeviceState, LifecycleError> {
    let target = target_state(subject.state, request).ok_or(LifecycleError::InvalidTransition {
        from: subject.state,
        request,
    })?;
    authorize(subject, request, actor)?;
    Ok(target)
}

fn authorize(subject: &DeviceRef, request: Request, actor: &Actor) -> Result<(), LifecycleError> {
    match actor {
        Actor::Admin(name) => {
            if name.trim().is_empty() {
                return Err(LifecycleError::AnonymousAdmin);
            }
            Ok(())
        }
        Actor::System => {
            if request.grants_trust() {
                return Err(LifecycleError::SystemCannotGrantTrust { request });
            }
            Ok(())
        }
        Actor::Device(device) => {
            if request.grants_trust() && device.handle == subject.handle {
                return Err(LifecycleError::SelfApproval { request });
            }
            if device.state != DeviceState::Trusted {
                return Err(LifecycleError::ActorNotTrusted {
                    state: device.state,
                    request,
                });
            }
            if device.account != subject.account {
                return Err(LifecycleError::ForeignAccount { request });
            }
            Ok(())
        }
    }
}

/// The outcome of a replace: both target states, to be stored in one database transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replacement {
    /// The replaced device's new state (always revoked).
    pub old: DeviceState,
    /// The replacing device's new state (always trusted).
    pub new: DeviceState,
}

/// Decides a *replace*: `new` takes over from `old` of the same account in one step; `old`
/// becomes revoked and `new` trusted.
///
/// - `old` must be pending, trusted or suspended (revocable); `new` pending or trusted.
/// - If `new` is pending, the replace grants it trust, so the actor must be allowed to
///   [`Request::Approve`] it (an admin, or a trusted device of the account other than `new`,
///   typically `old` itself). If `new` is already trusted, the replace only revokes `old`, so
///   the actor must be allowed to [`Request::Revoke`] it (`new` itself may ask).
/// - The system never replaces: a replace is a person's decision.
pub fn replace(
    old: &DeviceRef,
    new: &DeviceRef,
    actor: &Actor,
) -> Result<Replacement, LifecycleError> {
    if old.handle == new.handle {
        return Err(LifecycleError::ReplaceSameDevice);
    }
    if old.account != new.account {
        return Err(LifecycleError::ReplaceAcrossAccounts);
    }
    if !matches!(new.state, DeviceState::Pending | DeviceState::Trusted) {
        return Err(LifecycleError::ReplacementNotEligible { state: new.state });
    }
    let Some(old_target) = target_state(old.state, Request::Revoke) else {
        return Err(LifecycleError::ReplacedNotEligible { state: old.state });
    };
    if matches!(actor, Actor::System) {
        return Err(LifecycleError::SystemCannotGrantTrust {
            request: Request::Approve,
        });
    }
    match new.state {
        DeviceState::Pending => authorize(new, Request::Approve, actor)?,
        _ => authorize(old, Request::Revoke, actor)?,
    }
    Ok(Replacement {
        old: old_target,
        new: DeviceState::Trusted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeviceState::{Pending, Retired, Revoked, Suspended, Trusted};
    use Request::{Approve, Reinstate, Retire, Revoke, Suspend};

    /// The full move table, written out: every state × request.
    const MOVES: [(DeviceState, Request, Option<DeviceState>); 25] = [
        (Pending, Approve, Some(Trusted)),
        (Pending, Suspend, None),
        (Pending, Reinstate, None),
        (Pending, Revoke, Some(Revoked)),
        (Pending, Retire, Some(Retired)),
        (Trusted, Approve, None),
        (Trusted, Suspend, Some(Suspended)),
        (Trusted, Reinstate, None),
        (Trusted, Revoke, Some(Revoked)),
        (Trusted, Retire, Some(Retired)),
        (Suspended, Approve, None),
        (Suspended, Suspend, None),
        (Suspended, Reinstate, Some(Trusted)),
        (Suspended, Revoke, Some(Revoked)),
        (Suspended, Retire, Some(Retired)),
        (Revoked, Approve, None),
        (Revoked, Suspend, None),
        (Revoked, Reinstate, None),
        (Revoked, Revoke, None),
        (Revoked, Retire, Some(Retired)),
        (Retired, Approve, None),
        (Retired, Suspend, None),
        (Retired, Reinstate, None),
        (Retired, Revoke, None),
        (Retired, Retire, None),
    ];

    /// The actors of the authority table, other than the subject itself.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Who {
        Admin,
        NamelessAdmin,
        System,
        SiblingTrusted,
        SiblingPending,
        SiblingSuspended,
        SiblingRevoked,
        SiblingRetired,
        ForeignTrusted,
        ForeignPending,
    }

    const WHO: [Who; 10] = [
        Who::Admin,
        Who::NamelessAdmin,
        Who::System,
        Who::SiblingTrusted,
        Who::SiblingPending,
        Who::SiblingSuspended,
        Who::SiblingRevoked,
        Who::SiblingRetired,
        Who::ForeignTrusted,
        Who::ForeignPending,
    ];

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Verdict {
        Allowed,
        SelfApproval,
        NotTrusted,
        Foreign,
        SystemGrant,
        Anonymous,
    }

    /// Who may ask what, for a move that exists: written out, not derived.
    fn authority(who: Who, request: Request) -> Verdict {
        use Verdict::*;
        match (who, request) {
            (Who::Admin, _) => Allowed,
            (Who::NamelessAdmin, _) => Anonymous,
            (Who::System, Approve | Reinstate) => SystemGrant,
            (Who::System, Suspend | Revoke | Retire) => Allowed,
            (Who::SiblingTrusted, _) => Allowed,
            (
                Who::SiblingPending
                | Who::SiblingSuspended
                | Who::SiblingRevoked
                | Who::SiblingRetired
                | Who::ForeignPending,
                _,
            ) => NotTrusted,
            (Who::ForeignTrusted, _) => Foreign,
        }
    }

    fn subject(state: DeviceState) -> DeviceRef {
        DeviceRef::new("dev-subject", "acct-1", state)
    }

    fn actor(who: Who) -> Actor {
        match who {
            Who::Admin => Actor::Admin("alice".into()),
            Who::NamelessAdmin => Actor::Admin("  ".into()),
            Who::System => Actor::System,
            Who::SiblingTrusted => Actor::Device(DeviceRef::new("dev-2", "acct-1", Trusted)),
            Who::SiblingPending => Actor::Device(DeviceRef::new("dev-3", "acct-1", Pending)),
            Who::SiblingSuspended => Actor::Device(DeviceRef::new("dev-4", "acct-1", Suspended)),
            Who::SiblingRevoked => Actor::Device(DeviceRef::new("dev-5", "acct-1", Revoked)),
            Who::SiblingRetired => Actor::Device(DeviceRef::new("dev-6", "acct-1", Retired)),
            Who::ForeignTrusted => Actor::Device(DeviceRef::new("dev-7", "acct-2", Trusted)),
            Who::ForeignPending => Actor::Device(DeviceRef::new("dev-8", "acct-2", Pending)),
        }
    }

    fn verdict_of(result: &Result<DeviceState, LifecycleError>) -> Option<Verdict> {
        match result {
            Ok(_) => Some(Verdict::Allowed),
            Err(LifecycleError::SelfApproval { .. }) => Some(Verdict::SelfApproval),
            Err(LifecycleError::ActorNotTrusted { .. }) => Some(Verdict::NotTrusted),
            Err(LifecycleError::ForeignAccount { .. }) => Some(Verdict::Foreign),
            Err(LifecycleError::SystemCannotGrantTrust { .. }) => Some(Verdict::SystemGrant),
            Err(LifecycleError::AnonymousAdmin) => Some(Verdict::Anonymous),
            Err(_) => None,
        }
    }

    #[test]
    fn move_table_covers_every_state_and_request() {
        for state in DeviceState::ALL {
            for request in Request::ALL {
                let rows: Vec<_> = MOVES
                    .iter()
                    .filter(|(s, r, _)| *s == state && *r == request)
                    .collect();
                assert_eq!(rows.len(), 1, "{state} × {request}");
                assert_eq!(
                    target_state(state, request),
                    rows[0].2,
                    "{state} × {request}"
                );
            }
        }
    }

    #[test]
    fn every_state_request_and_actor() {
        for (state, request, target) in MOVES {
            for who in WHO {
                let result = transition(&subject(state), request, &actor(who));
                match target {
                    None => assert_eq!(
                        result,
                        Err(LifecycleError::InvalidTransition {
                            from: state,
                            request
                        }),
                        "{state} × {request} × {who:?}"
                    ),
                    Some(target) => {
                        let expected = authority(who, request);
                        assert_eq!(
                            verdict_of(&result),
                            Some(expected),
                            "{state} × {request} × {who:?}: {result:?}"
                        );
                        if expected == Verdict::Allowed {
                            assert_eq!(result, Ok(target));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_subject_acting_on_itself() {
        use Verdict::*;
        // (state, request, verdict) for every existing move, the actor being the subject.
        let table = [
            (Pending, Approve, SelfApproval),
            (Pending, Revoke, NotTrusted),
            (Pending, Retire, NotTrusted),
            (Trusted, Suspend, Allowed),
            (Trusted, Revoke, Allowed),
            (Trusted, Retire, Allowed),
            (Suspended, Reinstate, SelfApproval),
            (Suspended, Revoke, NotTrusted),
            (Suspended, Retire, NotTrusted),
            (Revoked, Retire, NotTrusted),
        ];
        for (state, request, target) in MOVES {
            let me = subject(state);
            let result = transition(&me, request, &Actor::Device(me.clone()));
            let row = table.iter().find(|(s, r, _)| *s == state && *r == request);
            match (target, row) {
                (None, None) => assert!(
                    matches!(result, Err(LifecycleError::InvalidTransition { .. })),
                    "{state} × {request}"
                ),
                (Some(_), Some((_, _, verdict))) => {
                    assert_eq!(verdict_of(&result), Some(*verdict), "{state} × {request}")
                }
                _ => panic!("self table out of step with the move table at {state} × {request}"),
            }
        }
    }

    #[test]
    fn approval_rules() {
        let pending = DeviceRef::new("new-phone", "acct-1", Pending);
        // a trusted device of the same account approves
        assert_eq!(
            transition(&pending, Approve, &actor(Who::SiblingTrusted)),
            Ok(Trusted)
        );
        // an admin approves
        assert_eq!(
            transition(&pending, Approve, &actor(Who::Admin)),
            Ok(Trusted)
        );
        // a trusted device of another account is refused
        assert_eq!(
            transition(&pending, Approve, &actor(Who::ForeignTrusted)),
            Err(LifecycleError::ForeignAccount { request: Approve })
        );
        // a pending device of the same account is refused
        assert_eq!(
            transition(&pending, Approve, &actor(Who::SiblingPending)),
            Err(LifecycleError::ActorNotTrusted {
                state: Pending,
                request: Approve
            })
        );
        // suspended and revoked devices approve nothing
        for who in [
            Who::SiblingSuspended,
            Who::SiblingRevoked,
            Who::SiblingRetired,
        ] {
            assert!(matches!(
                transition(&pending, Approve, &actor(who)),
                Err(LifecycleError::ActorNotTrusted { .. })
            ));
        }
        // self-approval is refused, whatever state the request claims for the actor
        for claimed in DeviceState::ALL {
            let me = DeviceRef::new("new-phone", "acct-1", claimed);
            assert_eq!(
                transition(&pending, Approve, &Actor::Device(me)),
                Err(LifecycleError::SelfApproval { request: Approve })
            );
        }
        // the system never approves
        assert_eq!(
            transition(&pending, Approve, &Actor::System),
            Err(LifecycleError::SystemCannotGrantTrust { request: Approve })
        );
    }

    #[test]
    fn replace_rules() {
        let old = DeviceRef::new("old", "acct-1", Trusted);
        let new = DeviceRef::new("new", "acct-1", Pending);
        let done = Ok(Replacement {
            old: Revoked,
            new: Trusted,
        });

        // the old trusted device hands over to the new pending one
        assert_eq!(replace(&old, &new, &Actor::Device(old.clone())), done);
        // an admin may replace; so may another trusted device of the account
        assert_eq!(replace(&old, &new, &actor(Who::Admin)), done);
        assert_eq!(replace(&old, &new, &actor(Who::SiblingTrusted)), done);
        // the new pending device cannot grant itself the takeover
        assert_eq!(
            replace(&old, &new, &Actor::Device(new.clone())),
            Err(LifecycleError::SelfApproval { request: Approve })
        );
        // a new device that is already trusted may retire the old one by replace
        let new_trusted = DeviceRef::new("new", "acct-1", Trusted);
        assert_eq!(
            replace(&old, &new_trusted, &Actor::Device(new_trusted.clone())),
            done
        );
        // a lost, suspended old device is replaced by an admin, not by itself
        let old_suspended = DeviceRef::new("old", "acct-1", Suspended);
        assert_eq!(replace(&old_suspended, &new, &actor(Who::Admin)), done);
        assert_eq!(
            replace(&old_suspended, &new, &Actor::Device(old_suspended.clone())),
            Err(LifecycleError::ActorNotTrusted {
                state: Suspended,
                request: Approve
            })
        );
        // across accounts, onto itself, or by the system: refused
        let foreign_new = DeviceRef::new("new", "acct-2", Pending);
        assert_eq!(
            replace(&old, &foreign_new, &actor(Who::Admin)),
            Err(LifecycleError::ReplaceAcrossAccounts)
        );
        assert_eq!(
            replace(&old, &old, &actor(Who::Admin)),
            Err(LifecycleError::ReplaceSameDevice)
        );
        assert_eq!(
            replace(&old, &new, &Actor::System),
            Err(LifecycleError::SystemCannotGrantTrust { request: Approve })
        );
        // a foreign trusted device cannot replace
        assert_eq!(
            replace(&old, &new, &actor(Who::ForeignTrusted)),
            Err(LifecycleError::ForeignAccount { request: Approve })
        );
        // eligible states, every combination
        for old_state in DeviceState::ALL {
            for new_state in DeviceState::ALL {
                let o = DeviceRef::new("old", "acct-1", old_state);
                let n = DeviceRef::new("new", "acct-1", new_state);
                let result = replace(&o, &n, &actor(Who::Admin));
                let new_ok = matches!(new_state, Pending | Trusted);
                let old_ok = matches!(old_state, Pending | Trusted | Suspended);
                match (new_ok, old_ok) {
                    (true, true) => assert_eq!(result, done, "{old_state}/{new_state}"),
                    (false, _) => assert_eq!(
                        result,
                        Err(LifecycleError::ReplacementNotEligible { state: new_state })
                    ),
                    (true, false) => assert_eq!(
                        result,
                        Err(LifecycleError::ReplacedNotEligible { state: old_state })
                    ),
                }
            }
        }
    }

    #[test]
    fn actors_serialize_for_the_audit_record() {
        let json = serde_json::to_string(&Actor::Admin("alice".into())).unwrap();
        assert_eq!(json, r#"{"kind":"admin","who":"alice"}"#);
        let json = serde_json::to_string(&Actor::System).unwrap();
        assert_eq!(json, r#"{"kind":"system"}"#);
        let device = Actor::Device(DeviceRef::new("h", "a", Trusted));
        let back: Actor = serde_json::from_str(&serde_json::to_string(&device).unwrap()).unwrap();
        assert_eq!(back, device);
    }
}
