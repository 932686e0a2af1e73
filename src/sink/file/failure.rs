//! How a file sink counts and logs a failed storage operation: the `operation`
//! label values of `hydrant_storage_errors_total`, shared by the writer and the
//! layout checks.

use crate::metrics::StorageMetrics;

/// `operation` label values of `hydrant_storage_errors_total`.
pub(super) const OPERATION_WRITE: &str = "write";
pub(super) const OPERATION_JOURNAL: &str = "journal";
pub(super) const OPERATION_OPEN: &str = "open";
pub(super) const OPERATION_SEAL: &str = "seal";
/// Starting a new journal generation failed.
pub(super) const OPERATION_ROTATE: &str = "rotate";
/// The data directory was found damaged (deleted, replaced, changed by hand).
pub(super) const OPERATION_LAYOUT: &str = "layout";
/// Rebuilding a damaged data directory failed.
pub(super) const OPERATION_REBUILD: &str = "rebuild";
/// Every `operation` label value, whose series start at zero when a file sink opens.
pub(super) const OPERATIONS: [&str; 7] = [
    OPERATION_WRITE,
    OPERATION_JOURNAL,
    OPERATION_OPEN,
    OPERATION_SEAL,
    OPERATION_ROTATE,
    OPERATION_LAYOUT,
    OPERATION_REBUILD,
];

/// Counts and logs a failed storage operation.
pub(super) fn count_failure(
    metrics: &StorageMetrics,
    operation: &str,
    error: &dyn std::fmt::Display,
) {
    metrics.errors.with_label_values(&[operation]).inc();
    tracing::error!(%error, operation, "Storage operation failed.");
}
