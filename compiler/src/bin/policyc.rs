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
    /// Check sources as `compile` does, without writing a bundle; print every
    /// diagnostic. Exit 1 on any error (or warning, with `--deny-warnings`).
    /// `-` reads standard input.
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
        /// Bundle name (`metadata.name`). Default: the output file's stem
        /// (lowercased, runs of other characters as `-`), or the first policy
        /// file's stem when writing to stdout.
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

/// Read every source. `-` is standard input. Every file that cannot be read
/// is reported (with the place of the first invalid byte for non-UTF-8 text),
/// not just the first; a file given twice is refused.
fn read_sources(files: &[PathBuf]) -> Result<Vec<SourceFile>, String> {
    let mut sources = Vec::new();
    let mut problems = Vec::new();
    let mut seen: Vec<(PathBuf, &Path)> = Vec::new();
    for f in files {
        let name = f.display().to_string();
        if f == Path::new("-") {
            if seen.iter().any(|(_, g)| *g == Path::new("-")) {
                problems.push("standard input (`-`) is given twice".to_string());
                continue;
            }
            seen.push((PathBuf::from("-"), f));
            let mut bytes = Vec::new();
            match std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes) {
                Ok(_) => match decode(&bytes) {
                    Ok(text) => sources.push(SourceFile { name: "<stdin>".into(), text }),
                    Err(why) => problems.push(format!("cannot read standard input: {why}")),
                },
                Err(e) => problems.push(format!("cannot read standard input: {e}")),
            }
            continue;
        }
        if let Ok(real) = std::fs::canonicalize(f) {
            if let Some((_, first)) = seen.iter().find(|(r, _)| *r == real) {
                problems.push(format!("`{name}` is the same file as `{}`, given twice", first.display()));
                continue;
            }
            seen.push((real, f));
        }
        match std::fs::read(f) {
            Ok(bytes) => match decode(&bytes) {
                Ok(text) => sources.push(SourceFile { name, text }),
                Err(why) => problems.push(format!("cannot read `{name}`: {why}")),
            },
            Err(e) => problems.push(format!("cannot read `{name}`: {e}")),
        }
    }
    if problems.is_empty() {
        Ok(sources)
    } else {
        Err(problems.join("\npolicyc: error: "))
    }
}

/// UTF-8 text of a source, or where its first invalid byte is.
fn decode(bytes: &[u8]) -> Result<String, String> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.to_string()),
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
            let line_start = valid.iter().rposition(|b| *b == b'\n').map(|p| p + 1).unwrap_or(0);
            let column = String::from_utf8_lossy(&valid[line_start..]).chars().count() + 1;
            Err(format!(
                "not UTF-8 text: invalid byte 0x{:02x} at line {line}, column {column}; policy sources are UTF-8",
                bytes[e.valid_up_to()]
            ))
        }
    }
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
            let (policies, diagnostics) = compile::analyze(&sources);
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
            let name = match name {
                Some(n) => n,
                None => {
                    let from = if to_stdout { &files[0] } else { &output };
                    let stem = from.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                    let derived = compile::bundle_name_from(&stem);
                    if !compile::is_dns1123_subdomain(&derived) {
                        return Err(format!(
                            "cannot derive a bundle name from `{}`; give one with `--name NAME` \
                             (lowercase letters, digits, `-` and `.`)",
                            from.display()
                        ));
                    }
                    derived
                }
            };
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
                        write_output(&output, yaml.as_bytes(), &files)?;
                    }
                    Ok(exit(false))
                }
            }
        }
    }
}

/// Write the bundle to `path` without ever leaving a half-written file and
/// without replacing what the path is:
/// - a regular file (or a new path): written beside it and renamed over it,
///   so a reader (or a `policyd` watching it) sees the old or the new bundle;
/// - a symlink: the file it points to is replaced the same way, the link stays;
/// - a device, pipe or socket (`/dev/stdout`): written to directly.
///
/// An input file is never overwritten.
fn write_output(path: &Path, bytes: &[u8], inputs: &[PathBuf]) -> Result<(), String> {
    let shown = path.display();
    if let Ok(out) = std::fs::canonicalize(path) {
        if let Some(input) = inputs.iter().find(|i| std::fs::canonicalize(i).ok().as_ref() == Some(&out)) {
            return Err(format!("refusing to write the bundle over the source file `{}`", input.display()));
        }
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => return Err(format!("cannot write `{shown}`: it is a directory")),
        Ok(meta) if !meta.is_file() => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| format!("cannot write `{shown}`: {e}"))?;
            return f.write_all(bytes).and_then(|()| f.flush()).map_err(|e| format!("cannot write `{shown}`: {e}"));
        }
        _ => {}
    }
    let target = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path)
            .map_err(|e| format!("cannot write `{shown}`: it is a symlink whose target cannot be resolved ({e})"))?,
        _ => path.to_path_buf(),
    };
    let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(format!("cannot write `{shown}`: directory `{}` does not exist", dir.display()));
    }
    let file_name = target.file_name().ok_or_else(|| format!("`{shown}` is not a file path"))?;
    let tmp = dir.join(format!(".{}.tmp-{}", file_name.to_string_lossy(), std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write `{shown}`: {e}")
    })?;
    std::fs::rename(&tmp, &target).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write `{shown}`: {e}")
    })
}
