#!/usr/bin/env bash
# Where one entry's time goes, step by step: `sudo bench/phases.sh [RUNS]`
# (default 500) after bench/enter.sh has set up its tree and configuration.
#
# Builds a scratch copy of the source with a monotonic-clock mark after each
# step of the entry sequence (bench/phases.py; nothing is changed in the
# checkout, and the marks exist only in that build), then enters the bench's
# tree RUNS times through a pin as a user the tree knows (`bench`, no host
# files), as one it does not (`bench-login`, the per-entry view) and with
# the caller's home bound per entry in a private copy of the pin
# (`bench-home`), and prints each step's median in microseconds. The marks cost about 0.1 us
# each; the steps before main (exec, the dynamic loader) are not seen. The
# instrumented set-uid build is removed when this ends; the pins its entries
# built are imageswitch's own (removed as stale pins are). PHASES_EXTRA (see
# below) adds marks of your own; PHASES_MOUNTS=N measures with N extra host
# mounts.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-500}
[ "$(id -u)" = 0 ] || { echo "bench/phases.sh: run as root" >&2; exit 2; }
CONF=/etc/imageswitch-bench/sysroots.toml
[ -e $CONF ] || { echo "bench/phases.sh: no $CONF: run bench/enter.sh first" >&2; exit 2; }
if [ -z "${IMGSW_PHASES_NS:-}" ]; then
    exec unshare --mount --propagation private -- env IMGSW_PHASES_NS=1 bash "$0" "$@"
fi
# Shared mounts, as on a systemd host: entries join a pin.
mount --make-rshared /
# PHASES_MOUNTS=N: N extra tmpfs mounts on the host first, outside the tree
# (as bench/enter.sh makes them); they vanish with this namespace.
if [ "${PHASES_MOUNTS:-0}" -gt 0 ]; then
    many=/var/lib/imageswitch-bench/many
    for i in $(seq "$PHASES_MOUNTS"); do mkdir -p $many/$i; mount -t tmpfs -o size=64k tmpfs $many/$i; done
fi

SCRATCH=$(mktemp -d)
BIN=/var/lib/imageswitch-bench/phases/imageswitch
# The scratch copy and the instrumented set-uid build go when this ends.
trap 'rm -rf "$SCRATCH"; rm -f $BIN' EXIT
# The workspace as it is checked out, without its build output.
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$SCRATCH"
python3 bench/phases.py "$SCRATCH/src"
# PHASES_EXTRA=FILE.py: a script of your own that adds finer marks to the
# scratch copy (called with its src/ directory, after bench/phases.py).
[ -z "${PHASES_EXTRA:-}" ] || python3 "$PHASES_EXTRA" "$SCRATCH/src"
ISW_PHASES=1 IMAGESWITCH_CONFIG_PATH=$CONF cargo build --release -q --bin imageswitch \
    --manifest-path "$SCRATCH/Cargo.toml" --target-dir target/phases
install -d -m 755 "$(dirname $BIN)"
install -m 4755 -o root target/phases/release/imageswitch $BIN

export LANG=C.UTF-8
cd /tmp
for row in "imgsw-bench bench" "imgsw-bench-new bench-login" "imgsw-bench bench-home"; do
    set -- $row
    as=(setpriv --reuid="$1" --regid="$1" --init-groups --)
    log=$SCRATCH/$2.log
    for _ in 1 2 3; do "${as[@]}" $BIN "$2" /bin/true 2>/dev/null; done
    for _ in $(seq "$RUNS"); do "${as[@]}" $BIN "$2" /bin/true; done 2>&1 | grep '^phase ' >"$log"
    echo "== $2 as $1: median microseconds per step, $RUNS entries"
    python3 - "$log" <<'PY'
import statistics, sys
steps = {}
for line in open(sys.argv[1]):
    _, rest = line.split(" ", 1)
    name, value = rest.rsplit(" ", 1)
    steps.setdefault(name, []).append(float(value))
total = 0.0
for name, values in steps.items():
    median = statistics.median(values)
    total += median
    print(f"{median:8.1f}  {name}")
print(f"{total:8.1f}  from main to the exec (sum of medians)")
PY
done
