#!/usr/bin/env bash
# Run the back-end benches (compiler/benches/back_end/main.rs) and print the
# tables of docs/performance.md ("Back end"): median time per stage and size,
# per-event evaluator time, bytes per rule.
#
# Usage: benches/back_end.sh [SIZES]     e.g. benches/back_end.sh 10,100,1000
# Extra criterion flags go in CRITERION_ARGS (e.g. CRITERION_ARGS=--quick).
# Builds only policy-compiler, in this checkout's target directory.
set -euo pipefail
cd "$(dirname "$0")/.."
# Default sizes: 10, 100, 1,000, 10,000, 100,000 (the full compile runs at
# every size the compiler accepts; compiler/src/limits.rs MAX_TERMS_PER_HOOK
# is 2^20).
if [ -n "${1:-}" ]; then export POLICYC_BENCH_SIZES="$1"; fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), Linux $(uname -r), $(rustc --version)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
# shellcheck disable=SC2086
cargo bench -p policy-compiler --bench back_end -- ${CRITERION_ARGS:-} >"$log" 2>&1 || {
    tail -30 "$log"
    exit 1
}
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
# Criterion prints "back_end/GROUP/N  time: [low median high]", sometimes
# with the time on the next line.
awk '
    /^back_end\// { split($1, p, "/"); name = p[2]; n = p[3]; if ($0 !~ /time:/) next }
    /time:/ && name != "" {
        match($0, /\[[^]]*\]/); f = substr($0, RSTART + 1, RLENGTH - 2); split(f, t, " ");
        med[name "/" n] = t[3] " " t[4]; sizes[n] = 1; groups[name] = 1; name = ""
    }
    /^SIZE lower/ {
        for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        bytes[v["rules"]] = v["yaml_per_rule"] " | " v["kernel_per_rule"]
    }
    /^SIZE compile/ && /skipped/ { skipped[substr($3, 7)] = 1 }
    END {
        ns = ""; for (n in sizes) ns = ns " " n
        cmd = "echo" ns " | tr \" \" \"\\n\" | sort -n"; k = 0
        while ((cmd | getline x) > 0) if (x != "") order[++k] = x
        split("compile compile_eval analysis check lower yaml eval_bundle eval_once", gs, " ")
        printf "| rules | compile | compile_eval | analysis | check | lower (1 hook) | yaml | eval_bundle / event | eval_once / event | YAML B/rule | kernel B/rule |\n"
        printf "|---|---|---|---|---|---|---|---|---|---|---|\n"
        for (i = 1; i <= k; i++) {
            n = order[i]; printf "| %s |", n
            for (j = 1; j <= 8; j++) {
                key = gs[j] "/" n
                printf " %s |", (key in med) ? med[key] : (skipped[n] ? "over limit" : "–")
            }
            printf " %s |\n", (n in bytes) ? bytes[n] : "– | –"
        }
    }
' "$log"
grep '^SIZE' "$log" | sed 's/^SIZE /  /'
