//! The backend config the benchmarks run the in-process server with.

use std::path::Path;

use anyhow::Result;

/// Writes the server's config under `root`: loopback ephemeral ports, rate limits out of the
/// way (a benchmark is one client making every call), cheap argon2 (it only runs at account
/// creation and enrollment), no event log required, results valid for `token_minutes`.
pub fn write_config(root: &Path, database_url: Option<&str>, token_minutes: u64) -> Result<()> {
    let etc = root.join("etc/enigm");
    std::fs::create_dir_all(&etc)?;
    std::fs::write(
        etc.join("backend-policy.toml"),
        format!(
            "[tpm]\nrequire_event_log = false\n[tpm.pcrs]\n\"7\" = [\"{}\"]\n",
            "07".repeat(32)
        ),
    )?;
    let db = database_url.map_or_else(String::new, |url| format!("database_url = \"{url}\"\n"));
    std::fs::write(
        etc.join("backend.toml"),
        format!(
            "challenge_ttl_secs = 60\n\
             policy_file = \"/etc/enigm/backend-policy.toml\"\n\
             token_lifetime_minutes = {token_minutes}\n\
             {db}\
             [listen]\ngrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
             [argon2]\nm_kib = 64\nt = 1\np = 1\n\
             [rate_limit]\nper_minute = 100000000\nburst = 10000000\n\
             [relay_rate_limit]\nper_minute = 100000000\nburst = 10000000\n"
        ),
    )?;
    Ok(())
}
