//! The committed state, published as an immutable snapshot after every
//! change (commit, rollback, load, unload, reload check): readers load it
//! without any lock, so they never wait behind a reload.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::detect::{self, FileStatus};
use super::report::ModuleInfo;
use super::state::State;
use super::stubs::Stubs;
use crate::loader::{self, Quick, Stamp};

/// A loaded module's file, as last checked.
pub(super) struct FileView {
    pub(super) name: Arc<str>,
    pub(super) path: PathBuf,
    pub(super) stamp: Stamp,
    pub(super) failed: Option<Quick>,
}

impl FileView {
    /// Its status from `stat` alone: a file whose `stat` changed counts as
    /// changed until a reload hashes it. Never reads the file.
    pub(super) fn quick_status(&self, settle: Duration) -> FileStatus {
        detect::quick_status(&self.path, &self.stamp, self.failed, settle)
    }

    /// Whether the file differs from the loaded code: as
    /// [`FileView::quick_status`], but a file whose `stat` changed is hashed
    /// and compared (its build id, or its content up to `limit` bytes).
    pub(super) fn differs(&self, settle: Duration, limit: u64) -> bool {
        match self.quick_status(settle) {
            FileStatus::Clean | FileStatus::Missing => false,
            FileStatus::Settling { .. } | FileStatus::FailedBefore => true,
            FileStatus::Changed => loader::stamp_file(&self.path, limit).is_ok_and(|s| s.hash != self.stamp.hash),
        }
    }
}

/// What readers see: the state as of the last change.
#[derive(Default)]
pub(super) struct Snapshot {
    /// The loaded modules, imports before their importers.
    pub(super) modules: Vec<ModuleInfo>,
    /// Their files, in the same order.
    pub(super) files: Vec<FileView>,
    /// Live globals.
    pub(super) globals: usize,
    /// Libraries kept under [`UnloadPolicy::Never`](crate::UnloadPolicy::Never).
    pub(super) kept: usize,
}

impl State {
    /// The snapshot of this state.
    pub(super) fn snapshot(&self, stubs: &Stubs) -> Snapshot {
        let order = self.topo_order();
        let modules = order.iter().map(|&i| self.modules[i].info(stubs, &self.globals)).collect();
        let files = order
            .iter()
            .map(|&i| {
                let m = &self.modules[i];
                FileView { name: m.name.clone(), path: m.source.clone(), stamp: m.stamp, failed: m.failed }
            })
            .collect();
        Snapshot { modules, files, globals: self.globals.len(), kept: self.kept.len() }
    }
}
