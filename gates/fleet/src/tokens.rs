//! Join tokens: what a machine's boot script carries instead of a key. Each
//! is minted for one machine of one partition, works once, expires within
//! minutes, and is kept only as its SHA-256 hash, in a file that survives a
//! gate restart (a machine may boot while its gate restarts).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long a token works by default.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

/// Why a token was refused. The messages say no more than a stranger may know.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Never minted here (or long expired and forgotten).
    #[error("the join token is not known to this gate")]
    Unknown,
    /// Already traded for a certificate.
    #[error("the join token was already used; a token works once")]
    Used,
    /// Past its expiry.
    #[error("the join token expired")]
    Expired,
    /// The token file could not be written.
    #[error("cannot save join tokens: {0}")]
    Save(String),
}

/// Who a token lets in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The partition the machine belongs to.
    pub partition: String,
    /// The machine within it.
    pub machine: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    /// Hex SHA-256 of the token.
    hash: String,
    grant: Grant,
    /// Unix ms.
    expires_ms: u64,
    used: bool,
}

/// The gate's join tokens, saved in `<state dir>/join-tokens.json`.
pub struct JoinTokens {
    path: PathBuf,
    records: Mutex<Vec<Record>>,
    random: SystemRandom,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl JoinTokens {
    /// Load the tokens kept in `state_dir` (none when the file is missing).
    pub fn open(state_dir: &Path) -> std::io::Result<Self> {
        let path = state_dir.join("join-tokens.json");
        let records = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(Self {
            path,
            records: Mutex::new(records),
            random: SystemRandom::new(),
        })
    }

    /// A new token for `grant`, working once for `ttl`. Saved before it is
    /// returned, so a machine never holds a token its gate does not know.
    pub fn mint(&self, grant: Grant, ttl: Duration) -> Result<String, TokenError> {
        let mut bytes = [0u8; 32];
        self.random
            .fill(&mut bytes)
            .map_err(|_| TokenError::Save("no randomness".into()))?;
        let token = hex::encode(bytes);
        let mut records = self.lock();
        let now = now_ms();
        records.retain(|r| r.expires_ms > now);
        records.push(Record {
            hash: hash(&token),
            grant,
            expires_ms: now + ttl.as_millis() as u64,
            used: false,
        });
        self.save(&records)?;
        Ok(token)
    }

    /// Whether `partition` has a token not used yet and not expired: its
    /// machine may still be booting.
    pub fn unused(&self, partition: &str) -> bool {
        let now = now_ms();
        self.lock()
            .iter()
            .any(|r| r.grant.partition == partition && !r.used && r.expires_ms > now)
    }

    /// Trade `token` for its grant, once.
    pub fn redeem(&self, token: &str) -> Result<Grant, TokenError> {
        let wanted = hash(token);
        let mut records = self.lock();
        let record = records
            .iter_mut()
            .find(|r| r.hash == wanted)
            .ok_or(TokenError::Unknown)?;
        if record.used {
            return Err(TokenError::Used);
        }
        if record.expires_ms <= now_ms() {
            return Err(TokenError::Expired);
        }
        record.used = true;
        let grant = record.grant.clone();
        self.save(&records)?;
        Ok(grant)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Record>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Write the records atomically and durably (temp file, fsync, rename).
    fn save(&self, records: &[Record]) -> Result<(), TokenError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let save = || -> std::io::Result<()> {
            let tmp = self.path.with_extension("tmp");
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&serde_json::to_vec(records)?)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        save().map_err(|e| TokenError::Save(format!("{}: {e}", self.path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            partition: "p1".into(),
            machine: "m0".into(),
        }
    }

    #[test]
    fn a_token_works_once_and_survives_a_restart_only_as_a_hash() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = JoinTokens::open(dir.path()).unwrap();
        let token = tokens.mint(grant(), DEFAULT_TOKEN_TTL).unwrap();
        let saved = std::fs::read_to_string(dir.path().join("join-tokens.json")).unwrap();
        assert!(!saved.contains(&token), "the file holds no token");
        let reopened = JoinTokens::open(dir.path()).unwrap();
        assert!(reopened.unused("p1"));
        assert_eq!(reopened.redeem(&token), Ok(grant()));
        assert!(!reopened.unused("p1"));
        assert_eq!(reopened.redeem(&token), Err(TokenError::Used));
        assert_eq!(
            JoinTokens::open(dir.path()).unwrap().redeem(&token),
            Err(TokenError::Used)
        );
        assert_eq!(reopened.redeem("nope"), Err(TokenError::Unknown));
    }

    #[test]
    fn an_expired_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = JoinTokens::open(dir.path()).unwrap();
        let token = tokens.mint(grant(), Duration::ZERO).unwrap();
        assert_eq!(tokens.redeem(&token), Err(TokenError::Expired));
    }
}
