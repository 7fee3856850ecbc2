//! `policyc`: check and compile policy sources.
//!
//! Exit codes: 0 success, 1 the sources have errors, 2 usage or IO error.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use policy_compiler::compile::{self, Located, SourceFile};
use policy_compiler::render;

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
    /// Parse and check sources; print every diagnostic. Exit 1 on any error.
    Check {
        /// Policy source files (`.policy`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// When to colour diagnostics.
        #[arg(long, value_enum, default_value_t = Color::Auto)]
        color: Color,
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
        /// When to colour diagnostics.
        #[arg(long, value_enum, default_value_t = Color::Auto)]
        color: Color,
    },
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

fn report(diagnostics: &[Located], sources: &[SourceFile], color: Color) {
    if diagnostics.is_empty() {
        return;
    }
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "{}",
        render::render(diagnostics, sources, color.enabled(), 100)
    );
    let _ = writeln!(err, "{}", render::summary(diagnostics));
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Check { files, color } => {
            let sources = read_sources(&files)?;
            let (policies, diagnostics) = compile::check(&sources);
            report(&diagnostics, &sources, color);
            Ok(if policies.is_some() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Compile {
            files,
            output,
            name,
            color,
        } => {
            let sources = read_sources(&files)?;
            let to_stdout = output == Path::new("-");
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
                    report(&failure.diagnostics, &sources, color);
                    Ok(ExitCode::from(1))
                }
                Ok(compiled) => {
                    report(&compiled.warnings, &sources, color);
                    let yaml = compiled.bundle.to_yaml();
                    if to_stdout {
                        print!("{yaml}");
                    } else {
                        write_atomically(&output, yaml.as_bytes())?;
                    }
                    Ok(ExitCode::SUCCESS)
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
