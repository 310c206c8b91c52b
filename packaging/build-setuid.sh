#!/usr/bin/env bash
# The one way the setuid binary is built, by every package recipe and by
# .ci/check-setuid-deps: the imageswitch package on its own, so cargo never
# unifies its dependencies' features with sysrootctl's (a combined
# `-p imageswitch -p sysrootctl` build would ship a binary CI never checked).
#
#   packaging/build-setuid.sh [TARGET_DIR]      prints the binary's path
#
# TARGET_DIR defaults to $CARGO_TARGET_DIR, else target/ in the checkout.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${1:-${CARGO_TARGET_DIR:-$REPO/target}}
# A test build's configuration path must never reach a package.
env -u IMAGESWITCH_CONFIG_PATH cargo build --release --locked --quiet --manifest-path "$REPO/Cargo.toml" \
    --target-dir "$TARGET" -p imageswitch --bin imageswitch
echo "$TARGET/release/imageswitch"
