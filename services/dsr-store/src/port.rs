//! The state port.

use dsr_core::{Event, Household, HouseholdId};
use std::path::PathBuf;

/// What went wrong in a store; every variant says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state store at {path}: {message} (is another dsr process using this data directory?)")]
    Open { path: PathBuf, message: String },
    #[error("state store I/O failed: {0} (check free disk space and permissions)")]
    Backend(String),
    #[error("stored {what} is unreadable: {message} (restore the partition from its changelog)")]
    Corrupt { what: String, message: String },
}

/// The changes of one processed batch of one partition, written all or nothing.
#[derive(Debug, Default)]
pub struct StateBatch<'a> {
    /// Records written (new or changed), whole.
    pub households: Vec<&'a Household>,
    /// Events waiting for a household or member that is not known yet, by household: the
    /// whole list for each household named (an empty list removes it).
    pub parked: Vec<(&'a HouseholdId, &'a [Event])>,
    /// The next input offset to read: every record before it is applied.
    pub next_offset: u64,
    /// Rule versions that took effect in this batch: program id and the activation as the
    /// processor encodes it. Kept (one per program, the latest) until replaced.
    pub programs: Vec<(&'a str, &'a [u8])>,
}

/// The households of one input partition, with the offset they are applied up to.
pub trait PartitionState: Send + Sync {
    /// The partition this state belongs to.
    fn partition(&self) -> u32;
    fn get(&self, household: &HouseholdId) -> Result<Option<Household>, StoreError>;
    /// The next input offset to process (0 for a new partition).
    fn next_offset(&self) -> Result<u64, StoreError>;
    /// Events parked for `household` (oldest first).
    fn parked(&self, household: &HouseholdId) -> Result<Vec<Event>, StoreError>;
    /// The households that have parked events (read once when a task starts, so the hot path
    /// need not look for parked events of every household).
    fn parked_households(&self) -> Result<Vec<HouseholdId>, StoreError>;
    /// The rule versions in effect on this partition ([`StateBatch::programs`]), by program.
    fn programs(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Writes the batch atomically; when it returns, the batch is on disk.
    fn commit(&self, batch: &StateBatch) -> Result<(), StoreError> {
        self.write(batch)?;
        self.sync()
    }
    /// Writes the batch atomically, on disk only after the next [`PartitionState::sync`]: a
    /// crash before it keeps the batch whole or loses it whole, never half of it. A processor
    /// writes every partition of a poll this way and syncs once, instead of paying one
    /// `fdatasync` per partition.
    fn write(&self, batch: &StateBatch) -> Result<(), StoreError>;
    /// Puts every write made so far on disk (on the embedded store, those of every partition
    /// of the directory: they share one journal).
    fn sync(&self) -> Result<(), StoreError>;
    /// Every household, in no particular order (restore checks, tests, rebuilding a serving
    /// store).
    fn for_each(
        &self,
        f: &mut dyn FnMut(Household) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    /// Removes everything, before the partition is restored from its changelog.
    fn clear(&self) -> Result<(), StoreError>;
}
