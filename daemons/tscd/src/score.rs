//! Scoring, after fwupd's Host Security ID.
//!
//! The level is the highest level L such that no check at or below L fails (or could not be
//! determined) and at least one check at L passes. Runtime checks (level 0) do not count toward
//! the level; any of them failing raises the separate runtime-issue flag.

use crate::model::{CheckReport, Level, MAX_LEVEL, Outcome, RUNTIME};

/// The HSI-style level of a set of checks.
pub fn level(checks: &[CheckReport]) -> Level {
    let mut achieved = 0;
    for candidate in 1..=MAX_LEVEL {
        let at_level = checks.iter().filter(|check| check.level == candidate);
        let mut passed = false;
        for check in at_level {
            match check.outcome() {
                Outcome::Fail | Outcome::Unavailable => return achieved,
                Outcome::Pass => passed = true,
                Outcome::NotApplicable => {}
            }
        }
        if passed {
            achieved = candidate;
        }
    }
    achieved
}

/// Whether any runtime check failed.
pub fn runtime_issue(checks: &[CheckReport]) -> bool {
    checks
        .iter()
        .any(|check| check.level == RUNTIME && check.outcome() == Outcome::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(level: Level, outcome: Outcome) -> CheckReport {
        CheckReport {
            id: format!("test.{level}.{}", outcome.as_str()),
            category: "test".into(),
            title: String::new(),
            level,
            result: outcome.as_str().into(),
            observed: String::new(),
            why: String::new(),
            fix: String::new(),
        }
    }

    #[test]
    fn level_table() {
        use Outcome::*;
        let cases: &[(&[(Level, Outcome)], Level)] = &[
            (&[], 0),
            (&[(1, Pass)], 1),
            (&[(1, Fail)], 0),
            (&[(1, Pass), (1, Fail)], 0),
            (&[(1, Pass), (2, Pass), (3, Pass), (4, Pass)], 4),
            (&[(1, Pass), (2, Pass), (3, Fail), (4, Pass)], 2),
            (&[(1, Pass), (2, Unavailable), (3, Pass)], 1),
            // a level with only not-applicable checks neither grants nor blocks
            (&[(1, Pass), (2, NotApplicable), (3, Pass)], 3),
            (&[(1, NotApplicable), (2, Pass)], 2),
            (&[(1, NotApplicable)], 0),
            // runtime checks do not affect the level
            (&[(0, Fail), (1, Pass)], 1),
            (&[(1, Pass), (2, Pass), (4, Fail)], 2),
        ];
        for (checks, expected) in cases {
            let reports: Vec<_> = checks.iter().map(|(l, o)| check(*l, *o)).collect();
            assert_eq!(level(&reports), *expected, "{checks:?}");
        }
    }

    #[test]
    fn runtime_issue_table() {
        use Outcome::*;
        let cases: &[(&[(Level, Outcome)], bool)] = &[
            (&[], false),
            (&[(0, Pass)], false),
            (&[(0, Unavailable), (0, NotApplicable)], false),
            (&[(0, Fail)], true),
            (&[(1, Fail)], false),
        ];
        for (checks, expected) in cases {
            let reports: Vec<_> = checks.iter().map(|(l, o)| check(*l, *o)).collect();
            assert_eq!(runtime_issue(&reports), *expected, "{checks:?}");
        }
    }
}
