//! `policyc`: check and compile policy sources.
//!
//! Exit codes: 0 success, 1 the sources have errors (or warnings, with
//! `--deny-warnings`), 2 usage or IO error.
//!
//! Diagnostics go to stderr in the human format, or as one JSON or SARIF
//! document on stdout with `--format json|sarif` (and then nothing else goes
//! to stdout).

/// policyc allocates many small tree nodes; mimalloc makes parse + check
/// about 20 % faster than the system allocator (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Rewrite sources in the canonical layout (comments kept). With
    /// `--check`, change nothing: list the files that would change and exit 1
    /// if any would. A file with syntax errors is reported and left alone.
    Fmt {
        /// Policy source files (`.policy`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Only report files that are not formatted.
        #[arg(long)]
        check: bool,
        /// When to colour diagnostics.
        #[arg(long, value_enum, default_value_t = Color::Auto)]
        color: Color,
    },
    /// Check sources as `compile` does, without writing a bundle; print every
    /// diagnostic. Exit 1 on any error (or warning, with `--deny-warnings`).
    /// `-` reads standard input.
    Check {
        /// Policy source files (`.policy`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Check against a target kernel's features, the JSON that
        /// `policyd probe --format json` writes: warn where a `deny` can
        /// only kill there (`policyc::deny_is_kill`), fail where a `deny` or
        /// `kill` would not be enforced (`policyc::deny_not_enforced`).
        #[arg(long, value_name = "FILE")]
        kernel_features: Option<PathBuf>,
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
        /// Kubernetes labels for `metadata.labels`, as `KEY=VALUE,…` (not
        /// covered by the digest).
        #[arg(long, value_name = "K=V,…", value_parser = |s: &str| policy_compiler::k8s::parse_labels("label", s))]
        labels: Option<std::collections::BTreeMap<String, String>>,
        /// Node labels a node must carry to load the bundle under
        /// `policyd run --kubernetes` (`spec.nodeSelector`, covered by the
        /// digest), as `KEY=VALUE,…`. Default: every node.
        #[arg(long, value_name = "K=V,…", value_parser = |s: &str| policy_compiler::k8s::parse_labels("node selector", s))]
        node_selector: Option<std::collections::BTreeMap<String, String>>,
        #[command(flatten)]
        diagnostics: DiagnosticArgs,
    },
    /// Run the `test` blocks of the files against the compiled bundle (every
    /// hook and field, not only what `compile` lets the runtime load). Prints
    /// `ok`/`FAILED` per test and `N passed, M failed`; exit 1 on any failure
    /// or compile error.
    Test(TestArgs),
    /// Print what a bundle holds: name, digest, policies, rules, per hook its
    /// terms, dimensions (entries per table), verdict masks and the estimated
    /// kernel memory of each map (model: docs/bundle.md). The bundle is
    /// validated as `policyd` does. `-` reads standard input.
    Inspect(InspectArgs),
    /// Evaluate one event (a JSON object, see docs/bundle.md "Events")
    /// against a bundle: verdict, matched and audited rules, counters, and
    /// for the deciding rule the lookups that held.
    Explain(ExplainArgs),
    /// Compare two policy versions (each a bundle YAML, a `.policy` file or
    /// a directory of them): rules added, removed and changed, and example
    /// events whose verdict changes. Exit 0 when no verdict changes, 1 when
    /// some do, 2 on usage, IO or compile errors.
    Diff(DiffArgs),
}

/// Arguments of `policyc inspect`.
#[derive(Args)]
struct InspectArgs {
    /// Bundle YAML file (`-`: standard input), or a `.policy` file or
    /// directory compiled for evaluation (as `policyc test` does).
    bundle: PathBuf,
    /// Report format.
    #[arg(long, value_enum, default_value_t = TestFormat::Human)]
    format: TestFormat,
}

/// Arguments of `policyc explain`.
#[derive(Args)]
struct ExplainArgs {
    /// Bundle YAML file, or a `.policy` file or directory compiled for
    /// evaluation (as `policyc test` does).
    #[arg(long)]
    bundle: PathBuf,
    /// Event JSON file (`-`: standard input).
    #[arg(long)]
    event: PathBuf,
    /// Report format.
    #[arg(long, value_enum, default_value_t = TestFormat::Human)]
    format: TestFormat,
}

/// Arguments of `policyc diff`.
#[derive(Args)]
struct DiffArgs {
    /// The old version: a bundle (`.yaml`, `.yml`, or a file starting with
    /// `apiVersion`), a `.policy` file, or a directory of `.policy` files.
    #[arg(required_unless_present = "old_files")]
    old: Option<PathBuf>,
    /// The new version, as OLD.
    #[arg(required_unless_present = "new_files")]
    new: Option<PathBuf>,
    /// The old version as several `.policy` files (instead of OLD).
    #[arg(long = "old", num_args = 1.., conflicts_with = "old", value_name = "FILE")]
    old_files: Vec<PathBuf>,
    /// The new version as several `.policy` files (instead of NEW).
    #[arg(long = "new", num_args = 1.., conflicts_with = "new", value_name = "FILE")]
    new_files: Vec<PathBuf>,
    /// Most example events to print.
    #[arg(long, default_value_t = 10)]
    max_examples: usize,
    /// Report format.
    #[arg(long, value_enum, default_value_t = TestFormat::Human)]
    format: TestFormat,
}

/// Read a file's text (`-`: standard input).
fn read_text(path: &Path) -> Result<String, String> {
    let bytes = if path == Path::new("-") {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        b
    } else {
        std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?
    };
    decode(&bytes).map_err(|why| format!("cannot read `{}`: {why}", path.display()))
}

/// Read and validate a bundle as `policyd` does.
fn read_bundle(path: &Path) -> Result<policy_compiler::bundle::PolicyBundle, String> {
    let text = read_text(path)?;
    policy_compiler::bundle::PolicyBundle::from_yaml(&text)
        .map_err(|e| format!("`{}`: {e}", path.display()))
}

fn print_stdout(text: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))
}

/// `policyc inspect`.
fn run_inspect(args: InspectArgs) -> Result<ExitCode, String> {
    let bundle = if args.bundle == Path::new("-") {
        read_bundle(&args.bundle)?
    } else {
        load_bundle(Some(&args.bundle), &[])?
    };
    let report = policy_compiler::inspect::inspect(&bundle);
    print_stdout(&match args.format {
        TestFormat::Human => report.human(),
        TestFormat::Json => report.json(),
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `policyc explain`.
fn run_explain(args: ExplainArgs) -> Result<ExitCode, String> {
    let bundle = load_bundle(Some(&args.bundle), &[])?;
    let text = read_text(&args.event)?;
    let event = policy_compiler::event_json::parse_event(&text)
        .map_err(|e| format!("`{}`: {e}", args.event.display()))?;
    let report = policy_compiler::explain::explain(&bundle, &event);
    print_stdout(&match args.format {
        TestFormat::Human => report.human(),
        TestFormat::Json => report.json(),
    })?;
    Ok(ExitCode::SUCCESS)
}

/// A bundle (validated as `policyd` does), or `.policy` sources (a file or a
/// directory of them, or `files`) compiled for evaluation as `policyc test`
/// does, into a bundle named `policyc-eval`. Used by `inspect`, `explain`
/// and `diff`.
fn load_bundle(
    single: Option<&PathBuf>,
    files: &[PathBuf],
) -> Result<policy_compiler::bundle::PolicyBundle, String> {
    // One file given as a list (`--old FILE`) is detected like a positional.
    let single = single.or(if files.len() == 1 {
        files.first()
    } else {
        None
    });
    if files.len() > 1 {
        if let Some(y) = files
            .iter()
            .find(|f| f.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        {
            return Err(format!(
                "`{}` looks like a bundle; give one bundle on its own, or only `.policy` sources",
                y.display()
            ));
        }
    }
    let mut paths: Vec<PathBuf> = files.to_vec();
    if let Some(p) = single {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("cannot read `{}`: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "policy"))
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(format!("`{}` has no `.policy` files", p.display()));
            }
            paths = found;
        } else {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            let is_bundle = match ext {
                "yaml" | "yml" => true,
                "policy" => false,
                _ => {
                    let text = read_text(p)?;
                    text.lines()
                        .map(str::trim)
                        .find(|l| !l.is_empty() && !l.starts_with('#') && l != &"---")
                        .is_some_and(|l| l.starts_with("apiVersion:") || l.starts_with("kind:"))
                }
            };
            if is_bundle {
                return read_bundle(p);
            }
            paths = vec![p.clone()];
        }
    }
    let sources = read_sources(&paths)?;
    match compile::compile_for_evaluation(&sources, "policyc-eval") {
        Ok((compiled, _)) => Ok(compiled.bundle),
        Err(failure) => {
            eprint!(
                "{}",
                render::render(&failure.diagnostics, &sources, Color::Auto.enabled(), 100)
            );
            Err(format!(
                "{}: {}",
                paths
                    .iter()
                    .map(|p| format!("`{}`", p.display()))
                    .collect::<Vec<_>>()
                    .join(", "),
                render::summary(&failure.diagnostics)
            ))
        }
    }
}

/// `policyc diff`: exit 0 when no verdict changes, 1 when some do.
fn run_diff(args: DiffArgs) -> Result<ExitCode, String> {
    // With `--old FILES`, the one positional is NEW.
    let (old_single, new_single) = match (&args.old, &args.new) {
        (Some(a), None) if !args.old_files.is_empty() => (None, Some(a)),
        (a, b) => (a.as_ref(), b.as_ref()),
    };
    let old = load_bundle(old_single, &args.old_files)?;
    let new = load_bundle(new_single, &args.new_files)?;
    let report = policy_compiler::diff::diff(&old, &new, args.max_examples);
    print_stdout(&match args.format {
        TestFormat::Human => report.human(),
        TestFormat::Json => report.json(),
    })?;
    Ok(exit(report.verdict_changed()))
}

/// Arguments of `policyc test`.
#[derive(Args)]
struct TestArgs {
    /// Policy source files (`.policy`), compiled together.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Report format: `human` or `json` (one document on stdout). Compile
    /// diagnostics go to stderr in the human format either way.
    #[arg(long, value_enum, default_value_t = TestFormat::Human)]
    format: TestFormat,
    /// When to colour diagnostics.
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    color: Color,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TestFormat {
    Human,
    Json,
}

/// `policyc test`.
fn run_test(args: TestArgs) -> Result<ExitCode, String> {
    let sources = read_sources(&args.files)?;
    match policy_compiler::testing::run_tests(&sources) {
        Err(failure) => {
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "{}",
                render::render(&failure.diagnostics, &sources, args.color.enabled(), 100)
            );
            let _ = writeln!(err, "{}", render::summary(&failure.diagnostics));
            Ok(exit(true))
        }
        Ok(report) => {
            if !report.warnings.is_empty() {
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "{}",
                    render::render(&report.warnings, &sources, args.color.enabled(), 100)
                );
            }
            let text = match args.format {
                TestFormat::Human => report.human(),
                TestFormat::Json => report.json(),
            };
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| format!("cannot write to stdout: {e}"))?;
            Ok(exit(!report.ok()))
        }
    }
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
                    Ok(text) => sources.push(SourceFile {
                        name: "<stdin>".into(),
                        text,
                    }),
                    Err(why) => problems.push(format!("cannot read standard input: {why}")),
                },
                Err(e) => problems.push(format!("cannot read standard input: {e}")),
            }
            continue;
        }
        if let Ok(real) = std::fs::canonicalize(f) {
            if let Some((_, first)) = seen.iter().find(|(r, _)| *r == real) {
                problems.push(format!(
                    "`{name}` is the same file as `{}`, given twice",
                    first.display()
                ));
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
            let line_start = valid
                .iter()
                .rposition(|b| *b == b'\n')
                .map(|p| p + 1)
                .unwrap_or(0);
            let column = String::from_utf8_lossy(&valid[line_start..])
                .chars()
                .count()
                + 1;
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
        Command::Test(args) => run_test(args),
        Command::Inspect(args) => run_inspect(args),
        Command::Explain(args) => run_explain(args),
        Command::Diff(args) => run_diff(args),
        Command::Fmt {
            files,
            check,
            color,
        } => fmt(&files, check, color),
        Command::Check {
            files,
            kernel_features,
            diagnostics: args,
        } => {
            let features = match &kernel_features {
                Some(path) => Some(
                    policy_compiler::kernel_features::parse(&read_text(path)?)
                        .map_err(|e| format!("{}: {e}", path.display()))?,
                ),
                None => None,
            };
            let sources = read_sources(&files)?;
            let (policies, diagnostics) = match &features {
                Some(f) => compile::analyze_for_kernel(&sources, f),
                None => compile::analyze(&sources),
            };
            let failed = emit_diagnostics(&diagnostics, &sources, &args)?;
            Ok(exit(failed || policies.is_none()))
        }
        Command::Compile {
            files,
            output,
            name,
            labels,
            node_selector,
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
                    let stem = from
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
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
            let k8s = compile::K8sOptions {
                object: labels.is_some() || node_selector.is_some(),
                labels: labels.unwrap_or_default(),
                node_selector: node_selector.unwrap_or_default(),
            };
            match compile::compile_k8s(&sources, &name, &k8s) {
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

/// `policyc fmt`: exit 0 when every file is (or now is) formatted, 1 when
/// `--check` finds files to change or a file does not parse, 2 on IO errors.
fn fmt(files: &[PathBuf], check: bool, color: Color) -> Result<ExitCode, String> {
    if files.iter().any(|f| f == Path::new("-")) {
        return Err("`policyc fmt` rewrites files in place; `-` is not supported".into());
    }
    let sources = read_sources(files)?;
    let mut failed = false;
    for (path, source) in files.iter().zip(&sources) {
        match policy_dsl::format::format_source(&source.text) {
            Ok(formatted) if formatted == source.text => {}
            Ok(_) if check => {
                println!("{}", source.name);
                failed = true;
            }
            Ok(formatted) => {
                write_output(path, formatted.as_bytes(), &[])?;
                eprintln!("policyc: formatted {}", source.name);
            }
            Err(policy_dsl::format::FormatError::Syntax(diagnostics)) => {
                eprint!(
                    "{}",
                    policy_dsl::render(
                        &diagnostics,
                        &source.name,
                        &source.text,
                        color.enabled(),
                        100
                    )
                );
                eprintln!(
                    "policyc: `{}` has syntax errors; not formatted",
                    source.name
                );
                failed = true;
            }
            Err(e @ policy_dsl::format::FormatError::Internal(_)) => {
                return Err(format!("`{}` left unchanged: {e}", source.name));
            }
        }
    }
    Ok(exit(failed))
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
        if let Some(input) = inputs
            .iter()
            .find(|i| std::fs::canonicalize(i).ok().as_ref() == Some(&out))
        {
            return Err(format!(
                "refusing to write the bundle over the source file `{}`",
                input.display()
            ));
        }
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(format!("cannot write `{shown}`: it is a directory"))
        }
        Ok(meta) if !meta.is_file() => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| format!("cannot write `{shown}`: {e}"))?;
            return f
                .write_all(bytes)
                .and_then(|()| f.flush())
                .map_err(|e| format!("cannot write `{shown}`: {e}"));
        }
        _ => {}
    }
    let target = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path).map_err(|e| {
            format!("cannot write `{shown}`: it is a symlink whose target cannot be resolved ({e})")
        })?,
        _ => path.to_path_buf(),
    };
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(format!(
            "cannot write `{shown}`: directory `{}` does not exist",
            dir.display()
        ));
    }
    let file_name = target
        .file_name()
        .ok_or_else(|| format!("`{shown}` is not a file path"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write `{shown}`: {e}")
    })?;
    std::fs::rename(&tmp, &target).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write `{shown}`: {e}")
    })
}
