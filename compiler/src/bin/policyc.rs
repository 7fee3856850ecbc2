//! `policyc`: check and compile policy sources.
//!
//! Exit codes: 0 success, 1 the sources have errors (or warnings, with
//! `--deny-warnings`), 2 usage or IO error.
//!
//! Diagnostics go to stderr in the human format, or as one JSON or SARIF
//! document on stdout with `--format json|sarif` (and then nothing else goes
//! to stdout).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use policy_compiler::compile::{self, Located, SourceFile};
use policy_compiler::{render, report};

#[derive(Parser)]
#[command(
    name = "policyc",
    version,
    about = "Compile runtime-security policies into PolicyBundle documents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and check sources; print every diagnostic. Exit 1 on any error
    /// (or warning, with `--deny-warnings`).
    Check {
        /// Policy source files (`.policy`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        diagnostics: DiagnosticArgs,
    },
    /// Compile sources into one PolicyBundle YAML document.
    Compile {
        /// Policy source files (`.policy`), each its own policy.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Output file, or `-` for stdout. Written only when compilation succeeds.
        #[arg(short, long)]
        output: PathBuf,
        /// Bundle name (`metadata.name`); defaults to the output file's stem, or
        /// to the single policy file's stem when writing to stdout.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        diagnostics: DiagnosticArgs,
    },
}

/// How diagnostics are reported; shared by `check` and `compile`.
#[derive(Args)]
struct DiagnosticArgs {
    /// Diagnostics format: `human` (graphical, to stderr), `json` or `sarif`
    /// (SARIF 2.1.0), each one document on stdout.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// When to colour diagnostics (human format only).
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    color: Color,
    /// Treat warnings as errors: exit 1 if there are any (and, for `compile`,
    /// write no bundle).
    #[arg(long)]
    deny_warnings: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Human,
    Json,
    Sarif,
}

#[derive(Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

impl Color {
    fn enabled(self) -> bool {
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => {
                std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("policyc: error: {message}");
            ExitCode::from(2)
        }
    }
}

fn read_sources(files: &[PathBuf]) -> Result<Vec<SourceFile>, String> {
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("cannot read `{}`: {e}", f.display()))?;
            Ok(SourceFile {
                name: f.display().to_string(),
                text,
            })
        })
        .collect()
}

/// Write the diagnostics in the chosen format: human to stderr (nothing when
/// there are none), json/sarif as one document on stdout (always, even empty).
/// Returns whether they fail the run: any error, or any warning under
/// `--deny-warnings`.
fn emit_diagnostics(
    diagnostics: &[Located],
    sources: &[SourceFile],
    args: &DiagnosticArgs,
) -> Result<bool, String> {
    let errors = diagnostics
        .iter()
        .filter(|d| !d.diagnostic.is_warning())
        .count();
    let warnings = diagnostics.len() - errors;
    let denied = args.deny_warnings && warnings > 0;
    match args.format {
        Format::Human => {
            if !diagnostics.is_empty() {
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "{}",
                    render::render(diagnostics, sources, args.color.enabled(), 100)
                );
                let _ = writeln!(err, "{}", render::summary(diagnostics));
                if denied && errors == 0 {
                    let _ = writeln!(err, "policyc: warnings are denied (--deny-warnings)");
                }
            }
        }
        Format::Json | Format::Sarif => {
            let document = if args.format == Format::Json {
                report::json(diagnostics, sources)
            } else {
                report::sarif(diagnostics, sources)
            };
            let mut out = std::io::stdout().lock();
            out.write_all(document.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| format!("cannot write to stdout: {e}"))?;
        }
    }
    Ok(errors > 0 || denied)
}

fn exit(failed: bool) -> ExitCode {
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Check {
            files,
            diagnostics: args,
        } => {
            let sources = read_sources(&files)?;
            let (policies, diagnostics) = compile::check(&sources);
            let failed = emit_diagnostics(&diagnostics, &sources, &args)?;
            Ok(exit(failed || policies.is_none()))
        }
        Command::Compile {
            files,
            output,
            name,
            diagnostics: args,
        } => {
            let to_stdout = output == Path::new("-");
            if to_stdout && args.format != Format::Human {
                return Err("`--format json|sarif` writes the diagnostics to stdout; \
                     write the bundle to a file with `-o FILE`"
                    .into());
            }
            let sources = read_sources(&files)?;
            let name = name.unwrap_or_else(|| {
                let stem_of = |p: &Path| {
                    p.file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default()
                };
                let stem = if to_stdout {
                    stem_of(&files[0])
                } else {
                    stem_of(&output)
                };
                compile::bundle_name_from(&stem)
            });
            match compile::compile(&sources, &name) {
                Err(failure) => {
                    emit_diagnostics(&failure.diagnostics, &sources, &args)?;
                    Ok(exit(true))
                }
                Ok(compiled) => {
                    if emit_diagnostics(&compiled.warnings, &sources, &args)? {
                        // --deny-warnings: no bundle.
                        return Ok(exit(true));
                    }
                    let yaml = compiled.bundle.to_yaml();
                    if to_stdout {
                        print!("{yaml}");
                    } else {
                        write_atomically(&output, yaml.as_bytes())?;
                    }
                    Ok(exit(false))
                }
            }
        }
    }
}

/// Write to a temporary file beside `path`, then rename: a reader (or a
/// `policyd` watching the file) never sees a half-written bundle.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .ok_or_else(|| format!("`{}` is not a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).map_err(|e| format!("cannot write `{}`: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write `{}`: {e}", path.display())
    })
}
