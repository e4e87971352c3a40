//! Security patch age: the installed security patch level against a configured maximum age.

use super::{Check, Context, Rule, Unreadable, value};
use crate::model::Finding;

pub(super) const CHECKS: &[Check] = &[Check {
    id: "patch.security-patch-age",
    category: "patch",
    title: "Security patches current",
    level: 1,
    why: "Every month without patches leaves publicly known vulnerabilities open",
    fix: "Install the latest system update",
    inputs: &["/etc/os-release", "/usr/lib/os-release"],
    rule: Rule::Probe(patch_age),
}];

/// The os-release key where Linux builds record their security patch level.
pub const OS_RELEASE_KEY: &str = "ENIGM_SECURITY_PATCH";

const SECONDS_PER_DAY: u64 = 86_400;

fn patch_age(context: &Context<'_>) -> Result<Finding, Unreadable> {
    let Some(level) = patch_level(context)? else {
        return Ok(Finding::unavailable("no security patch level recorded"));
    };
    let Some(patch_day) = parse_date(&level) else {
        return Ok(Finding::unavailable(format!(
            "unreadable patch level {level:?}"
        )));
    };
    let today = (context.now_unix / SECONDS_PER_DAY) as i64;
    let age = today - patch_day;
    let max = i64::from(context.config.max_patch_age_days);
    if age < -1 {
        return Ok(Finding::fail(format!("{level} is in the future")));
    }
    let age = age.max(0);
    Ok(Finding::pass_if(
        age <= max,
        format!("{level}, {age} days old (max {max})"),
    ))
}

fn patch_level(context: &Context<'_>) -> Result<Option<String>, Unreadable> {
    if let Some(level) = context.properties.get("ro.build.version.security_patch") {
        return Ok(Some(level.to_owned()));
    }
    for path in ["/etc/os-release", "/usr/lib/os-release"] {
        let Some(text) = value(context, path)? else {
            continue;
        };
        let level = text.lines().find_map(|line| {
            let value = line.strip_prefix(OS_RELEASE_KEY)?.strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_owned())
        });
        if level.is_some() {
            return Ok(level);
        }
    }
    Ok(None)
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (proleptic Gregorian calendar).
pub fn parse_date(text: &str) -> Option<i64> {
    let mut parts = text.trim().splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: i64 = parts.next()?.parse().ok()?;
    let day: i64 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || !(1970..=9999).contains(&year) {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_table() {
        let cases = [
            ("1970-01-01", Some(0)),
            ("2000-03-01", Some(11_017)),
            ("2026-11-22", Some(20_779)),
            ("2024-02-29", Some(19_782)),
            ("2026-13-01", None),
            ("2026-11", None),
            ("soon", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_date(text), expected, "{text}");
        }
    }
}
