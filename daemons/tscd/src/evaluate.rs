//! One evaluation: read the sysroot once, run every check, score the result.

use std::path::PathBuf;

use enigm_runtime::sysroot::Sysroot;

use crate::checks::{Check, Context, Rule, catalogue};
use crate::config::PostureConfig;
use crate::model::{CheckReport, Posture};
use crate::mounts::parse_mountinfo;
use crate::properties::Properties;
use crate::score;
use crate::signals::SignalSnapshot;

/// Evaluates the posture of the device under a sysroot.
#[derive(Debug, Clone)]
pub struct Evaluator {
    sysroot: Sysroot,
    config: PostureConfig,
    checks: Vec<Check>,
}

impl Evaluator {
    /// An evaluator with the full check catalogue.
    pub fn new(sysroot: Sysroot, config: PostureConfig) -> Self {
        Self {
            sysroot,
            config,
            checks: catalogue(),
        }
    }

    /// Runs every check and scores them.
    pub fn evaluate(&self, signals: &SignalSnapshot, now_unix: u64) -> Posture {
        let properties = match self.sysroot.read_to_string(&self.config.properties_file) {
            Ok(text) => Properties::parse(&text),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Properties::default(),
            Err(_) => Properties::unreadable(),
        };
        let mounts = self
            .sysroot
            .read_to_string("/proc/self/mountinfo")
            .map(|text| parse_mountinfo(&text))
            .unwrap_or_default();
        let context = Context {
            sysroot: &self.sysroot,
            properties: &properties,
            mounts: &mounts,
            config: &self.config,
            signals,
            now_unix,
        };
        let checks: Vec<CheckReport> = self
            .checks
            .iter()
            .map(|check| report(check, &context))
            .collect();
        Posture {
            level: score::level(&checks),
            runtime_issue: score::runtime_issue(&checks),
            evaluated_at: now_unix,
            checks,
        }
    }

    /// The files and directories (resolved under the sysroot) whose changes should trigger a
    /// re-evaluation.
    pub fn watch_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self
            .checks
            .iter()
            .flat_map(|check| {
                let mut inputs: Vec<String> = check.inputs.iter().map(|p| p.to_string()).collect();
                if let Rule::Sysctl(rule) = check.rule {
                    inputs.push(rule.path());
                }
                inputs
            })
            .chain([self.config.properties_file.clone()])
            .map(|path| self.sysroot.path(path))
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }
}

fn report(check: &Check, context: &Context<'_>) -> CheckReport {
    let finding = check.evaluate(context);
    CheckReport {
        id: check.id.to_owned(),
        category: check.category.to_owned(),
        title: check.title.to_owned(),
        level: check.level,
        result: finding.outcome.as_str().to_owned(),
        observed: finding.observed,
        why: check.why.to_owned(),
        fix: check.fix.to_owned(),
    }
}
