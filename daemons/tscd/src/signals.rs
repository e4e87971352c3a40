//! Readings from the other Enigm daemons, gathered over D-Bus before each evaluation.
//!
//! The contract: each daemon exports `org.enigm.PostureSignal1.GetSignal() → (s result, s
//! observed)` at its object path, where `result` is `pass`, `fail`, `not-applicable` or
//! `unavailable`. A daemon that does not own its bus name, or does not answer within
//! [`CALL_TIMEOUT`], reads as unavailable.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::checks::SIGNAL_SOURCES;
use crate::model::{Finding, Outcome};

/// The interface every signal source exports.
pub const SIGNAL_INTERFACE: &str = "org.enigm.PostureSignal1";

/// How long a source may take to answer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// The readings of one evaluation, by signal id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignalSnapshot {
    readings: BTreeMap<String, Finding>,
}

impl SignalSnapshot {
    /// Records a reading.
    pub fn insert(&mut self, id: &str, finding: Finding) {
        self.readings.insert(id.to_owned(), finding);
    }

    /// The reading for `id`; unavailable when none was taken.
    pub fn finding(&self, id: &str) -> Finding {
        self.readings
            .get(id)
            .cloned()
            .unwrap_or_else(|| Finding::unavailable("not queried"))
    }
}

/// Parses a source's answer; an unknown result word reads as unavailable.
pub fn parse_answer(result: &str, observed: &str) -> Finding {
    match Outcome::parse(result) {
        Some(outcome) => Finding::new(outcome, observed),
        None => Finding::unavailable(format!("unknown result {result:?}")),
    }
}

/// Asks every source on `connection` for its reading.
pub async fn gather(connection: &zbus::Connection) -> SignalSnapshot {
    let mut snapshot = SignalSnapshot::default();
    let bus = zbus::fdo::DBusProxy::new(connection).await;
    for source in SIGNAL_SOURCES {
        let finding = match &bus {
            Ok(bus) => {
                read_source(connection, bus, source.bus_name, source.path, source.daemon).await
            }
            Err(err) => Finding::unavailable(format!("bus unavailable: {err}")),
        };
        snapshot.insert(source.id, finding);
    }
    snapshot
}

async fn read_source(
    connection: &zbus::Connection,
    bus: &zbus::fdo::DBusProxy<'_>,
    name: &'static str,
    path: &'static str,
    daemon: &'static str,
) -> Finding {
    let Ok(bus_name) = zbus::names::BusName::try_from(name) else {
        return Finding::unavailable("invalid bus name");
    };
    match bus.name_has_owner(bus_name).await {
        Ok(true) => {}
        Ok(false) => return Finding::unavailable(format!("{daemon} is not running")),
        Err(err) => {
            return Finding::unavailable(format!("cannot ask the bus about {daemon}: {err}"));
        }
    }
    let call = connection.call_method(Some(name), path, Some(SIGNAL_INTERFACE), "GetSignal", &());
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Err(_) => Finding::unavailable(format!("{daemon} did not answer in time")),
        Ok(Err(err)) => Finding::unavailable(format!("{daemon} answered with an error: {err}")),
        Ok(Ok(reply)) => match reply.body().deserialize::<(String, String)>() {
            Ok((result, observed)) => parse_answer(&result, &observed),
            Err(err) => Finding::unavailable(format!("{daemon} sent a malformed reading: {err}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_parsed_and_never_guessed() {
        let cases = [
            ("pass", Outcome::Pass),
            ("fail", Outcome::Fail),
            ("not-applicable", Outcome::NotApplicable),
            ("PASS", Outcome::Unavailable),
            ("", Outcome::Unavailable),
        ];
        for (word, expected) in cases {
            assert_eq!(parse_answer(word, "x").outcome, expected, "{word}");
        }
        assert_eq!(
            SignalSnapshot::default().finding("signal.update").outcome,
            Outcome::Unavailable
        );
    }
}
