//! Built-in tools for operations loops, each safe by default: the file tools read only the file or
//! folder they were declared with; `shell` runs only allow-listed programs, without a shell.
//! (`http_get`, which needs an HTTP client, is in baton-providers.)

mod chaos;
mod codeowners;
mod list_dir;
mod log_search;
mod metrics_series;
mod read_file;
mod restart_service;
mod shell;

pub use chaos::Chaos;
pub use codeowners::{Codeowners, CodeownersArgs};
pub use list_dir::{ListDir, ListDirArgs};
pub use log_search::{LogSearch, LogSearchArgs};
pub use metrics_series::{MetricsSeries, MetricsSeriesArgs};
pub use read_file::{ReadFile, ReadFileArgs};
pub use restart_service::{RestartService, RestartServiceArgs};
pub use shell::{SHELL_MAX_OUTPUT, Shell, ShellArgs};

use std::path::Path;

use crate::tool::ToolError;

async fn read(path: &Path) -> Result<String, ToolError> {
    tokio::fs::read_to_string(path)
        .await
        .map_err(|e| ToolError::Failed(format!("cannot read {}: {e}", path.display())))
}
