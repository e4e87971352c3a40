//! The update engine: what `enigm-updated` does when asked to check, download and apply.
//!
//! - **Check**: refresh the TUF metadata (`enigm-tuf`), fetch the target
//!   `HARDWARE/manifest.json` through it, and open the manifest with the device's image keys,
//!   hardware name and rollback index (`enigm-manifest`).
//! - **Download**: the payload, fetched resumably (`enigm_tuf::download`) into the state
//!   directory: the delta from the running image to the new one when the repository offers it
//!   (`HARDWARE/delta/SOURCE-TARGET.zst`, named by the SHA-256 of the running slot's image and
//!   of the manifest's), else the full image `HARDWARE/root.erofs`, whose TUF length and hash
//!   must equal the manifest's.
//! - **Apply**: install it into the inactive slot (`enigm-installer`; a delta only after the
//!   running slot is checked to hold its source), which activates the slot for the next boot.
//!
//! - **Confirm** (after the reboot, [`Engine::confirm_boot`]): when the slot written by
//!   apply is the one running and not yet marked good, check it (its dm-verity tree against
//!   the manifest, and the caller's health check of the running system), then mark it good
//!   and raise the rollback index; when the other slot is running, the update fell back, and
//!   the state says so.
//!
//! Every step moves the [`State`] on, or to [`State::Failed`] with the step and the reason;
//! a later step refuses to run before an earlier one succeeded. [`Engine::signal`] is the
//! reading `enigm-tscd` takes for its `signal.update` check.

use std::collections::BTreeMap;
use std::path::PathBuf;

use enigm_installer::{
    InstallError, RollbackStore, confirm, install, install_delta, slot_image, verify_slot,
};
use enigm_manifest::{Manifest, ManifestError};
use enigm_slots::{Slot, SlotStore};
use enigm_tuf::fetch::UrlFetcher;
use enigm_tuf::transport::TlsConfig;
use enigm_tuf::{Config, TufError, Updater};
use serde_json::Value;

/// Where the engine looks and what it trusts.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// TUF metadata base URL.
    pub metadata_url: String,
    /// TUF targets base URL.
    pub targets_url: String,
    /// State directory: `tuf/` (trusted metadata, holding `root.json`) and `downloads/`.
    pub state_dir: PathBuf,
    /// This device's hardware name (the target directory in the repository).
    pub hardware: String,
    /// The image keys manifests must be signed with (key ID → TUF public key object).
    pub image_keys: BTreeMap<String, Value>,
    /// How many of them.
    pub image_threshold: u64,
    /// Boots a new slot gets to pass its health check.
    pub tries: u8,
    /// How `https://` servers are checked.
    pub tls: TlsConfig,
}

/// Where an update stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Nothing checked yet.
    Idle,
    /// The repository offers nothing newer than what runs.
    UpToDate,
    /// A newer image is offered.
    Available(Manifest),
    /// Its payload is downloaded and checked.
    Downloaded(Manifest),
    /// It is installed into `slot`, which boots next.
    Applied {
        /// The image.
        manifest: Manifest,
        /// The slot it went into.
        slot: Slot,
    },
    /// A step failed.
    Failed {
        /// Which step.
        step: &'static str,
        /// Why.
        reason: String,
    },
}

impl State {
    /// A one-word name (`idle`, `up-to-date`, `available`, `downloaded`, `applied`, `failed`).
    pub fn name(&self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::UpToDate => "up-to-date",
            State::Available(_) => "available",
            State::Downloaded(_) => "downloaded",
            State::Applied { .. } => "applied",
            State::Failed { .. } => "failed",
        }
    }
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// TUF refused the metadata or a target.
    #[error(transparent)]
    Tuf(#[from] TufError),
    /// The manifest was refused.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Installing failed.
    #[error(transparent)]
    Install(#[from] InstallError),
    /// TUF and the manifest disagree about the payload.
    #[error("the payload's TUF entry ({tuf}) differs from the manifest ({manifest})")]
    PayloadMismatch {
        /// What TUF says.
        tuf: String,
        /// What the manifest says.
        manifest: String,
    },
    /// The slot written by an update is not the one that booted.
    #[error("{version} in slot {slot} did not pass its health check; slot {running} runs again")]
    FellBack {
        /// The update's version.
        version: String,
        /// The slot it went into.
        slot: Slot,
        /// The slot running now.
        running: Slot,
    },
    /// The new slot booted but the system's health check failed; it stays unconfirmed.
    #[error("{version} in slot {slot} failed its health check: {reason}")]
    Unhealthy {
        /// The update's version.
        version: String,
        /// The slot running it.
        slot: Slot,
        /// What failed.
        reason: String,
    },
    /// Slot control.
    #[error(transparent)]
    Slots(#[from] enigm_slots::SlotError),
    /// A step asked for out of order.
    #[error("{step} needs {needs} first (state: {state})")]
    OutOfOrder {
        /// The step.
        step: &'static str,
        /// What must come first.
        needs: &'static str,
        /// The current state.
        state: &'static str,
    },
}

/// Which payload a download fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// The whole image.
    Full,
    /// A delta against the running slot's image.
    Delta,
}

/// The engine over slot control and the slots' partitions (a GPT disk, or Android's
/// boot-control HAL and partitions by name).
pub struct Engine<S: SlotStore> {
    config: EngineConfig,
    control: S,
    running: Slot,
    rollback: Box<dyn RollbackStore + Send>,
    state: State,
    payload: Payload,
}

fn sha256_of(hashes: &BTreeMap<String, String>) -> String {
    hashes.get("sha256").cloned().unwrap_or_default()
}

impl<S: SlotStore> Engine<S> {
    /// An engine for the device running `running` from `control`'s disk.
    pub fn new(
        config: EngineConfig,
        control: S,
        running: Slot,
        rollback: Box<dyn RollbackStore + Send>,
    ) -> Self {
        Self {
            config,
            control,
            running,
            rollback,
            state: State::Idle,
            payload: Payload::Full,
        }
    }

    /// The payload the last download fetched (a delta, or the full image).
    pub fn payload(&self) -> Payload {
        self.payload
    }

    /// The current state.
    pub fn state(&self) -> &State {
        &self.state
    }

    fn updater(&self, now: i64) -> Result<Updater<UrlFetcher>, EngineError> {
        Ok(Updater::new(
            &self.config.state_dir.join("tuf"),
            &self.config.metadata_url,
            UrlFetcher::new(self.config.tls.clone()),
            now,
            Config::default(),
        )?)
    }

    fn downloads(&self) -> PathBuf {
        self.config.state_dir.join("downloads")
    }

    fn record<T>(
        &mut self,
        step: &'static str,
        result: Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        if let Err(err) = &result {
            self.state = State::Failed {
                step,
                reason: err.to_string(),
            };
        }
        result
    }

    /// Checks the repository (at `now`, unix seconds, the fixed update start time).
    pub fn check(&mut self, now: i64) -> Result<&State, EngineError> {
        let result = self.check_inner(now);
        let state = self.record("check", result)?;
        self.state = state;
        Ok(&self.state)
    }

    fn check_inner(&mut self, now: i64) -> Result<State, EngineError> {
        let mut updater = self.updater(now)?;
        updater.refresh()?;
        let downloads = self.downloads();
        std::fs::create_dir_all(&downloads).map_err(|source| TufError::Io {
            op: "creating",
            path: downloads.display().to_string(),
            source,
        })?;
        let name = format!("{}/manifest.json", self.config.hardware);
        let path = updater.download(&name, &self.config.targets_url, &downloads)?;
        let bytes = std::fs::read(&path).map_err(|source| TufError::Io {
            op: "reading",
            path: path.display().to_string(),
            source,
        })?;
        let installed = self.rollback.get()?;
        let manifest = Manifest::open(
            &bytes,
            &self.config.image_keys,
            self.config.image_threshold,
            &self.config.hardware,
            installed,
        )?;
        Ok(if manifest.rollback_index <= installed {
            State::UpToDate
        } else {
            State::Available(manifest)
        })
    }

    /// Downloads the payload of the available image.
    pub fn download(
        &mut self,
        now: i64,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<&State, EngineError> {
        let State::Available(manifest) = self.state.clone() else {
            return Err(EngineError::OutOfOrder {
                step: "download",
                needs: "a check that found an update",
                state: self.state.name(),
            });
        };
        let result = self.download_inner(now, &manifest, progress);
        self.payload = self.record("download", result)?;
        self.state = State::Downloaded(manifest);
        Ok(&self.state)
    }

    fn payload_path(&self) -> PathBuf {
        self.downloads().join("root.erofs")
    }

    fn delta_path(&self) -> PathBuf {
        self.downloads().join("root.delta")
    }

    fn download_inner(
        &mut self,
        now: i64,
        manifest: &Manifest,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Payload, EngineError> {
        let mut updater = self.updater(now)?;
        updater.refresh()?;
        if self.download_delta(&mut updater, manifest, progress)? {
            return Ok(Payload::Delta);
        }
        let name = format!("{}/root.erofs", self.config.hardware);
        let info = updater.target_info(&name)?;
        let sha = sha256_of(&info.hashes);
        if info.length != manifest.root_size || sha != manifest.root_sha256 {
            return Err(EngineError::PayloadMismatch {
                tuf: format!("{} bytes, sha256 {sha}", info.length),
                manifest: format!(
                    "{} bytes, sha256 {}",
                    manifest.root_size, manifest.root_sha256
                ),
            });
        }
        self.fetch_target(&updater, &name, &info, &self.payload_path(), progress)?;
        Ok(Payload::Full)
    }

    /// Downloads target `name` (trusted as `info`) resumably to `dest`.
    fn fetch_target(
        &self,
        updater: &Updater<UrlFetcher>,
        name: &str,
        info: &enigm_tuf::metadata::TargetFile,
        dest: &std::path::Path,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(), EngineError> {
        let sha = sha256_of(&info.hashes);
        let url = payload_url(
            &self.config.targets_url,
            name,
            &sha,
            updater.root().consistent_snapshot,
        );
        enigm_tuf::download::download_resumable(
            &url,
            dest,
            info.length,
            &sha,
            &self.config.tls,
            progress,
        )?;
        Ok(())
    }

    /// Downloads the delta from the running image to `manifest`'s when the repository offers
    /// one; false when it does not (or the running slot's image is unknown).
    fn download_delta(
        &mut self,
        updater: &mut Updater<UrlFetcher>,
        manifest: &Manifest,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<bool, EngineError> {
        let Some(running) = slot_image(&mut self.control, self.running)? else {
            return Ok(false);
        };
        let name = enigm_delta::target_name(
            &self.config.hardware,
            &running.sha256_hex(),
            &manifest.root_sha256,
        );
        let info = match updater.target_info(&name) {
            Ok(info) => info,
            Err(TufError::UnknownTarget(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        self.fetch_target(updater, &name, &info, &self.delta_path(), progress)?;
        Ok(true)
    }

    /// Installs the downloaded image into the inactive slot.
    pub fn apply(&mut self, progress: &mut dyn FnMut(u64, u64)) -> Result<&State, EngineError> {
        let State::Downloaded(manifest) = self.state.clone() else {
            return Err(EngineError::OutOfOrder {
                step: "apply",
                needs: "a finished download",
                state: self.state.name(),
            });
        };
        let result = self.apply_inner(&manifest, progress);
        let slot = self.record("apply", result)?;
        // What to confirm after the reboot.
        let pending = serde_json::json!({"slot": slot.suffix(), "manifest": manifest.to_json()});
        let path = self.pending_path();
        let written = std::fs::write(&path, pending.to_string()).map_err(|source| {
            EngineError::Tuf(TufError::Io {
                op: "writing",
                path: path.display().to_string(),
                source,
            })
        });
        self.record("apply", written)?;
        self.state = State::Applied { manifest, slot };
        Ok(&self.state)
    }

    fn pending_path(&self) -> PathBuf {
        self.config.state_dir.join("pending.json")
    }

    /// Whether the running slot was written by an earlier apply and awaits its health check
    /// (so the caller should run the system's health check before [`Engine::confirm_boot`]).
    pub fn awaiting_health_check(&mut self) -> bool {
        let Ok(text) = std::fs::read_to_string(self.pending_path()) else {
            return false;
        };
        let slot = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["slot"].as_str().and_then(parse_slot));
        slot == Some(self.running)
            && self
                .control
                .slots()
                .is_ok_and(|slots| !slots.get(self.running).successful)
    }

    /// After a reboot: confirms the slot an earlier apply wrote when it is the one running,
    /// its dm-verity tree matches the manifest and `health` (the system's own health check,
    /// e.g. that its services came up) passed: the slot is marked good and the rollback index
    /// raised. An unhealthy slot is left unconfirmed, so its tries run out and the bootloader
    /// goes back to the other slot, and the pending record stays for the next boot; when the
    /// other slot runs, the update fell back, and the state says so. Returns whether a slot
    /// was confirmed. Nothing pending: nothing to do.
    pub fn confirm_boot(&mut self, health: Result<(), String>) -> Result<bool, EngineError> {
        let path = self.pending_path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(false);
        };
        let result = self.confirm_inner(&text, health);
        if !matches!(result, Err(EngineError::Unhealthy { .. })) {
            let _ = std::fs::remove_file(&path);
        }
        let confirmed = self.record("confirm", result)?;
        Ok(confirmed)
    }

    fn confirm_inner(
        &mut self,
        pending: &str,
        health: Result<(), String>,
    ) -> Result<bool, EngineError> {
        let value: Value = serde_json::from_str(pending).map_err(|e| {
            EngineError::Manifest(ManifestError::Format(format!("pending update: {e}")))
        })?;
        let manifest = Manifest::from_json(&value["manifest"])?;
        let Some(slot) = value["slot"].as_str().and_then(parse_slot) else {
            return Err(EngineError::Manifest(ManifestError::Format(
                "pending update: no slot".into(),
            )));
        };
        if slot != self.running {
            return Err(EngineError::FellBack {
                version: manifest.version,
                slot,
                running: self.running,
            });
        }
        if self.control.slots()?.get(slot).successful {
            return Ok(false);
        }
        verify_slot(&mut self.control, slot, &manifest)?;
        if let Err(reason) = health {
            return Err(EngineError::Unhealthy {
                version: manifest.version,
                slot,
                reason,
            });
        }
        confirm(
            &mut self.control,
            slot,
            true,
            &manifest,
            self.rollback.as_mut(),
        )?;
        self.state = State::UpToDate;
        Ok(true)
    }

    /// `enigm-tscd`'s `signal.update` reading: `fail` when the last step failed (a refused
    /// update, or one that fell back), else `pass` with what runs.
    pub fn signal(&mut self) -> (String, String) {
        if let State::Failed { step, reason } = &self.state {
            let mut reason = reason.clone();
            reason.truncate(160);
            return ("fail".into(), format!("update {step} failed: {reason}"));
        }
        match self.control.slots() {
            Ok(slots) if slots.get(self.running).successful => (
                "pass".into(),
                format!("slot {} confirmed; {}", self.running, self.state.name()),
            ),
            Ok(_) => (
                "pass".into(),
                format!("slot {} awaiting its health check", self.running),
            ),
            Err(e) => ("unavailable".into(), format!("slot flags unreadable: {e}")),
        }
    }

    fn apply_inner(
        &mut self,
        manifest: &Manifest,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Slot, EngineError> {
        let path = match self.payload {
            Payload::Full => self.payload_path(),
            Payload::Delta => self.delta_path(),
        };
        let file = std::fs::File::open(&path).map_err(|source| TufError::Io {
            op: "opening",
            path: path.display().to_string(),
            source,
        })?;
        let payload = std::io::BufReader::new(file);
        let (running, tries) = (self.running, self.config.tries);
        Ok(match self.payload {
            Payload::Full => install(
                &mut self.control,
                running,
                manifest,
                payload,
                tries,
                progress,
            )?,
            Payload::Delta => install_delta(
                &mut self.control,
                running,
                manifest,
                payload,
                tries,
                progress,
            )?,
        })
    }

    /// The slot control (for confirming after a reboot).
    pub fn control(&mut self) -> &mut S {
        &mut self.control
    }
}

/// `a` or `b`, as pending records name slots.
fn parse_slot(text: &str) -> Option<Slot> {
    match text {
        "a" => Some(Slot::A),
        "b" => Some(Slot::B),
        _ => None,
    }
}

/// The URL of target `name` (hash-prefixed file name with consistent snapshots).
fn payload_url(base: &str, name: &str, sha256: &str, consistent: bool) -> String {
    let path = if consistent {
        match name.rsplit_once('/') {
            Some((dir, file)) => format!("{dir}/{sha256}.{file}"),
            None => format!("{sha256}.{name}"),
        }
    } else {
        name.to_owned()
    };
    format!("{}/{path}", base.trim_end_matches('/'))
}
