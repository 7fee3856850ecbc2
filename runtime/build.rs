//! Compiles the BPF templates (`bpf-templates/*.bpf.c`) with clang into
//! `$OUT_DIR/<name>.bpf.o`, which `src/loader.rs` embeds in `policyd`.
//!
//! The kernel limits come from `compiler/src/limits.rs` (one source of truth
//! for the compiler, the runtime and the C code) and are passed to clang as
//! `-DPOLICY_*` defines. Set `CLANG` to use another clang binary.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "../compiler/src/limits.rs"]
#[allow(dead_code)]
mod limits;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let templates = manifest.join("../bpf-templates");
    let include = templates.join("include");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".to_string());

    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-changed=../compiler/src/limits.rs");
    println!("cargo:rerun-if-changed={}", templates.display());
    println!("cargo:rerun-if-changed={}", include.display());
    for entry in std::fs::read_dir(&include).expect("read bpf-templates/include") {
        println!(
            "cargo:rerun-if-changed={}",
            entry.expect("dir entry").path().display()
        );
    }

    let mut sources: Vec<PathBuf> = std::fs::read_dir(&templates)
        .expect("read bpf-templates")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
        .collect();
    sources.sort();
    assert!(
        !sources.is_empty(),
        "no *.bpf.c templates in {}",
        templates.display()
    );

    for src in &sources {
        println!("cargo:rerun-if-changed={}", src.display());
        let stem = src
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".c")
            .to_string();
        let out = out_dir.join(format!("{stem}.o"));
        compile(&clang, src, &include, &out);
    }
}

fn compile(clang: &str, src: &Path, include: &Path, out: &Path) {
    let defines = [
        format!("-DPOLICY_MASK_WORDS={}", limits::MASK_WORDS),
        format!("-DPOLICY_PATH_KEY_LEN={}", limits::PATH_KEY_LEN),
        format!("-DPOLICY_PATH_BUF_LEN={}", limits::PATH_BUF_LEN),
        format!("-DPOLICY_ARGS_BUF_LEN={}", limits::ARGS_BUF_LEN),
    ];
    let status = Command::new(clang)
        .args([
            "-target",
            "bpf",
            "-g",
            "-O2",
            // v3: atomic compare-and-exchange (the scratch guard) and 32-bit
            // jumps; kernels with everything else policyd needs (5.19+) have it.
            "-mcpu=v3",
            "-D__TARGET_ARCH_x86",
            "-Wall",
            "-Werror",
        ])
        .arg("-I")
        .arg(include)
        .args(&defines)
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "clang failed ({s}) compiling {} (if <bpf/bpf_helpers.h> is missing: \
             `apt-get install libbpf-dev`)",
            src.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{clang}` not found: the BPF templates need clang and the libbpf headers; \
             install them with `apt-get install clang libbpf-dev` (or set CLANG=/path/to/clang)"
        ),
        Err(e) => panic!("cannot run `{clang}`: {e}"),
    }
}
