#!/usr/bin/env bash
# benches/kernel_cost.sh — per-event cost of the BPF programs and kernel map
# memory as the number of rules grows (issue 5). A measure, never a test: it
# prints numbers and exits 0 whatever they are (non-zero only when it cannot
# measure). Results and reading: docs/performance.md, "Kernel: per-event cost
# and map memory".
#
# Usage (root: policyd loads and attaches BPF programs):
#   sudo benches/kernel_cost.sh
#   sudo EXEC_ITERS=500 CONNECT_ITERS=10000 REPS=3 benches/kernel_cost.sh
#   sudo BUNDLES="exact:1 exact:1000" benches/kernel_cost.sh     # a subset
#
# Environment:
#   BUNDLES        what to measure, each SERIES:N (default below): N rules on
#                  exec and N rules on connect. SERIES `exact`: exec
#                  `process.binary == "/nonexistent/bI"`, connect
#                  `net.dport == 20000+I` (one dimension per hook); `mix`:
#                  exec rules cycle through an exact binary, a binary prefix
#                  and a uid with a prefix, connect rules alternate a port and
#                  a /24 CIDR. A full run takes ~12 min; mix:100000 takes
#                  2.5 s to compile and ~13 s for policyd to load its 74 MB
#                  bundle (2026-11-30).
#   CHUNK_EXACT    rules per hook in one bundle for `exact` (default 0: all
#                  N rules in ONE bundle, one `policyc compile`, no --labels)
#   CHUNK_MIX      the same for `mix` (default 0). A positive value splits
#                  the N rules into bundles of that many rules per hook,
#                  loaded together with `policyd run --bundle-dir` (each
#                  bundle adds its own dimensions: a different question)
#   READY_TIMEOUT  seconds to wait for policyd's ready line (default 900)
#   EXEC_ITERS     fork+execve per exec-loop repetition (default 1000)
#   CONNECT_ITERS  connect() per connect-loop repetition (default 20000)
#   REPS           repetitions of each loop per configuration (default 5)
#   METRICS_PORT   policyd's metrics port on 127.0.0.1 (default 19187; keep it
#                  outside 20000..59999, the ports the connect rules test)
#   KEEP=1         keep the temporary directory (policies, bundles, logs,
#                  results.tsv, per-map lists maps.*)
#
# What it does, in one run:
#  1. builds release policyc and policyd (cargo build --release --bins) and
#     the loop driver benches/kernel_loop.c (clang -O2);
#  2. writes the N rules of each size, every one `audit` on values that never
#     occur (/nonexistent/..., uids >= 2000000, 10.0.0.0/8 and ports >=
#     20000): nothing is denied, nothing matches (the script stops if a loop
#     iteration misbehaves and warns if an event is exported); in `mix`,
#     rule 0 of each hook touches every table the others use, so all sizes
#     have the same dimensions. Tries `policyc compile` on all N rules in one
#     file (its verdict and warnings, e.g. policyc::bundle_too_large, are
#     reported, with the compile time and bundle size) and loads that one
#     bundle (or, with CHUNK_* > 0, chunks of CHUNK rules as several
#     bundles); a refusal by policyc or policyd (e.g. policyd::too_many_terms
#     for rules that cannot be anchored) is reported and the size skipped;
#  3. runs the exec loop (fork + execve of a copy of /usr/bin/true in the temp
#     dir, then waitpid) and the connect loop (TCP connect to 127.0.0.1:1,
#     closed, ECONNREFUSED) REPS times with no policyd, then with policyd on
#     each bundle (--metrics-addr 127.0.0.1:PORT turns BPF run-time stats on),
#     and again with no policyd after each bundle (the baseline of a bundle is
#     the mean of the baselines just before and just after it). Per-program
#     cost = Δ policyd_bpf_program_run_time_seconds_total / Δ
#     policyd_bpf_program_runs_total over the loop's repetitions (metrics are
#     refreshed every second: the script waits 1.2 s before each scrape);
#  4. reads map memory from the kernel's accounting (`bpftool map show`,
#     bytes_memlock): every map whose fd policyd holds (/proc/PID/fdinfo,
#     map_id), plus the inner maps of each ARRAY_OF_MAPS, found by dumping
#     every pinned outer ARRAY_OF_MAPS (`bpftool map dump pinned DIR/masks`
#     etc., including the anchor's anchor_exact and group_config: each filled
#     slot's value is its inner map's id). "tables" = the inner maps (they
#     grow with the rules); "fixed" = everything else (ring buffer, scratch,
#     configs, outer maps);
#  5. prints one table (also written to $OUT/results.tsv).
set -euo pipefail
cd "$(dirname "$0")/.."

BUNDLES=${BUNDLES:-"exact:1 exact:100 exact:1000 exact:10000 exact:100000 mix:1 mix:100 mix:1000 mix:10000 mix:100000"}
CHUNK_EXACT=${CHUNK_EXACT:-0}
CHUNK_MIX=${CHUNK_MIX:-0}
READY_TIMEOUT=${READY_TIMEOUT:-900}
EXEC_ITERS=${EXEC_ITERS:-1000}
CONNECT_ITERS=${CONNECT_ITERS:-20000}
REPS=${REPS:-5}
# Outside the connect rules' ports (20000..59999): a `net.dport` rule on the
# metrics port would match the script's own curl (exact 100,000 did).
METRICS_PORT=${METRICS_PORT:-19187}
CLOSED_PORT=1

if [ "$(id -u)" -ne 0 ]; then
  echo "kernel_cost: must run as root" >&2
  exit 1
fi
for tool in bpftool jq curl clang awk; do
  command -v "$tool" >/dev/null || { echo "kernel_cost: $tool not found" >&2; exit 1; }
done
if ss -ltn "sport = :$CLOSED_PORT" | grep -q LISTEN; then
  echo "kernel_cost: port $CLOSED_PORT is open; the connect loop needs it closed" >&2
  exit 1
fi

T=$(mktemp -d /tmp/kernel_cost.XXXXXX)
PIN=/sys/fs/bpf/kernel_cost_$$  # bpffs refuses names with a dot
OUT=$T
pd_pid=
cleanup() {
  if [ -n "$pd_pid" ] && kill -0 "$pd_pid" 2>/dev/null; then
    kill -TERM "$pd_pid" 2>/dev/null || true
    wait "$pd_pid" 2>/dev/null || true
  fi
  if [ "${KEEP:-0}" = 1 ]; then
    echo "kernel_cost: kept $T" >&2
  else
    rm -rf "$T"
  fi
}
trap cleanup EXIT
log() { echo "kernel_cost: $*" >&2; }

# ---- 1. build -------------------------------------------------------------
log "building (cargo build --release --bins)"
cargo build --release --bins --locked -q
target=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
policyc=$target/release/policyc
policyd=$target/release/policyd
clang -O2 -Wall -o "$T/kernel_loop" benches/kernel_loop.c
cp /usr/bin/true "$T/true"

# ---- 2. policies and bundles -----------------------------------------------
# gen SERIES FROM TO > file: rules FROM..TO-1 of each hook.
#   exact: exec `process.binary == "/nonexistent/bI"`, connect `net.dport == 20000+I`
#          (one dimension per hook, every rule constrains it)
#   mix:   exec rules cycle through an exact binary, a binary prefix and a uid
#          with a prefix; connect rules alternate a port and a /24 CIDR; rule 0
#          of each hook touches every table the others use, so that all sizes
#          have the same dimensions
gen() {
  awk -v series="$1" -v from="$2" -v to="$3" 'BEGIN {
    print "policy kernel_cost_" series "_" from " {"
    print "  description = \"benches/kernel_cost.sh: " series " rules " from ".." to - 1 " per hook; nothing matches\""
    print "}"
    for (i = from; i < to; i++) {
      if (series == "exact") {
        e = "process.binary == \"/nonexistent/b" i "\""
        c = "net.dport == " (20000 + i % 40000)
      } else if (i == 0) {
        e = "process.binary == \"/nonexistent/b0\" or process.binary startswith \"/nonexistent/p0/\" or user.uid == 2000000"
        c = "net.dport == 20000 or net.daddr in 10.0.0.0/24"
      } else {
        f = i % 3
        if (f == 0) e = "process.binary == \"/nonexistent/b" i "\""
        else if (f == 1) e = "process.binary startswith \"/nonexistent/p" i "/\""
        else e = "user.uid == " (2000000 + i) " and process.binary startswith \"/nonexistent/u" i "/\""
        if (i % 2 == 0) c = "net.dport == " (20000 + i % 40000)
        else c = "net.daddr in " (10 + int(i / 65536)) "." (int(i / 256) % 256) "." (i % 256) ".0/24"
      }
      print "rule e" i " on exec {\n  when " e "\n  audit\n}"
      print "rule c" i " on connect {\n  when " c "\n  audit\n}"
    }
  }'
}

# ---- helpers ------------------------------------------------------------
# first_error < compile log -> the first `×` diagnostic, its lines joined
first_error() {
  awk '/×/ {f = 1} f && /help:|^[[:space:]]*$/ {exit} f {sub(/^[[:space:]]*(×|│)[[:space:]]*/, ""); printf "%s ", $0}'
}
# median [COLUMN] < lines
median() { awk -v c="${1:-1}" '{print $c}' | sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# loop KIND -> REPS lines "wall_ns cpu_ns" per iteration
loop() {
  local kind=$1 iters arg
  if [ "$kind" = exec ]; then iters=$EXEC_ITERS arg=$T/true; else iters=$CONNECT_ITERS arg=$CLOSED_PORT; fi
  for _ in $(seq "$REPS"); do
    read -r ns bad cpu < <("$T/kernel_loop" "$kind" "$iters" "$arg")
    if [ "$bad" -ne 0 ]; then
      log "$kind loop: $bad of $iters iterations did not behave (a rule matched?)"
      exit 1
    fi
    awk -v ns="$ns" -v cpu="$cpu" -v n="$iters" 'BEGIN {printf "%.1f %.1f\n", ns / n, cpu / n}'
  done
}

# One value of policyd's metrics: metric LABEL-SUBSTRING
metric() {
  curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" |
    awk -v m="$1" -v l="$2" '$1 ~ "^" m "{" && index($1, l) {print $2; f=1} END {if (!f) print 0}'
}

# program_cost KIND PROGRAM -> "ns_per_run runs loop_share" around REPS loops
# (per-iteration loop times go to $T/loop.PROGRAM)
program_cost() {
  local kind=$1 prog=$2 t0 n0 t1 n1 iters
  if [ "$kind" = exec ]; then iters=$EXEC_ITERS; else iters=$CONNECT_ITERS; fi
  sleep 1.2
  t0=$(metric policyd_bpf_program_run_time_seconds_total "program=\"$prog\"")
  n0=$(metric policyd_bpf_program_runs_total "program=\"$prog\"")
  loop "$kind" >"$T/loop.$prog"
  sleep 1.2
  t1=$(metric policyd_bpf_program_run_time_seconds_total "program=\"$prog\"")
  n1=$(metric policyd_bpf_program_runs_total "program=\"$prog\"")
  awk -v t0="$t0" -v t1="$t1" -v n0="$n0" -v n1="$n1" -v it="$((iters * REPS))" 'BEGIN {
    dn = n1 - n0; if (dn <= 0) { print "nan 0 0"; exit }
    printf "%.1f %d %.3f\n", (t1 - t0) * 1e9 / dn, dn, it / dn }'
}

# map_memory PID -> "tables_bytes fixed_bytes inner_maps" (writes $T/maps.LABEL)
map_memory() {
  local pid=$1 label=$2 ids=() inner=() id m slot
  for f in /proc/"$pid"/fdinfo/*; do
    id=$(awk '/^map_id:/ {print $2}' "$f" 2>/dev/null || true)
    [ -n "$id" ] && ids+=("$id")
  done
  # Every pinned ARRAY_OF_MAPS (masks, str_exact, …, and the anchor's
  # anchor_exact and group_config): a fixed list missed the maps added later.
  for m in "$PIN"/*; do
    [ "$(bpftool -j map show pinned "$m" 2>/dev/null | jq -r '.type // ""')" = array_of_maps ] || continue
    # "key: 01 00 00 00  value: 3a 35 00 00": the value is the inner map's id (u32, LE)
    while read -r hex; do
      inner+=("$((16#$hex))")
    done < <(bpftool map dump pinned "$m" |
      awk '/value:/ {for (i = 1; i <= NF; i++) if ($i == "value:") print $(i+4) $(i+3) $(i+2) $(i+1)}')
  done
  : >"$T/maps.$label"
  for id in "${ids[@]}"; do
    bpftool -j map show id "$id" | jq -r '["fixed", .id, .type, .name // "-", .max_entries, .bytes_memlock] | @tsv' >>"$T/maps.$label"
  done
  for id in "${inner[@]}"; do
    bpftool -j map show id "$id" | jq -r '["table", .id, .type, .name // "-", .max_entries, .bytes_memlock] | @tsv' >>"$T/maps.$label"
  done
  sort -u -k2,2n "$T/maps.$label" -o "$T/maps.$label"
  awk '$1 == "table" {t += $6; n++} $1 == "fixed" {f += $6} END {printf "%d %d %d\n", t, f, n}' "$T/maps.$label"
}

start_policyd() { # BUNDLE_DIR LABEL
  rm -rf "$PIN"
  "$policyd" run --bundle-dir "$1" --export "$T/events.$2.jsonl" --pin-dir "$PIN" \
    --metrics-addr "127.0.0.1:$METRICS_PORT" 2>"$T/policyd.$2.log" &
  pd_pid=$!
  for _ in $(seq $((READY_TIMEOUT * 5))); do
    grep -qs "policyd: ready" "$T/policyd.$2.log" && return 0
    kill -0 "$pd_pid" 2>/dev/null || { cat "$T/policyd.$2.log" >&2; return 1; }
    sleep 0.2
  done
  log "policyd did not get ready"
  return 1
}

stop_policyd() {
  kill -TERM "$pd_pid"
  wait "$pd_pid" || true
  pd_pid=
}

baseline() { # -> "exec_wall connect_wall exec_cpu connect_cpu" medians, no policyd
  loop exec >"$T/base.exec"
  loop connect >"$T/base.connect"
  echo "$(median 1 <"$T/base.exec") $(median 1 <"$T/base.connect") $(median 2 <"$T/base.exec") $(median 2 <"$T/base.connect")"
}

# ---- 3–4. measure ---------------------------------------------------------
log "tmp $T; load: $(uptime)"
echo "# $(date -u +%FT%TZ) $(uname -r) $(nproc) cpus; EXEC_ITERS=$EXEC_ITERS CONNECT_ITERS=$CONNECT_ITERS REPS=$REPS" >"$OUT/results.tsv"
printf 'bundle\trules\tterms\texec_ns\texec_runs\texec_share\tconn_ns\tconn_runs\tconn_share\texec_loop_ns\tconn_loop_ns\tbase_exec_ns\tbase_conn_ns\ttable_bytes\tfixed_bytes\tinner_maps\tentries\tload\tbundles\texec_loop_cpu\tconn_loop_cpu\tbase_exec_cpu\tbase_conn_cpu\n' >>"$OUT/results.tsv"

read -r prev_be prev_bc prev_bce prev_bcc < <(baseline)
log "no policyd: exec $prev_be ns/iter (cpu $prev_bce), connect $prev_bc ns/iter (cpu $prev_bcc)"
refused=()
for spec in $BUNDLES; do
  series=${spec%%:*} n=${spec##*:}
  label="$series-$n"
  # All the rules in one file, one `policyc compile` (no --labels: a bundle
  # over 1 MiB is only warned about, policyc::bundle_too_large).
  gen "$series" 0 "$n" >"$T/$label.policy"
  if [ "$series" = exact ]; then chunk=$CHUNK_EXACT; else chunk=$CHUNK_MIX; fi
  dir=$T/$label.d
  mkdir -p "$dir"
  ok=1 parts=0
  c0=$(date +%s.%N)
  if "$policyc" compile "$T/$label.policy" -o "$T/$label.single.yaml" >/dev/null 2>"$T/compile.$label.log"; then
    c1=$(date +%s.%N)
    single="one file: compiled in $(awk -v a="$c0" -v b="$c1" 'BEGIN {printf "%.2f", b - a}') s, $(stat -c %s "$T/$label.single.yaml") bytes"
    warn=$(grep -oE 'policyc::[a-z_]+' "$T/compile.$label.log" | sort -u | tr '\n' ' ' || true)
    [ -n "$warn" ] && single="$single; warnings: $warn"
  else
    single="one file refused: $(grep -m1 -oE '(policyc::[a-z_]+)' "$T/compile.$label.log" || true) $(first_error <"$T/compile.$label.log")"
    refused+=("$label: policyc compile refused: $(grep -m1 -oE '(policyc::[a-z_]+)' "$T/compile.$label.log" || true) $(first_error <"$T/compile.$label.log")")
    ok=0
  fi
  if [ "$ok" = 1 ] && [ "$chunk" -le 0 ]; then
    mv "$T/$label.single.yaml" "$dir/part-0.yaml"
    parts=1
  elif [ "$ok" = 1 ]; then
    # The bundles policyd loads: CHUNK rules per hook each (--bundle-dir).
    rm -f "$T/$label.single.yaml"
    for ((from = 0; from < n; from += chunk)); do
      to=$((from + chunk < n ? from + chunk : n))
      gen "$series" "$from" "$to" >"$T/$label.$from.policy"
      if ! "$policyc" compile "$T/$label.$from.policy" -o "$dir/part-$from.yaml" >/dev/null 2>"$T/compile.$label.$from.log"; then
        refused+=("$label: part $from..$to refused by policyc: $(grep -m1 '×' "$T/compile.$label.$from.log" | sed 's/^[[:space:]]*×[[:space:]]*//')")
        ok=0
        break
      fi
      parts=$((parts + 1))
    done
  fi
  log "bundle $label: $single; loading $parts bundle(s)"
  [ "$ok" = 1 ] || continue
  l0=$(date +%s.%N)
  if ! start_policyd "$dir" "$label"; then
    refused+=("$label ($parts bundles): policyd refused: $(sed -n '/×/,/help:/p' "$T/policyd.$label.log" | grep -v 'help:' | tr -d '│×' | tr -s ' \n' '  ' | sed 's/ (files: .*//' | cut -c1-300)")
    pd_pid=
    continue
  fi
  l1=$(date +%s.%N)
  log "bundle $label: policyd ready after $(awk -v a="$l0" -v b="$l1" 'BEGIN {printf "%.1f", b - a}') s"
  ready=$(grep -m1 "policyd: ready" "$T/policyd.$label.log")
  terms=$(sed -n 's/.* terms=\([^ ]*\).*/\1/p' <<<"$ready")
  read -r tb fb ni < <(map_memory "$pd_pid" "$label")
  entries=$(curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" | awk '$1 ~ /^policyd_map_entries\{/ && $1 !~ /hook_config|active|stats/ {s += $2} END {print s + 0}')
  read -r ens eruns eshare < <(program_cost exec policy_exec)
  el=$(median 1 <"$T/loop.policy_exec") elc=$(median 2 <"$T/loop.policy_exec")
  read -r cns cruns cshare < <(program_cost connect policy_connect4)
  cl=$(median 1 <"$T/loop.policy_connect4") clc=$(median 2 <"$T/loop.policy_connect4")
  if [ -s "$T/events.$label.jsonl" ]; then
    log "bundle $label: policyd exported events (a rule matched?): $(head -c 300 "$T/events.$label.jsonl")"
  fi
  ld=$(awk '{print $1}' /proc/loadavg)
  stop_policyd
  read -r be bc bce bcc < <(baseline)
  mean() { awk -v a="$1" -v b="$2" 'BEGIN {print (a + b) / 2}'; }
  base_e=$(mean "$prev_be" "$be") base_c=$(mean "$prev_bc" "$bc")
  base_ec=$(mean "$prev_bce" "$bce") base_cc=$(mean "$prev_bcc" "$bcc")
  prev_be=$be prev_bc=$bc prev_bce=$bce prev_bcc=$bcc
  printf '%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "$label" "$((2 * n))" "$terms" "$ens" "$eruns" "$eshare" "$cns" "$cruns" "$cshare" \
    "$el" "$cl" "$base_e" "$base_c" "$tb" "$fb" "$ni" "$entries" "$ld" "$parts" \
    "$elc" "$clc" "$base_ec" "$base_cc" >>"$OUT/results.tsv"
  log "bundle $label: exec $ens ns/run, connect $cns ns/run, tables $tb B; load $ld"
done

# ---- 5. the table -----------------------------------------------------------
echo
echo "kernel_cost: $(date -u +%FT%TZ), $(uname -r), $(nproc) cpus, load now: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "loops: exec = fork+execve($T/true)+waitpid x $EXEC_ITERS, connect = connect(127.0.0.1:$CLOSED_PORT) x $CONNECT_ITERS; $REPS reps, medians"
echo "rules = exec + connect rules, in 'bu' bundles (--bundle-dir); terms as policyd's ready line says"
echo "ns/run = Δrun_time/Δrun_cnt of policy_exec / policy_connect4 (×: vs the series' first size; share: loop iterations / runs)"
echo "loop overhead: wall, cpu = loop time (wall-clock, CPU) with policyd / mean of the no-policyd loops just before and after, - 1;"
echo "  bpf = ns/run / no-policyd CPU ns per iteration (the programs' own time, one run per iteration)"
echo "tables = bytes_memlock of the inner maps; B/rule = tables / rules; margin = Δtables / Δrules vs the series' first size"
echo
awk -F'\t' 'NR > 2 {
  split($1, lab, "-"); s = lab[1]
  if (!(s in e1)) { e1[s] = $4; c1[s] = $7; t1[s] = $14; r1[s] = $2 }
  printf "%-12s %6s %2s %5s | %6.0f %5.2fx %3.0f%% | %5.0f %5.2fx %3.0f%% | %+6.1f%% %+6.1f%% %5.2f%% | %+6.1f%% %+6.1f%% %5.2f%% | %9d %5.0f %5.0f | %7d %6d | %s\n",
    $1, $2, $19, $3, $4, $4 / e1[s], 100 * $6, $7, $7 / c1[s], 100 * $9,
    100 * ($10 / $12 - 1), 100 * ($20 / $22 - 1), 100 * $4 / $22,
    100 * ($11 / $13 - 1), 100 * ($21 / $23 - 1), 100 * $7 / $23,
    $14, $14 / $2, ($2 > r1[s] ? ($14 - t1[s]) / ($2 - r1[s]) : 0), $15, $17, $18
}' "$OUT/results.tsv" | {
  printf '%-12s %6s %2s %5s | %18s | %17s | %22s | %22s | %21s | %14s | %s\n' bundle rules bu terms \
    "exec ns/run × shr" "conn ns/run × shr" "exec loop: wall cpu bpf" "conn loop: wall cpu bpf" "tables B B/rule margin" "fixed B entries" load
  cat
}
for r in "${refused[@]}"; do echo "refused: $r"; done
echo
echo "raw: $OUT/results.tsv (kept with KEEP=1); map lists: $T/maps.*"
