#!/usr/bin/env bash
# Desktop launcher, for real: sysrootctl writes sysroot-NAME.desktop; it must
# pass desktop-file-validate, and its Exec line, started the way a desktop
# starts a Terminal=true entry (xterm -e) under Xvfb as an ordinary user, must
# open a shell inside the sysroot that reports the tree's release.
# A screenshot lands in $ARTIFACTS (default target/test-artifacts).
#   sudo tests/desktop.sh LAUNCHER.desktop USER TREE
set -uo pipefail
launcher=$1 user=$2 tree=$3
artifacts=${ARTIFACTS:-$(cd "$(dirname "$0")/.." && pwd)/target/test-artifacts}
passed=0 failed=0
check() { # description command...
    local what=$1; shift
    if "$@"; then echo "ok - $what"; passed=$((passed + 1)); else echo "FAILED - $what"; failed=$((failed + 1)); fi
}

need=()
for pc in xvfb:Xvfb xterm:xterm xdotool:xdotool imagemagick:import desktop-file-utils:desktop-file-validate x11-utils:xwininfo xfonts-base:/usr/share/fonts/X11/misc/fonts.dir fonts-dejavu-core:/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf; do
    { command -v "${pc#*:}" >/dev/null || [ -e "${pc#*:}" ]; } || need+=("${pc%%:*}")
done
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
mkdir -p "$artifacts"

check "desktop-file-validate $launcher" desktop-file-validate "$launcher"
exec_line=$(sed -n 's/^Exec=//p' "$launcher" | head -1)
check "launcher is a Terminal=true application" grep -qx 'Terminal=true' "$launcher"
check "Exec line names an installed program: $exec_line" test -x "${exec_line%% *}"

display=:$((90 + RANDOM % 9))
home=$(getent passwd "$user" | cut -d: -f6)
marker="$home/.imgsw-desktop-$$"
rm -f "$marker"
Xvfb "$display" -screen 0 800x500x24 -nolisten tcp >/dev/null 2>&1 &
xvfb=$!
cleanup() { kill "$term" "$xvfb" 2>/dev/null; wait 2>/dev/null; rm -f "$marker"; }
trap cleanup EXIT
for _ in $(seq 50); do DISPLAY=$display xwininfo -root >/dev/null 2>&1 && break; sleep 0.1; done
chmod 1777 /tmp/.X11-unix 2>/dev/null

# Started as the user, exactly as a desktop would run the entry's Exec.
# shellcheck disable=SC2086
(cd "$home" && setpriv --reuid="$user" --regid="$user" --init-groups -- \
    env DISPLAY=$display HOME="$home" xterm -geometry 90x20+0+0 -fa Monospace -fs 11 -e $exec_line) &
term=$!
for _ in $(seq 100); do
    win=$(DISPLAY=$display xdotool search --class xterm 2>/dev/null | head -1)
    [ -n "$win" ] && break
    sleep 0.1
done
check "a terminal window opened" test -n "${win:-}"
sleep 1
# Typed through XTEST into the focused window, as a person would.
DISPLAY=$display xdotool windowfocus --sync "$win" 2>/dev/null
DISPLAY=$display xdotool type --delay 15 \
    "echo in \$IMAGESWITCH_SYSROOT: \$(cat /etc/debian_version) \$(uname -m) | tee $marker" 2>/dev/null
DISPLAY=$display xdotool key Return 2>/dev/null
for _ in $(seq 100); do [ -s "$marker" ] && break; sleep 0.1; done
sleep 0.5
DISPLAY=$display import -window root "$artifacts/desktop-launcher.png" 2>/dev/null
expected="$(cat "$tree/etc/debian_version")"
check "the shell inside reports the tree's release ($expected)" grep -q ": $expected " "$marker"
check "screenshot saved to $artifacts/desktop-launcher.png" test -s "$artifacts/desktop-launcher.png"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
