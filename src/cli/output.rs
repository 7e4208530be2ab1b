//! How commands print: comfy-table tables for people, one JSON document for
//! scripts, nothing but the essential value with `--quiet`.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;

use super::CliError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub format: Format,
    pub quiet: bool,
}

impl Output {
    /// Prints the table or the JSON document; `--quiet` suppresses the table
    /// but never the JSON a script asked for.
    pub fn emit<J: Serialize>(
        &self,
        table: impl FnOnce() -> String,
        json: impl FnOnce() -> J,
    ) -> Result<(), CliError> {
        match self.format {
            Format::Json => {
                let text = serde_json::to_string_pretty(&json())
                    .map_err(|e| CliError::Failed(e.to_string()))?;
                print_line(&text);
            }
            Format::Table if self.quiet => {}
            Format::Table => print_line(&table()),
        }
        Ok(())
    }
}

/// Prints one line to stdout. When the reader has gone away (`| head`), exits
/// quietly with 0 instead of panicking, as Unix tools do.
pub fn print_line(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|_| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        let _ = writeln!(
            std::io::stderr(),
            "mlapi: error: cannot write to stdout: {e}"
        );
        std::process::exit(1);
    }
}

/// A table that fits the terminal; piped, cells are never wrapped, so each
/// row stays on one line for grep.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut table = Table::new();
    let arrangement = if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        ContentArrangement::Dynamic
    } else {
        ContentArrangement::Disabled
    };
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(arrangement)
        .set_header(headers.iter().copied());
    for row in rows {
        table.add_row(row);
    }
    table.to_string()
}
