//! A release as repository targets: a build's signed manifest and full image, and deltas to
//! its image from earlier builds of the same hardware.
//!
//! Target names are what devices ask for: `HARDWARE/manifest.json`, `HARDWARE/root.erofs`
//! and `HARDWARE/delta/SOURCE-TARGET.zst` (see [`enigm_delta::target_name`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use enigm_manifest::Manifest;

/// A delta made for a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaMade {
    /// Its target name.
    pub name: String,
    /// The file written (in the new build's directory).
    pub path: PathBuf,
    /// The version it updates from.
    pub from_version: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The targets of one release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// `(target name, file)` for every target, the manifest first.
    pub files: Vec<(String, PathBuf)>,
    /// The deltas among them.
    pub deltas: Vec<DeltaMade>,
    /// The release's manifest.
    pub manifest: Manifest,
}

/// The (unverified: the OEM's own) signed part of `build/manifest.json`.
pub fn read_manifest(build: &Path) -> Result<Manifest> {
    let path = build.join("manifest.json");
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))?;
    Manifest::from_json(&value["signed"]).with_context(|| format!("in {}", path.display()))
}

/// The root image of `build`, checked against its manifest.
fn read_image(build: &Path, manifest: &Manifest) -> Result<Vec<u8>> {
    let path = build.join("root.erofs");
    let image = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    if image.len() as u64 != manifest.root_size
        || hex::encode(openssl::sha::sha256(&image)) != manifest.root_sha256
    {
        bail!("{} differs from its manifest", path.display());
    }
    Ok(image)
}

/// `text` with everything but ASCII letters, digits, `.`, `_` and `-` replaced by `_`.
fn file_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The targets for the build in `build`, with a delta (zstd `level`) from each build in
/// `deltas_from`, written next to the build as `delta-from-VERSION.zst`.
pub fn release(build: &Path, deltas_from: &[PathBuf], level: i32) -> Result<Release> {
    let manifest = read_manifest(build)?;
    let hardware = &manifest.hardware;
    let mut files = vec![
        (
            format!("{hardware}/manifest.json"),
            build.join("manifest.json"),
        ),
        (format!("{hardware}/root.erofs"), build.join("root.erofs")),
    ];
    let mut deltas = Vec::new();
    if !deltas_from.is_empty() {
        let target = read_image(build, &manifest)?;
        for old_build in deltas_from {
            let old = read_manifest(old_build)?;
            if old.hardware != *hardware {
                bail!(
                    "{} is for hardware {:?}, this release for {hardware:?}",
                    old_build.display(),
                    old.hardware
                );
            }
            if old.root_sha256 == manifest.root_sha256 {
                bail!(
                    "{} holds the same image as this release",
                    old_build.display()
                );
            }
            let source = read_image(old_build, &old)?;
            let name = enigm_delta::target_name(hardware, &old.root_sha256, &manifest.root_sha256);
            let path = build.join(format!("delta-from-{}.zst", file_safe(&old.version)));
            let mut out = Vec::new();
            enigm_delta::create(&source, &target, level, &mut out)
                .with_context(|| format!("making the delta from {}", old.version))?;
            std::fs::write(&path, &out).with_context(|| format!("writing {}", path.display()))?;
            deltas.push(DeltaMade {
                name: name.clone(),
                path: path.clone(),
                from_version: old.version,
                size: out.len() as u64,
            });
            files.push((name, path));
        }
    }
    Ok(Release {
        files,
        deltas,
        manifest,
    })
}
