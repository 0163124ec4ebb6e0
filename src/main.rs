use clap::error::{ContextKind, ContextValue};
use clap::Parser;
use eventbench::cli::Cli;
use eventbench::commands::{self, EXIT_USAGE};
use eventbench::pipeline::workers::WorkerError;
use eventbench::scenario::ScenarioError;
use eventbench::target::TargetError;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    eventbench::sys::fix_mmap_threshold();
    eventbench::sys::ignore_file_size_signal();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print(); // --help, --version
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line: what is wrong (clap's first line) and the accepted form (its usage line).
            let text = e.render().to_string();
            let mut what = text.lines().next().unwrap_or("error: invalid arguments").to_string();
            // clap quotes the whole value: a 120 KB one is cut to a line.
            if let Some(ContextValue::String(value)) = e.get(ContextKind::InvalidValue) {
                what = what.replace(value.as_str(), &eventbench::text::shorten(value));
            }
            // A missing argument: clap names it on a line of its own, kept here.
            if let Some(ContextValue::Strings(missing)) = e.get(ContextKind::InvalidArg) {
                if what.trim_end().ends_with(':') {
                    what = format!("{} {}", what.trim_end(), missing.join(", "));
                }
            }
            // An enum's accepted values: clap puts them on a line of their own, kept here.
            if let Some(ContextValue::Strings(values)) = e.get(ContextKind::ValidValue) {
                what = format!("{what} [possible values: {}]", values.join(", "));
            }
            let argv: Vec<String> = std::env::args().skip(1).collect();
            // clap reads `--drain -1s` as a flag `-1`: the value was negative, and the flag is named.
            if let Some(negative) = eventbench::cli::negative_value(&argv) {
                what = negative;
            }
            // Control characters in what was typed are shown, never obeyed by the terminal.
            what = eventbench::text::cut(&what, 1000);
            let mut usage = text.lines().find_map(|l| l.strip_prefix("Usage: ")).map(str::to_string);
            // With a suggestion, clap's usage line is the suggested flag's: give the command's own, and the tip.
            if let Some(ContextValue::String(similar)) = e.get(ContextKind::SuggestedArg) {
                what = format!("{what}; a similar one is '{similar}'");
                usage = Some(eventbench::cli::usage_of(argv.first().map(String::as_str)));
            }
            match usage {
                Some(usage) => eprintln!("{what} (usage: {usage}; see --help)"),
                None => eprintln!("{what}"),
            }
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::execute(cli.command)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Bad input and an unusable target are the user's to fix (2); anything else is a failure (1).
fn exit_code(e: &anyhow::Error) -> u8 {
    // A signal before the run started: interrupted, as a run stopped later is.
    let interrupted = e.chain().any(|c| {
        matches!(c.downcast_ref(), Some(WorkerError::Interrupted))
            || matches!(c.downcast_ref(), Some(TargetError::Interrupted))
    });
    if interrupted {
        return commands::EXIT_INTERRUPTED;
    }
    let usage = e.chain().any(|c| {
        c.is::<ScenarioError>()
            || c.downcast_ref::<WorkerError>().is_some_and(WorkerError::is_usage)
            || matches!(c.downcast_ref::<TargetError>(), Some(t) if !matches!(t, TargetError::ServerStart(_)))
    });
    if usage {
        EXIT_USAGE
    } else {
        commands::EXIT_ABORTED
    }
}
