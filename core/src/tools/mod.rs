//! Built-in tools for operations loops. Each reads only the file or folder it was declared with.

mod chaos;
mod codeowners;
mod log_search;
mod metrics_series;
mod restart_service;

pub use chaos::Chaos;
pub use codeowners::Codeowners;
pub use log_search::LogSearch;
pub use metrics_series::MetricsSeries;
pub use restart_service::RestartService;

use std::path::Path;

use crate::tool::ToolError;

async fn read(path: &Path) -> Result<String, ToolError> {
    tokio::fs::read_to_string(path)
        .await
        .map_err(|e| ToolError::Failed(format!("cannot read {}: {e}", path.display())))
}
