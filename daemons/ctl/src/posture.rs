//! `enigmctl posture`: the Trust Security Center report.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use enigm_tscd::client::TrustSecurityCenterProxy;
use enigm_tscd::model::{CheckReport, Outcome, Posture};
use futures_util::StreamExt;

use crate::time::format_utc;

/// Exit code when the level is below `--min-level` (2 is clap's usage error).
pub const BELOW_MIN_LEVEL: u8 = 3;

#[derive(Args, Debug)]
pub struct PostureArgs {
    /// Print JSON (one object; one per line with --watch).
    #[arg(long)]
    json: bool,
    /// Keep running and print the posture again whenever it changes.
    #[arg(long)]
    watch: bool,
    /// Ask the daemon to re-evaluate first (needs change permission).
    #[arg(long)]
    refresh: bool,
    /// Exit with status 3 when the level is below this (0–4).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=4))]
    min_level: Option<u8>,
    /// Show passing and not-applicable checks too.
    #[arg(long, short)]
    all: bool,
}

pub async fn run(connection: &zbus::Connection, args: &PostureArgs) -> Result<ExitCode> {
    let proxy = TrustSecurityCenterProxy::new(connection)
        .await
        .context("cannot reach the Trust Security Center")?;
    let mut changes = if args.watch {
        Some(
            proxy
                .receive_posture_changed()
                .await
                .context("cannot subscribe to PostureChanged")?,
        )
    } else {
        None
    };
    let mut posture = if args.refresh {
        proxy
            .refresh()
            .await
            .map_err(explain)
            .context("Refresh failed")?
    } else {
        proxy
            .get_posture()
            .await
            .map_err(explain)
            .context("GetPosture failed")?
    };
    loop {
        print_posture(&posture, args)?;
        let Some(stream) = changes.as_mut() else {
            break;
        };
        if stream.next().await.is_none() {
            anyhow::bail!("the Trust Security Center went away");
        }
        posture = proxy
            .get_posture()
            .await
            .map_err(explain)
            .context("GetPosture failed")?;
    }
    Ok(match args.min_level {
        Some(min) if posture.level < min => ExitCode::from(BELOW_MIN_LEVEL),
        _ => ExitCode::SUCCESS,
    })
}

/// Turns the common bus errors into sentences.
fn explain(err: zbus::Error) -> anyhow::Error {
    use zbus::fdo::Error as Fdo;
    let (name, message) = match &err {
        zbus::Error::FDO(fdo) => match fdo.as_ref() {
            Fdo::AccessDenied(message) => ("AccessDenied", message.clone()),
            Fdo::ServiceUnknown(message) | Fdo::NameHasNoOwner(message) => {
                ("NoOwner", message.clone())
            }
            _ => return err.into(),
        },
        zbus::Error::MethodError(name, message, _) => (
            match name.as_str() {
                "org.freedesktop.DBus.Error.AccessDenied" => "AccessDenied",
                "org.freedesktop.DBus.Error.ServiceUnknown"
                | "org.freedesktop.DBus.Error.NameHasNoOwner" => "NoOwner",
                _ => return err.into(),
            },
            message.clone().unwrap_or_default(),
        ),
        _ => return err.into(),
    };
    match name {
        "AccessDenied" => anyhow::anyhow!("access denied: {message}"),
        _ => anyhow::anyhow!(
            "enigm-tscd is not running (no owner for org.enigm.TrustSecurityCenter1)"
        ),
    }
}

fn print_posture(posture: &Posture, args: &PostureArgs) -> Result<()> {
    if args.json {
        let text = if args.watch {
            serde_json::to_string(posture)?
        } else {
            serde_json::to_string_pretty(posture)?
        };
        println!("{text}");
    } else {
        print!("{}", render(posture, args.all));
        if args.watch {
            println!();
        }
    }
    Ok(())
}

/// The human report: summary, then failing and undetermined checks with why and fix, then
/// (with `all`) the rest.
pub fn render(posture: &Posture, all: bool) -> String {
    let mut out = String::new();
    let runtime = if posture.runtime_issue {
        "yes (!)"
    } else {
        "no"
    };
    out.push_str(&format!(
        "Trust Security Center: level {} of 4 (HSI:{}{}), runtime issue: {runtime}\nevaluated {}\n\n",
        posture.level,
        posture.level,
        if posture.runtime_issue { "!" } else { "" },
        format_utc(posture.evaluated_at),
    ));
    let mut sorted: Vec<&CheckReport> = posture.checks.iter().collect();
    sorted.sort_by_key(|check| (rank(check.outcome()), check.level == 0, check.level));
    let problems: Vec<&&CheckReport> = sorted
        .iter()
        .filter(|c| matches!(c.outcome(), Outcome::Fail | Outcome::Unavailable))
        .collect();
    let counts = |o: Outcome| posture.checks.iter().filter(|c| c.outcome() == o).count();
    out.push_str(&format!(
        "{} failing, {} undetermined, {} passing, {} not applicable\n",
        counts(Outcome::Fail),
        counts(Outcome::Unavailable),
        counts(Outcome::Pass),
        counts(Outcome::NotApplicable)
    ));
    for check in problems {
        out.push_str(&format!(
            "\n{} {} {}  {}\n    observed: {}\n    why: {}\n    fix: {}\n",
            marker(check.outcome()),
            level_label(check.level),
            check.id,
            check.title,
            check.observed,
            check.why,
            check.fix
        ));
    }
    if all {
        out.push('\n');
        for check in sorted
            .iter()
            .filter(|c| matches!(c.outcome(), Outcome::Pass | Outcome::NotApplicable))
        {
            out.push_str(&format!(
                "{} {} {:<42} {}\n",
                marker(check.outcome()),
                level_label(check.level),
                check.id,
                check.observed
            ));
        }
    } else {
        out.push_str("\n(passing and not-applicable checks hidden; --all shows them)\n");
    }
    out
}

fn rank(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Fail => 0,
        Outcome::Unavailable => 1,
        Outcome::Pass => 2,
        Outcome::NotApplicable => 3,
    }
}

fn marker(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Fail => "FAIL",
        Outcome::Unavailable => "????",
        Outcome::Pass => "pass",
        Outcome::NotApplicable => "n/a ",
    }
}

fn level_label(level: u8) -> String {
    if level == 0 {
        "run".to_owned()
    } else {
        format!("L{level} ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(id: &str, level: u8, result: &str) -> CheckReport {
        CheckReport {
            id: id.into(),
            category: "test".into(),
            title: format!("title of {id}"),
            level,
            result: result.into(),
            observed: format!("observed {id}"),
            why: format!("why {id}"),
            fix: format!("fix {id}"),
        }
    }

    #[test]
    fn failing_checks_come_first_with_why_and_fix() {
        let posture = Posture {
            level: 1,
            runtime_issue: true,
            evaluated_at: 0,
            checks: vec![
                check("a.pass", 1, "pass"),
                check("b.fail3", 3, "fail"),
                check("c.na", 1, "not-applicable"),
                check("d.fail2", 2, "fail"),
                check("e.unknown", 0, "unavailable"),
                check("f.runtime", 0, "fail"),
            ],
        };
        let text = render(&posture, false);
        assert!(text.contains("level 1 of 4 (HSI:1!)"), "{text}");
        let position = |needle: &str| text.find(needle).unwrap_or(usize::MAX);
        assert!(position("d.fail2") < position("b.fail3"), "{text}");
        assert!(position("b.fail3") < position("f.runtime"), "{text}");
        assert!(position("f.runtime") < position("e.unknown"), "{text}");
        assert!(text.contains("why: why d.fail2") && text.contains("fix: fix d.fail2"));
        assert!(!text.contains("a.pass"), "passing hidden without --all");
        let full = render(&posture, true);
        assert!(full.contains("a.pass") && full.contains("c.na"));
    }
}
