#!/usr/bin/env bash
# memory.sh: bytes of RSS per key in kvsd (memory and file backends) and in
# Redis, filled with the same keys and values, side by side in one run.
#
#   scripts/memory.sh                       # 1,000,000 keys
#   KEYS=10000000 scripts/memory.sh         # 10,000,000 keys
#
# For each backend it starts a kvsd (default flags, so the feed's history is
# at its default) on 127.0.0.1 and a free port, reads its RSS (VmRSS of
# /proc/PID/status), fills it with `kvsbench fill -keys KEYS -key-size 16
# -value-size 98` (keys k000...0 to k(KEYS-1), 16 bytes; values a JSON string
# of 98 letters, 100 bytes), reads the RSS again and prints (after - before)
# / KEYS, and the peak (VmHWM) the same way. Then, when redis-server is
# installed (apt-get install redis-server), the same for Redis: no
# persistence, on 127.0.0.1 and a free port, filled through `redis-cli
# --pipe` with SETs of the same keys and 100-byte values. Last, the ratio of
# each kvsd to Redis. Every process it starts it stops, by PID.
#
# Environment (defaults):
#   KEYS=1000000      keys to fill          BACKENDS="memory file"
#   KEY_SIZE=16       VALUE_SIZE=98 (a JSON string: 100 bytes stored)
#   CONNS=16          kvsbench connections  REDIS=1 (0: skip Redis)
#   KVSD=, KVSBENCH=  binaries to use (default: built from this checkout)
#   KVSD_FLAGS=       more kvsd flags, e.g. "-history 0"
#   SETTLE=0          seconds to wait after the fill before reading RSS
#   DATA=             parent of the file backend's data directory (default
#                     a temporary directory, removed at the end)
#   LOAD=0            after the fill, run `kvsbench set` over the same keys
#                     for this long (e.g. 20s) at LOAD_RATE sets/s, kvsd with
#                     GODEBUG=gctrace=1, and print what the garbage collector
#                     took meanwhile: cycles, CPU (from gctrace) and pauses,
#                     against kvsd's CPU time (/proc/PID/stat)
#   LOAD_RATE=10000
#   SNAPSHOT=0        1: after the fill (and the load), on the file backend,
#                     reset kvsd's peak RSS, run sets until the log has grown
#                     by -snapshot-bytes (64 MiB, about 550,000 sets of these
#                     sizes) so that a snapshot of the whole store is written,
#                     and print the peak RSS meanwhile over the RSS before
#   KEEP=0            1: keep the temporary directory (logs, gctrace lines)
# A machine that measures should be otherwise idle: RSS does not depend on
# the load, but the fill's speed does.
set -u

KEYS=${KEYS:-1000000}
KEY_SIZE=${KEY_SIZE:-16}
VALUE_SIZE=${VALUE_SIZE:-98}
BACKENDS=${BACKENDS:-memory file}
CONNS=${CONNS:-16}
REDIS=${REDIS:-1}
KVSD_FLAGS=${KVSD_FLAGS:-}
SETTLE=${SETTLE:-0}
LOAD=${LOAD:-0}
LOAD_RATE=${LOAD_RATE:-10000}

here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${DATA:-${TMPDIR:-/tmp}}/kvs-memory.XXXXXX")
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  if [ "${KEEP:-0}" = 1 ]; then echo "memory.sh: kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "memory.sh: $*" >&2; exit 2; }

if [ -z "${KVSD:-}" ] || [ -z "${KVSBENCH:-}" ]; then
  (cd "$here" && go build -o "$tmp/bin/" ./cmd/kvsd ./cmd/kvsbench) || die "go build failed"
fi
KVSD=${KVSD:-$tmp/bin/kvsd}
KVSBENCH=${KVSBENCH:-$tmp/bin/kvsbench}

# free_port prints a TCP port on 127.0.0.1 that nothing listens on.
free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  die "no free port found"
}

# rss PID FIELD prints FIELD (VmRSS, VmHWM) of PID in bytes.
rss() { awk -v f="$2:" '$1 == f { print $2 * 1024 }' "/proc/$1/status"; }

# wait_for CMD... retries CMD for up to 60 s.
wait_for() {
  for _ in $(seq 600); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

per_key() { awk -v a="$1" -v b="$2" -v k="$KEYS" 'BEGIN { printf "%.1f", (b - a) / k }'; }
mb() { awk -v a="$1" 'BEGIN { printf "%.1f", a / 1e6 }'; }

# cpu_ms PID prints the CPU time PID used so far, user + system, in ms.
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) * 1000 / hz }' "/proc/$1/stat"; }

# gc_load BACKEND PORT runs the set load against the kvsd $pid and sums the
# gctrace lines it logged meanwhile.
gc_load() {
  local log=$tmp/kvsd-$1.log lines cpu0 cpu1
  lines=$(wc -l <"$log")
  cpu0=$(cpu_ms "$pid")
  "$KVSBENCH" -server-address "127.0.0.1:$2" -c "$CONNS" -progress 0 set -keys "$KEYS" -key-size "$KEY_SIZE" \
    -value-size "$VALUE_SIZE" -d "$LOAD" -rate "$LOAD_RATE" >"$tmp/load-$1.txt" 2>&1 ||
    die "kvsbench set ($1) failed: $(tail -3 "$tmp/load-$1.txt")"
  cpu1=$(cpu_ms "$pid")
  local rate
  rate=$(awk '/^requests / { print $2, "sets in", $4, $5 }' "$tmp/load-$1.txt")
  # gc N @T F%: a+b+c ms clock, d+e/f/g+h ms cpu, ...: pauses are a and c,
  # GC CPU d+e+f+h (g is idle time the collector used).
  tail -n +"$((lines + 1))" "$log" | grep '^gc [0-9]' >"$tmp/gc-$1.txt"
  local p50
  p50=$(awk '{ split($5, c, "+"); print c[1]; print c[3] }' "$tmp/gc-$1.txt" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print 0 }')
  awk -v s="${LOAD%s}" -v p50="$p50" -v kcpu="$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { print b - a }')" '
    { split($5, c, "+"); split($8, u, "[+/]"); n++
      if (c[1] > mx) mx = c[1]; if (c[3] > mx) mx = c[3]
      cpu += u[1] + u[2] + u[3] + u[5]; idle += u[4]; heap = $11; goal = $13 }
    END { printf "  under %s s of sets: %d GC cycles, GC CPU %.0f ms (+%.0f idle) of kvsd'"'"'s %.0f ms (%.1f%%); pauses p50 %.3f ms, max %.3f ms; last heap %s MB, goal %s MB\n",
      s, n, cpu, idle, kcpu, 100 * cpu / kcpu, p50, mx, heap, goal }' "$tmp/gc-$1.txt"
  echo "  kvsbench: $rate"
}

# store_metrics PORT prints where the store's bytes go, per key, from
# kvsd's /metrics (kvsd builds that export kvs_store_*).
store_metrics() {
  curl -fsS "http://127.0.0.1:$1/metrics" 2>/dev/null | awk -v k="$KEYS" '
    $1 == "kvs_store_slab_bytes" { slab = $2 } $1 == "kvs_store_live_bytes" { live = $2 }
    $1 == "kvs_store_index_bytes" { idx = $2 } $1 == "go_gc_gogc_percent" { gogc = $2 }
    END { if (slab != "") printf "  store: slabs %.1f B/key (entries %.1f), index %.1f B/key; GOGC %s\n", slab / k, live / k, idx / k, gogc }'
}

# snapshot_peak PORT writes to the file backend's kvsd $pid until it wrote
# a snapshot, and prints its peak RSS meanwhile.
snapshot_peak() {
  local dir=$tmp/data-file before snaps after peak
  snaps=$(ls "$dir"/*.snap 2>/dev/null)
  echo 5 >"/proc/$pid/clear_refs" || die "cannot reset the peak RSS of kvsd"
  before=$(rss "$pid" VmRSS)
  for _ in $(seq 20); do
    "$KVSBENCH" -server-address "127.0.0.1:$1" -c "$CONNS" -progress 0 set -keys "$KEYS" -key-size "$KEY_SIZE" \
      -value-size "$VALUE_SIZE" -n 100000 >"$tmp/snap-load.txt" 2>&1 || die "kvsbench set failed: $(tail -3 "$tmp/snap-load.txt")"
    # A snapshot is written when a new .snap file appears and the older one is gone.
    if [ "$(ls "$dir"/*.snap 2>/dev/null)" != "$snaps" ] && [ "$(ls "$dir"/*.snap | wc -l)" = 1 ]; then
      after=$(rss "$pid" VmRSS)
      peak=$(rss "$pid" VmHWM)
      printf '  snapshot of %d keys written: RSS %s MB before, peak %s MB meanwhile (+%s%%), %s MB after\n' "$KEYS" \
        "$(mb "$before")" "$(mb "$peak")" "$(awk -v a="$before" -v b="$peak" 'BEGIN { printf "%.1f", 100 * (b - a) / a }')" "$(mb "$after")"
      return
    fi
  done
  echo "  no snapshot written after 2,000,000 sets"
}

declare -A result
printf '%d keys of %d bytes, values of %d bytes (JSON strings), %s\n' "$KEYS" "$KEY_SIZE" $((VALUE_SIZE + 2)) "$(date -u +%FT%TZ)"

for backend in $BACKENDS; do
  port=$(free_port)
  mkdir -p "$tmp/data-$backend"
  gctrace=
  [ "$LOAD" != 0 ] && gctrace=gctrace=1
  # shellcheck disable=SC2086
  GODEBUG=$gctrace "$KVSD" -addr "127.0.0.1:$port" -backend "$backend" -data "$tmp/data-$backend" -log-level warn $KVSD_FLAGS \
    2>"$tmp/kvsd-$backend.log" &
  pid=$!
  wait_for curl -fsS "http://127.0.0.1:$port/readyz" || die "kvsd ($backend) not ready: $(tail -3 "$tmp/kvsd-$backend.log")"
  before=$(rss "$pid" VmRSS)
  began=$(date +%s.%N)
  "$KVSBENCH" -server-address "127.0.0.1:$port" -c "$CONNS" -progress 0 fill \
    -keys "$KEYS" -key-size "$KEY_SIZE" -value-size "$VALUE_SIZE" >"$tmp/fill-$backend.txt" 2>&1 ||
    die "kvsbench fill ($backend) failed: $(tail -3 "$tmp/fill-$backend.txt")"
  took=$(awk -v b="$began" -v e="$(date +%s.%N)" 'BEGIN { printf "%.0f", e - b }')
  sleep "$SETTLE"
  after=$(rss "$pid" VmRSS)
  peak=$(rss "$pid" VmHWM)
  result[$backend]=$(per_key "$before" "$after")
  printf 'kvsd %-6s RSS %s -> %s MB: %s B/key (peak %s B/key), filled in %s s\n' "$backend" \
    "$(mb "$before")" "$(mb "$after")" "${result[$backend]}" "$(per_key "$before" "$peak")" "$took"
  store_metrics "$port"
  [ "$LOAD" != 0 ] && gc_load "$backend" "$port"
  [ "${SNAPSHOT:-0}" = 1 ] && [ "$backend" = file ] && snapshot_peak "$port"
  kill "$pid"; wait "$pid" 2>/dev/null; pid=
done

if [ "$REDIS" = 1 ] && command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
  port=$(free_port)
  redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --daemonize no \
    --dir "$tmp" --logfile "$tmp/redis.log" &
  pid=$!
  wait_for redis-cli -p "$port" ping || die "redis-server not ready: $(tail -3 "$tmp/redis.log")"
  before=$(rss "$pid" VmRSS)
  began=$(date +%s.%N)
  # The same keys as kvsbench fill (k, then the number zero-padded to
  # KEY_SIZE-1 digits) and a 100-byte value: the JSON string kvsd stores.
  awk -v n="$KEYS" -v ks="$KEY_SIZE" -v vs="$VALUE_SIZE" 'BEGIN {
    v = "\""; for (i = 0; i < vs; i++) v = v substr("abcdefghijklmnopqrstuvwxyz", i % 26 + 1, 1); v = v "\""
    fmt = "k%0" (ks - 1) "d"
    for (i = 0; i < n; i++) {
      k = sprintf(fmt, i)
      printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, length(v), v
    }
  }' | redis-cli -p "$port" --pipe >"$tmp/redis-fill.txt" 2>&1 || die "redis fill failed: $(tail -3 "$tmp/redis-fill.txt")"
  took=$(awk -v b="$began" -v e="$(date +%s.%N)" 'BEGIN { printf "%.0f", e - b }')
  sleep "$SETTLE"
  n=$(redis-cli -p "$port" dbsize)
  [ "$n" = "$KEYS" ] || die "redis holds $n keys, want $KEYS"
  after=$(rss "$pid" VmRSS)
  peak=$(rss "$pid" VmHWM)
  result[redis]=$(per_key "$before" "$after")
  used=$(redis-cli -p "$port" info memory | awk -F: '/^used_memory:/ { print $2 + 0 }')
  printf 'redis %-5s RSS %s -> %s MB: %s B/key (peak %s B/key; used_memory %s B/key), filled in %s s\n' \
    "$(redis-server --version | awk '{ print substr($3, 3) }')" "$(mb "$before")" "$(mb "$after")" \
    "${result[redis]}" "$(per_key "$before" "$peak")" "$(per_key 0 "$used")" "$took"
  kill "$pid"; wait "$pid" 2>/dev/null; pid=
  for backend in $BACKENDS; do
    printf 'ratio kvsd %s / redis: %s\n' "$backend" \
      "$(awk -v a="${result[$backend]}" -v b="${result[redis]}" 'BEGIN { printf "%.3f", a / b }')"
  done
else
  echo "redis: not measured (REDIS=0, or redis-server/redis-cli not installed)"
fi
