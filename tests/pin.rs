//! The pinned namespace (issue 12, ../shared/THREATS.md row 31): entries as
//! real users (`useradd` users, the installed setuid binary), each test in
//! mount namespaces of its own (`unshare --mount`), so the pins it makes, which
//! are mounts in /run/imageswitch/pins, die with them.
//!
//! This machine's mounts may be private: a namespace with `--propagation
//! shared` stands for a systemd host, where the fast path is taken, one with
//! `--propagation private` for a host where it is not.
//!
//! Each test has a configuration of its own (bound over the test
//! configuration in its namespace) and trees of its own: a busybox tree that
//! knows alice (her passwd line, her groups) and has the host files the pin
//! holds, so alice enters the pin of the callers it knows with `setns`
//! alone, while bob, whom it does not know, enters a pin of his account
//! (the view with his passwd and group lines). An entry's
//! `/proc/self/mountinfo` cannot tell these apart; its `/proc/self/ns/mnt`
//! can: it is a pin's own namespace exactly when the entry only joined it.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use common::*;
use test_support::Removed;

const PINS: &str = "/run/imageswitch/pins";

/// Sourced by every test script (and by scripts in namespaces it makes), as
/// root in the test's namespace; `$BIN`, `$CONF`, `$CONFIG`, `$PINS`,
/// `$ALICE`, `$ALICE_HOME`, `$BOB`, `$PIN_NAMES` and `$LIB` (its own path)
/// come from the environment.
const LIB: &str = r#"
# Only the standard streams reach the entries (the callers' own descriptors).
for fd in $(ls /proc/$$/fd); do [ $fd -gt 2 ] && eval "exec $fd>&-"; done
A="setpriv --reuid=$ALICE --regid=$ALICE --init-groups --"
B="setpriv --reuid=$BOB --regid=$BOB --init-groups --"
D=$(mktemp -d /tmp/imgsw-pin-XXXXXX); chmod 1777 $D
# Scripts prepend to $UNDO what puts the host back.
UNDO=
trap 'for p in $D/*.pid; do [ -e "$p" ] && kill $(cat $p) 2>/dev/null; done; eval "$UNDO"; rm -rf $D' EXIT
# Bound once: namespaces made from this one have it already.
cmp -s $CONF $CONFIG || mount --bind $CONF $CONFIG
# Pins are named KEY.SYSROOT.NS.EXE.VIEW.ACCOUNT: the key's id ($PIN_KEY), a
# hash of the sysroot's name ($PIN_NAMES: NAME=HASH ...), this namespace's
# inode number in hex, a hash
# of the binary's build ID ($PIN_EXE, in hex), a hash of the view, and one of
# the passwd and group lines an entry adds with one of the caller's uid,
# LINES-OWNER (0: none, for callers the tree knows).
NS=$(printf %x $(stat -L -c %i /proc/self/ns/mnt))
EXE=$PIN_EXE
# Runs bash script $1 in a mount namespace of its own whose mounts are
# shared, but not with this one's.
own_ns() { unshare --mount --propagation private -- bash -ec "mount --make-rshared /; . $LIB; $1"; }
# Sysroot $1's names in the pin directory for this namespace and binary
# (of account $2 when given), its live pins (a namespace bound there) and its
# live per-entry markers (/dev/null bound there); a name whose namespace is
# gone is an empty file.
tag() { local p; for p in $PIN_NAMES; do [ "${p%%=*}" != "$1" ] || echo ${p#*=}; done; }
names() { ls $PINS | grep -x "$PIN_KEY\.$(tag $1)\.$NS\.$EXE\.[0-9a-f]\{16\}\.${2:-[0-9a-f-]*}\(\.perentry\)\?" || true; }
pins() { for f in $(names $1 $2); do [ "$(stat -f -c %T $PINS/$f)" != nsfs ] || echo $f; done; }
markers() { for f in $(names $1 $2); do [ "$(stat -c %F:%t:%T $PINS/$f)" != "character special file:1:3" ] || echo $f; done; }
count() { echo "$1: $(pins $1 | wc -l) pin, $(markers $1 | wc -l) marker"; }
# What a whole view has, on one line, run as `sh -c "$FACTS" USER DIR`
# inside or on the host: /proc, /sys, /dev, the log socket, USER's home,
# DIR (under /tmp), who USER is, and the host files' contents.
FACTS='echo $(test -e /proc/self/ns/mnt && echo proc) $(test -d /sys/kernel && echo sys) $(test -c /dev/null && echo dev) $(test -S /dev/log && echo log) $(test -d /home/$0 && echo home) $(test -d $1 && echo tmp) $(whoami) $(md5sum /etc/hosts /etc/resolv.conf /etc/timezone /etc/localtime | cut -c1-32)'
# first USER SYSROOT ARGS...: USER's entry (one the tree knows), again until
# SYSROOT has a pin or a marker here, and the output of the last, which made it (an entry that
# finds the builders' lock held, by an entry in any namespace, takes the
# per-entry path and builds nothing; only entries in this namespace build
# its pins).
first() {
    local u=$1 s=$2 out; shift 2
    for _ in $(seq 100); do
        out=$($u $BIN $s "$@")
        [ -z "$(pins $s 0)$(markers $s 0)" ] || break
        sleep 0.05
    done
    [ -z "$out" ] || printf '%s\n' "$out"
}
# The namespace of sysroot $1's pin for the callers the tree knows, as
# readlink shows a process's.
pin_ns() { echo "mnt:[$(stat -c %i $PINS/$(pins $1 0))]"; }
# hold NAME USER SYSROOT: an entry kept running until the script ends, its
# mount namespace in $D/NAME.ns, its pid in $D/NAME.pid.
hold() {
    $2 $BIN $3 sh -c "readlink /proc/self/ns/mnt > $D/$1.tmp; mv $D/$1.tmp $D/$1.ns; exec sleep 120" </dev/null >/dev/null &
    echo $! > $D/$1.pid
    local i=0; while [ ! -s $D/$1.ns ] && [ $i -lt 3000 ]; do i=$((i+1)); sleep 0.01; done
}
# How entry NAME (see hold) relates to sysroot $2's pins.
relation() {
    local ns=$(cat $D/$1.ns) where="a namespace of its own" f
    for f in $(pins $2); do [ "$ns" != "mnt:[$(stat -c %i $PINS/$f)]" ] || where="an account's pin"; done
    [ "$ns" != "$(pin_ns $2)" ] || where="the pin"
    echo "$1 in $where"
}
"#;

/// A directory of this test's own (removed on drop): its configuration,
/// `sysroots` after the `[defaults]` every test shares, and [`LIB`].
fn test_dir(tag: &str, sysroots: &str) -> Removed {
    let dir = Removed(PathBuf::from(format!("{PREFIX}/pin-{tag}-{}-{}", std::process::id(), unique())));
    fs::create_dir_all(&dir.0).expect("mkdir");
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = format!("[defaults]\nbinds = [\"/tmp\"]\nlog_socket = \"{LOG_SOCKET}\"\n\n{sysroots}");
    write_root_file(&dir.0.join("sysroots.toml"), &config);
    write_root_file(&dir.0.join("lib.sh"), LIB);
    dir
}

fn write_root_file(path: &Path, text: &str) {
    fs::write(path, text).expect("write");
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).expect("chmod");
}

fn sysroot(name: &str, tree: &Path, extra: &str) -> String {
    format!("[sysroot.{name}]\npath = \"{}\"\n{extra}\n", tree.display())
}

/// The first line of `getent DATABASE KEY`.
fn getent(database: &str, key: &str) -> String {
    let out = run(Command::new("getent").args([database, key]));
    assert!(out.status.success(), "getent {database} {key}");
    stdout(&out).lines().next().expect("one line").to_string()
}

/// A busybox tree that knows alice with all her groups, has a file at each
/// host file's path (so the pin holds them), a /run as installed trees have,
/// and a home for each user (for a sysroot that does not bind /home).
fn known_tree(tag: &str) -> Removed {
    let tree = Removed(scratch_tree(tag));
    let etc = tree.0.join("etc");
    let passwd = format!("root:x:0:0:root:/root:/bin/sh\n{}\n", getent("passwd", ALICE));
    let group = format!("root:x:0:\n{}\n{}\n", getent("group", ALICE), getent("group", PHYSICS));
    write_root_file(&etc.join("passwd"), &passwd);
    write_root_file(&etc.join("group"), &group);
    for file in ["hosts", "resolv.conf", "timezone", "localtime"] {
        write_root_file(&etc.join(file), "the tree's own\n");
    }
    sh(&format!(
        "cd {t} && for a in whoami cut sort tr wc head md5sum mount umount unshare nsenter; do ln -s busybox bin/$a; done \
         && mkdir -m 755 run && for u in {ALICE} {BOB}; do mkdir home/$u && chown $u: home/$u; done",
        t = tree.0.display()
    ));
    tree
}

/// Adds bob's passwd line and his group's line to a [`known_tree`], so
/// that he too joins the pin of the callers the tree knows.
fn knows_bob_too(tree: &Path) {
    let etc = tree.join("etc");
    for database in ["passwd", "group"] {
        let mut text = fs::read_to_string(etc.join(database)).expect("read");
        text.push_str(&format!("{}\n", getent(database, BOB)));
        write_root_file(&etc.join(database), &text);
    }
}

/// Runs `script` (after sourcing [`LIB`]) with bash as root in a new mount
/// namespace with `propagation`, the configuration of `dir` in force. One
/// at a time: every namespace's pins are built under one lock, which an
/// entry only tries (finding it held, it takes the per-entry path), so the
/// first entry of one test would not build its pin while another builds.
fn in_ns(propagation: &str, dir: &Path, script: &str) -> Output {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    fixture();
    let script = format!(". {}/lib.sh\n{script}", dir.display());
    run(Command::new("unshare")
        .args(["--mount", &format!("--propagation={propagation}"), "--", "bash", "-ec", &script])
        .env("BIN", BIN)
        .env("CONF", dir.join("sysroots.toml"))
        .env("CONFIG", TEST_CONFIG)
        .env("PINS", PINS)
        .env("ALICE", ALICE)
        .env("ALICE_HOME", home_of(ALICE))
        .env("BOB", BOB)
        .env("LIB", dir.join("lib.sh"))
        .env("PIN_NAMES", pin_names())
        .env("PIN_KEY", key_id(name_key()))
        .env("PIN_EXE", pin_exe())
        .current_dir("/tmp"))
}

/// The sysroots the tests configure, each with the hash of its name that
/// names its pins (src/pin.rs `hidden_name`: keyed with [`name_key`], so
/// that the mount table shows nobody the names of sysroots they may not
/// enter).
fn pin_names() -> String {
    let key = name_key();
    ["known", "nohome", "gen", "withrun", "norun"].map(|name| format!("{name}={:016x}", keyed(key, name))).join(" ")
}

/// The key of pins' names (src/pin.rs `NameKey`): the 16 bytes of
/// `PINS/key`, which imageswitch makes at its first entry; when there is
/// none yet, one entry as root into the fixture's `bb`, in a namespace of
/// its own, makes it.
fn name_key() -> [u8; 16] {
    fixture();
    let path = Path::new(PINS).join("key");
    if !path.exists() {
        run(Command::new("unshare").args(["--mount", "--propagation=private", "--", BIN, "bb", "true"]));
    }
    let bytes = fs::read(&path).expect("imageswitch made its pins' name key");
    bytes.try_into().expect("the name key is 16 bytes")
}

/// The first part of every pin's name made with `key` (src/pin.rs
/// `NameKey::id`).
fn key_id(key: [u8; 16]) -> String {
    format!("{:08x}", keyed(key, "imageswitch pin names") >> 32)
}

/// SipHash-2-4 of `text` keyed with `key`, as src/pin.rs `NameKey` hashes
/// a sysroot's name.
fn keyed(key: [u8; 16], text: impl AsRef<[u8]>) -> u64 {
    use std::hash::Hasher;
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    #[allow(deprecated)] // std's only keyed SipHash, as the binary uses it.
    let mut h = std::hash::SipHasher::new_with_keys(word(&key[..8]), word(&key[8..]));
    h.write(text.as_ref());
    h.finish()
}

/// The binary's part of its pins' names: the FNV-1a hash of its GNU build
/// ID, in hex (src/pin.rs `this_binary`).
fn pin_exe() -> String {
    let id = test_support::build_id(Path::new(BIN)).expect("the installed imageswitch has a GNU build ID");
    format!("{:x}", test_support::fnv1a(id))
}

/// The script's output lines, once it has succeeded.
fn lines(out: &Output) -> Vec<String> {
    assert!(out.status.success(), "script failed: {}\n{}", stdout(out), stderr(out));
    stdout(out).lines().map(str::to_string).collect()
}

#[test]
fn host_mounts_made_after_the_pin_appear_inside_pinned_when_shared_per_entry_when_private() {
    require_root!();
    let tree = known_tree("pin-late");
    let dir = test_dir("late", &sysroot("known", &tree, "binds = [\"/home\"]"));
    let euid = test_support::c_program("euid", &["-static"]);
    // A job's tmpfs under /tmp and an automounted home under /home, both
    // mounted after the first entry; then the job's tmpfs goes away again.
    // The job's tmpfs allows setuid programs: one that prints its euid
    // elevates on the host, and comes into the pin with the mount as it is,
    // where no_new_privs still keeps it the user's (THREATS rows 8, 23).
    let script = format!(
        r#"first "$A" known true
count known
for m in $(markers known); do stat -c "marker: %F %t:%T" $PINS/$m; done
mkdir $D/job && mount -t tmpfs job $D/job && echo job > $D/job/file
mount -t tmpfs home /home/$BOB && echo home > /home/$BOB/file
$A $BIN known cat $D/job/file /home/$BOB/file
cp {euid} $D/job/euid && chmod 4755 $D/job/euid
$A $D/job/euid
$A $BIN known $D/job/euid
hold late "$A" known
if [ -n "$(pins known)" ]; then relation late known; else echo "late not pinned"; fi
umount $D/job
$A $BIN known ls $D/job
count known
"#,
        euid = euid.display()
    );
    let alice = test_support::uid_of(ALICE).to_string();
    for (propagation, expect) in [
        (
            "shared",
            vec!["known: 1 pin, 0 marker", "job", "home", "0", &alice, "late in the pin", "known: 1 pin, 0 marker"],
        ),
        (
            "private",
            vec![
                "known: 0 pin, 1 marker",
                "marker: character special file 1:3",
                "job",
                "home",
                "0",
                &alice,
                "late not pinned",
                "known: 0 pin, 1 marker",
            ],
        ),
    ] {
        let out = in_ns(propagation, &dir, &script);
        assert_eq!(lines(&out), expect, "{propagation} host: {}", stderr(&out));
    }
}

/// Mount points are bytes, not text: a host mount whose name is not UTF-8
/// (a Latin-1 directory name, say) must not keep every entry off the pin.
#[test]
fn host_mount_points_whose_names_are_not_utf8_leave_the_pin_in_use() {
    require_root!();
    let tree = known_tree("pin-bytes");
    let dir = test_dir("bytes", &sysroot("known", &tree, "binds = [\"/home\"]"));
    let script = r#"odd=$D/caf$(printf '\351')
mkdir "$odd" && mount -t tmpfs odd "$odd" && UNDO="umount '$odd'; $UNDO"
first "$A" known true
count known
$A $BIN known whoami
"#;
    let out = in_ns("shared", &dir, script);
    assert_eq!(lines(&out), ["known: 1 pin, 0 marker", ALICE], "{}", stderr(&out));
}

/// Pins' names are in the mount table everybody reads. Hashed without a
/// key, the sysroot's name and a caller's uid could be guessed and checked
/// there (which sysroot a 0600 configuration hides, who entered it); keyed
/// with a secret of root's, the names say nothing a user can check.
#[test]
fn row31_pin_names_in_the_mount_table_tell_users_no_sysroot_name_and_no_uid() {
    require_root!();
    let tree = known_tree("pin-names");
    let dir = test_dir("names", &sysroot("known", &tree, "binds = [\"/home\"]"));
    // A pin directory of this namespace's own, with no key yet: the first
    // entry makes one.
    // An older binary's marker, named with unkeyed hashes (the FNV-1a hash
    // of "deb11"), is there before: the first build removes it.
    let script = r#"mount -t tmpfs -o mode=0700 names $PINS
old=$PINS/d9924875a81458b6.$NS.1.2.0.perentry
: > $old && mount --bind /dev/null $old
for _ in 1 2 3; do $A $BIN known true; $B $BIN known true; done
if [ -e $old ] || grep -q " $old " /proc/self/mountinfo; then echo "old marker kept"; else echo "old marker removed"; fi
stat -c '%u %a %s' $PINS/key
od -An -v -tx1 $PINS/key | tr -d ' \n'; echo
for n in $(ls $PINS); do ! $B grep -q " $PINS/$n " /proc/self/mountinfo || echo $n; done
"#;
    let out = in_ns("shared", &dir, script);
    let got = lines(&out);
    assert_eq!(got[..2], ["old marker removed", "0 600 16"], "the key is root's alone: {got:?}");
    let key: Vec<u8> = (0..16).map(|i| u8::from_str_radix(&got[2][2 * i..2 * i + 2], 16).unwrap()).collect();
    let key: [u8; 16] = key.try_into().unwrap();
    // What bob reads in his mount table, of this namespace's pin directory.
    let names = &got[3..];
    let bob = test_support::uid_of(BOB).to_le_bytes();
    let ours = format!("{}.{:016x}.", key_id(key), keyed(key, "known"));
    let owner = format!("{:016x}", keyed(key, bob));
    assert!(names.iter().any(|n| n.starts_with(&ours) && n.ends_with(".0")), "alice's pin: {names:?}");
    assert!(names.iter().any(|n| n.starts_with(&ours) && n.ends_with(&owner)), "bob's pin: {names:?}");
    for guess in [test_support::fnv1a("known"), test_support::fnv1a(bob)] {
        let guess = format!("{guess:016x}");
        assert!(!names.iter().any(|n| n.contains(&guess)), "{guess} in {names:?}");
    }
}

/// A key file that is not 16 bytes, or not a regular file (only root can
/// put one there), is replaced by the next entry, which neither waits on it
/// nor leaves every later entry off the pin.
#[test]
fn row31_a_key_that_is_not_16_bytes_or_not_a_file_is_replaced_and_holds_no_entry_up() {
    require_root!();
    let tree = known_tree("pin-badkey");
    let dir = test_dir("badkey", &sysroot("known", &tree, "binds = [\"/home\"]"));
    let script = r#"mount -t tmpfs -o mode=0700 badkey $PINS
printf short > $PINS/key && chmod 600 $PINS/key
timeout -s KILL 20 $A $BIN known true; echo rc=$?
stat -c '%F %s' $PINS/key
rm $PINS/key && mkfifo -m 600 $PINS/key
timeout -s KILL 20 $A $BIN known true; echo rc=$?
stat -c '%F %s' $PINS/key
"#;
    let out = in_ns("shared", &dir, script);
    assert_eq!(lines(&out), ["rc=0", "regular file 16", "rc=0", "regular file 16"], "{}", stderr(&out));
}

#[test]
fn row31_users_cannot_list_open_join_or_replace_a_pin() {
    require_root!();
    let tree = known_tree("pin-row31");
    let dir = test_dir("row31", &sysroot("known", &tree, "binds = [\"/home\"]"));
    // The first entry builds the pin; no descriptor of it, of the pin
    // directory or of the lock reaches any kind of entry's command (one
    // joining it, bob's building the pin of his account): only the
    // caller's standard streams and ls's own (3).
    let script = r#"echo "building entry: $(echo $(first "$A" known ls /proc/self/fd/))"
echo "joining entry: $(echo $($A $BIN known ls /proc/self/fd/))"
echo "bob's entry: $(echo $($B $BIN known ls /proc/self/fd/))"
pin=$(pins known 0)
stat -c '%a %U %G' $PINS
stat -f -c %T $PINS/$pin
for pin in $(pins known); do for U in "$A" "$B"; do
    $U ls $PINS >/dev/null 2>&1 && echo listed
    $U cat $PINS/$pin >/dev/null 2>&1 && echo opened
    $U stat $PINS/$pin >/dev/null 2>&1 && echo looked-up
    $U touch $PINS/$pin.new 2>/dev/null && echo created
    $U mv $PINS/$pin $PINS/x 2>/dev/null && echo renamed
    $U ln $PINS/$pin $D/x 2>/dev/null && echo linked
    $U nsenter --mount=$PINS/$pin true 2>/dev/null && echo entered-pin
    $U unshare -Ur nsenter --mount=$PINS/$pin true 2>/dev/null && echo entered-pin-from-userns
done; done
# alice's entry is in the pin itself, bob's in the pin of his account: their
# namespace files are theirs to open, but joining needs CAP_SYS_ADMIN over
# the namespace's owner, the initial user namespace, also from a user
# namespace of their own.
hold alice "$A" known
hold bob "$B" known
relation alice known
relation bob known
for U in "$A" "$B"; do
    for p in $(cat $D/alice.pid) $(cat $D/bob.pid); do
        $U nsenter --mount=/proc/$p/ns/mnt true 2>/dev/null && echo joined
        $U unshare -Ur nsenter --mount=/proc/$p/ns/mnt true 2>/dev/null && echo joined-from-userns
        $U nsenter --user=/proc/$p/ns/user --mount=/proc/$p/ns/mnt true 2>/dev/null && echo joined-with-userns
    done
done
# The same, from inside: the tree's nsenter as alice in her pinned entry.
$A $BIN known nsenter --mount=/proc/$(cat $D/bob.pid)/ns/mnt true 2>/dev/null && echo joined-from-inside
echo done
"#;
    let out = in_ns("shared", &dir, script);
    assert_eq!(
        lines(&out),
        [
            "building entry: 0 1 2 3",
            "joining entry: 0 1 2 3",
            "bob's entry: 0 1 2 3",
            "700 root root",
            "nsfs",
            "alice in the pin",
            "bob in an account's pin",
            "done"
        ],
        "{}",
        stderr(&out)
    );
}

#[test]
fn row31_processes_inside_cannot_change_the_pinned_view_or_reach_another_callers_copy() {
    require_root!();
    let tree = known_tree("pin-inside");
    let dir = test_dir("inside", &(sysroot("known", &tree, "binds = [\"/home\"]") + &sysroot("nohome", &tree, "")));
    // alice, in the pin itself, tries to change it: mount, unmount, remount,
    // with the tree's busybox and its setuid-root copy (no_new_privs and the
    // sealed tree keep it hers), and from a user namespace.
    let script = r#"first "$A" known true
pin=$(pins known 0)
table() { nsenter --mount=$PINS/$pin cat /proc/self/mountinfo | cut -d' ' -f4-6 | sort; }
before=$(table)
hold alice "$A" known
relation alice known
cat > $D/attacks <<'END'
mount -t tmpfs x /tmp
mount --bind /tmp /home
mount -o remount,suid /
mount -o remount,rw,suid /proc
umount /proc
umount -l /dev
umount -l /home
/bin/suid-busybox mount -t tmpfs x /tmp
/bin/suid-busybox mount -o remount,suid /
/bin/suid-busybox umount -l /home
unshare -m sh -c "mount -t tmpfs x /tmp"
END
$A $BIN known sh -c 'while read -r attack; do ! sh -c "$attack" </dev/null >/dev/null 2>&1 || echo "done: $attack"; done' < $D/attacks
# A user namespace of alice's may work, and mounts only in a copy of its own.
$A $BIN known unshare -Urm sh -c "mount -t tmpfs x /tmp; umount -l /proc" >/dev/null 2>&1 || true
[ "$before" = "$(table)" ] && echo pin unchanged
# A mount made (as root) in alice's private copy, where her home outside the
# binds is bound, never reaches the pin nor bob's copy.
first "$A" nohome true
hold copy "$A" nohome
relation copy nohome
p=$(cat $D/copy.pid)
grep -c " $ALICE_HOME " /proc/$p/mountinfo
nsenter --mount=/proc/$p/ns/mnt mount -t tmpfs alice-only /tmp
grep -c " alice-only " /proc/$p/mountinfo
$B $BIN nohome cat /proc/self/mountinfo | grep -c " $ALICE_HOME \| alice-only " || true
nsenter --mount=$PINS/$(pins nohome 0) cat /proc/self/mountinfo | grep -c " $ALICE_HOME \| alice-only " || true
# alice's session directory (made now when the host has none) is hers
# alone: it puts her entries into a copy, and reaches neither the pin nor bob.
ru=/run/user/$(id -u $ALICE)
[ -e /run/user ] || { mkdir -m 755 /run/user; UNDO="rmdir /run/user; $UNDO"; }
[ -e $ru ] || { install -d -m 700 -o $ALICE -g $ALICE $ru; UNDO="rmdir $ru; $UNDO"; }
hold session "$A" known
relation session known
grep -c " $ru " /proc/$(cat $D/session.pid)/mountinfo
$B $BIN known ls -d $ru 2>/dev/null || echo "not in bob's entry"
nsenter --mount=$PINS/$pin ls -d $ru 2>/dev/null || echo "not in the pin"
# Control: the first attack, made with root's capabilities, does change it.
nsenter --mount=$PINS/$pin mount -t tmpfs x /tmp
[ "$before" != "$(table)" ] && echo "control: root changes the pin"
"#;
    let out = in_ns("shared", &dir, script);
    assert_eq!(
        lines(&out),
        [
            "alice in the pin",
            "pin unchanged",
            "copy in a namespace of its own",
            "1",
            "1",
            "0",
            "0",
            "session in a namespace of its own",
            "1",
            "not in bob's entry",
            "not in the pin",
            "control: root changes the pin"
        ],
        "{}",
        stderr(&out)
    );
}

#[test]
fn row31_a_new_generation_a_changed_config_or_another_namespace_selects_another_pin() {
    require_root!();
    let gens = Removed(PathBuf::from(format!("{PREFIX}/scratch/pin-gens-{}-{}", std::process::id(), unique())));
    fs::create_dir(&gens.0).expect("mkdir");
    fs::set_permissions(&gens.0, fs::Permissions::from_mode(0o755)).expect("chmod");
    for (n, text) in [(1, "one"), (2, "two")] {
        let tree = known_tree("pin-gen");
        write_root_file(&tree.join("generation"), &format!("{text}\n"));
        fs::rename(&tree.0, gens.0.join(format!("gen{n}"))).expect("move the generation");
    }
    std::os::unix::fs::symlink("gen1", gens.0.join("current")).expect("current link");
    let current = gens.0.join("current");
    let dir = test_dir("keys", &sysroot("gen", &current, "binds = [\"/home\"]"));
    // The changed configuration binds one more directory (which only the
    // second generation has a place for).
    let extra = dir.0.join("extra");
    sh(&format!(
        "mkdir -m 755 {e} && mkdir -p {g}/gen2{e} && echo extra > {e}/file",
        e = extra.display(),
        g = gens.0.display()
    ));
    let changed = dir.0.join("changed.toml");
    write_root_file(
        &changed,
        &fs::read_to_string(dir.0.join("sysroots.toml"))
            .expect("config")
            .replace("binds = [\"/home\"]", &format!("binds = [\"/home\", \"{}\"]", extra.display())),
    );
    let script = format!(
        r#"first "$A" gen cat /generation
p1=$(pins gen)
# alice keeps the old pin's namespace alive, in an entry of hers.
hold old "$A" gen
relation old gen
ln -sfn gen2 {g}/current.new && mv -T {g}/current.new {g}/current
first "$A" gen cat /generation
count gen
p2=$(pins gen)
[ "$p2" != "$p1" ] && echo "generation: another pin"
[ -e $PINS/$p1 ] || echo "generation: the old pin removed"
[ "$(cat $D/old.ns)" != "$(pin_ns gen)" ] && echo "generation: the old one kept alive is not entered"
mount --bind {changed} $CONFIG
first "$A" gen cat /generation {e}/file
count gen
p3=$(pins gen)
[ "$p3" != "$p2" ] && echo "config: another pin"
[ -e $PINS/$p2 ] || echo "config: the old pin removed"
other=$(CONF={changed} own_ns 'first "$A" gen cat {e}/file >&2; pins gen')
[ -n "$other" ] && [ "$other" != "$p3" ] && echo "namespace: another pin"
[ "$(stat -f -c %T $PINS/$p3)" = nsfs ] && echo "namespace: ours kept"
# A pin whose namespace is gone leaves an empty file under its name (after
# a kill, or where a later namespace reuses the inode number): never entered.
umount $PINS/$p3
stat -c %F $PINS/$p3
first "$A" gen cat /generation {e}/file
count gen
stat -f -c %T $PINS/$(pins gen)
[ -e $PINS/$other ] || echo "the pin of a namespace that is gone removed"
"#,
        g = gens.0.display(),
        e = extra.display(),
        changed = changed.display()
    );
    let out = in_ns("shared", &dir, &script);
    assert_eq!(
        lines(&out),
        [
            "one",
            "old in the pin",
            "two",
            "gen: 1 pin, 0 marker",
            "generation: another pin",
            "generation: the old pin removed",
            "generation: the old one kept alive is not entered",
            "two",
            "extra",
            "gen: 1 pin, 0 marker",
            "config: another pin",
            "config: the old pin removed",
            "namespace: another pin",
            "namespace: ours kept",
            "regular empty file",
            "two",
            "extra",
            "gen: 1 pin, 0 marker",
            "nsfs",
            "the pin of a namespace that is gone removed",
        ],
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out), "extra\n");
}

#[test]
fn row31_a_kill_at_any_moment_of_the_first_entry_leaves_nothing_a_later_entry_uses() {
    require_root!();
    let tree = known_tree("pin-kill");
    let dir = test_dir("kill", &sysroot("known", &tree, "binds = [\"/home\"]"));
    let kills = test_support::count_from_env("IMGSW_PIN_KILLS", 30);
    // First entries, each in a namespace of its own, killed after 0, 0.5,
    // 1, ... ms (every other one with the builder it forked, the others
    // alone); then the next entry, whichever path it takes, and an entry
    // joining the pin then built have the whole view: the host's (FACTS).
    let script = format!(
        r#"state() {{ left=nothing; [ -z "$(names known)" ] || left="an empty file"; [ -z "$(pins known)" ] || left="a whole pin"; echo $left; }}
kill_first() {{
    before=$(state)
    setsid $A $BIN known true </dev/null >/dev/null 2>&1 & p=$!
    sleep $(printf '0.%04d' $(($1 * 5)))
    if [ $(($1 % 2)) = 0 ]; then kill -9 -- -$p; else kill -9 $p; fi 2>/dev/null || true
    wait $p 2>/dev/null || true
    echo "kill $1: $(state) (before: $before)"
    i=0; while pgrep -g $p >/dev/null && [ $i -lt 1000 ]; do i=$((i+1)); sleep 0.01; done
    ! pgrep -g $p >/dev/null || echo "processes left behind"
    $A $BIN known sh -c "$FACTS" $ALICE $D
    first "$A" known true
    count known
    echo "$($A $BIN known sh -c "$FACTS; readlink /proc/self/ns/mnt" $ALICE $D | tr '\n' ' ')"
    pin_ns known
}}
export -f state kill_first
$A sh -c "$FACTS" $ALICE $D
for i in $(seq 0 {last}); do
    own_ns "kill_first $i"
done
"#,
        last = kills - 1
    );
    let out = in_ns("shared", &dir, &script);
    let got = lines(&out);
    let host = &got[0];
    // The log socket is bound where the host has a /dev/log (tests/run starts a syslog daemon).
    let log = if Path::new("/dev/log").exists() { " log" } else { "" };
    assert!(host.starts_with(&format!("proc sys dev{log} home tmp {ALICE} ")), "{host}");
    let mut moments = std::collections::BTreeMap::<&str, usize>::new();
    let rest = &got[1..];
    assert_eq!(rest.len(), 5 * kills, "{got:?}\n{}", stderr(&out));
    for run in rest.chunks(5) {
        let left = run[0].split_once(": ").expect("what the kill left").1;
        *moments.entry(left).or_default() += 1;
        assert_eq!(run[1], *host, "the next entry after {}", run[0]);
        assert_eq!(run[2], "known: 1 pin, 0 marker", "after {}", run[0]);
        assert_eq!(run[3], format!("{host} {} ", run[4]), "an entry into the pin after {}", run[0]);
    }
    test_support::figure(&format!("pin kill test: what {kills} kills left in the pin directory: {moments:?}"));
}

#[test]
fn concurrent_first_entries_all_succeed_with_the_whole_view_and_build_at_most_one_pin_each() {
    require_root!();
    let tree = known_tree("pin-race");
    let dir = test_dir("race", &sysroot("known", &tree, "binds = [\"/home\"]"));
    // Eight first entries released at once, alice's and bob's in turn: each
    // has the whole view, whether it joined the pin, copied it (bob), or
    // found another building it and took the per-entry path.
    let script = r#"for i in $(seq 8); do
    if [ $((i % 2)) = 1 ]; then U=$A u=$ALICE; else U=$B u=$BOB; fi
    (while [ ! -e $D/go ]; do sleep 0.001; done
     $U $BIN known sh -c "$FACTS" $u $D > $D/out$i 2>&1; echo $? > $D/rc$i) &
done
touch $D/go
wait
# Usually one of them built it; all of them find the lock held when an
# entry elsewhere (any namespace) builds, and a later entry builds it.
[ $(pins known 0 | wc -l) -le 1 ] && [ $(pins known | wc -l) -le 2 ] && echo "at most one pin for each account"
first "$A" known true
echo "known: $(pins known 0 | wc -l) pin for the callers it knows"
for i in $(seq 8); do echo "$(cat $D/rc$i) $(cat $D/out$i)"; done
$A sh -c "$FACTS" $ALICE $D
$B sh -c "$FACTS" $BOB $D
"#;
    let out = in_ns("shared", &dir, script);
    let got = lines(&out);
    let (alice, bob) = (&got[10], &got[11]);
    let mut expect =
        vec!["at most one pin for each account".to_string(), "known: 1 pin for the callers it knows".to_string()];
    expect.extend((1..=8).map(|i| format!("0 {}", if i % 2 == 1 { alice } else { bob })));
    assert_eq!(got[..10], expect, "{}", stderr(&out));
}

/// A bind under a directory whose mode lets others search it but not its
/// own group's members (`root:BOB 0705`), or whose ACL shuts bob out
/// (`u:BOB:---` on a 0755 directory): alice may read the files below on the
/// host, bob may not. The tree knows both, so both join the pin of the
/// callers it knows; neither bind is in it, so after alice's entries (the
/// pin built) bob still reads neither inside.
#[test]
fn row31_a_bind_some_users_may_not_reach_through_group_bits_or_an_acl_is_never_in_the_shared_pin() {
    require_root!();
    let tree = known_tree("pin-deny");
    knows_bob_too(&tree.0);
    let host = Removed(PathBuf::from(format!("{PREFIX}/pin-deny-host-{}-{}", std::process::id(), unique())));
    let (by_group, by_acl) = (host.0.join("by-group"), host.0.join("by-acl"));
    sh(&format!(
        "mkdir -m 755 {h} && for d in {g} {a}; do mkdir -p $d/data && echo secret-behind-$(basename $d) > $d/data/secret \
         && chmod 644 $d/data/secret && mkdir -p {t}$d/data; done \
         && chown root:{BOB} {g} && chmod 705 {g} && chmod 755 {a} && setfacl -m u:{BOB}:--- {a}",
        h = host.0.display(),
        g = by_group.display(),
        a = by_acl.display(),
        t = tree.0.display()
    ));
    let binds = format!("binds = [\"/home\", \"{}/data\", \"{}/data\"]", by_group.display(), by_acl.display());
    let dir = test_dir("deny", &sysroot("known", &tree, &binds));
    let script = format!(
        r#"for d in {g} {a}; do $B cat $d/data/secret 2>/dev/null || echo "bob cannot read $(basename $d) on the host"; done
first "$A" known true
for d in {g} {a}; do $A $BIN known cat $d/data/secret; done
for d in {g} {a}; do $B $BIN known cat $d/data/secret 2>/dev/null || echo "bob cannot read $(basename $d) inside"; done
[ -n "$(pins known 0)" ] && echo "one pin for the callers the tree knows"
echo "in the pin: $(nsenter --mount=$PINS/$(pins known 0) sh -c "cat {g}/data/secret {a}/data/secret" 2>/dev/null || true)"
"#,
        g = by_group.display(),
        a = by_acl.display()
    );
    let out = in_ns("shared", &dir, &script);
    assert_eq!(
        lines(&out),
        [
            "bob cannot read by-group on the host",
            "bob cannot read by-acl on the host",
            "secret-behind-by-group",
            "secret-behind-by-acl",
            "bob cannot read by-group inside",
            "bob cannot read by-acl inside",
            "one pin for the callers the tree knows",
            "in the pin: ",
        ],
        "{}",
        stderr(&out)
    );
}

/// A host file only a group may read (`root:PHYSICS 0640`, alice in it,
/// bob not): alice sees it, per entry (a view not everybody may have builds
/// no pin, which would replace other callers'); bob sees the tree's own
/// file, with a warning, from a pin that alice's entries leave in place.
#[test]
fn row31_a_host_file_only_some_callers_may_read_is_shown_to_them_alone_and_replaces_no_pin() {
    require_root!();
    let tree = known_tree("pin-hostfile");
    knows_bob_too(&tree.0);
    let name = format!("imgsw-pin-group-only-{}", std::process::id());
    let host_file = Removed(PathBuf::from(format!("/etc/{name}")));
    sh(&format!(
        "echo the-physics-group-file > {h} && chown root:{PHYSICS} {h} && chmod 640 {h} && echo the-trees-own > {t}/etc/{name}",
        h = host_file.0.display(),
        t = tree.0.display()
    ));
    let extra = format!("binds = [\"/home\"]\nhost_files = [\"{}\"]", host_file.0.display());
    let dir = test_dir("hostfile", &sysroot("known", &tree, &extra));
    let script = format!(
        r#"$A $BIN known cat {h}
$B $BIN known cat {h} 2>$D/bob.err
grep -c "not shown: permission denied" $D/bob.err
first "$B" known true
before=$(pins known 0)
echo "$(echo $before | wc -w) pin for the callers the tree knows"
for _ in 1 2 3; do $A $BIN known true; done
[ "$(pins known 0)" = "$before" ] && echo "alice's entries leave it in place"
hold a "$A" known
hold b "$B" known
relation a known
relation b known
"#,
        h = host_file.0.display()
    );
    let out = in_ns("shared", &dir, &script);
    assert_eq!(
        lines(&out),
        [
            "the-physics-group-file",
            "the-trees-own",
            "1",
            "1 pin for the callers the tree knows",
            "alice's entries leave it in place",
            "a in a namespace of its own",
            "b in the pin",
        ],
        "{}",
        stderr(&out)
    );
}

/// The tree is read-only in a pin as in a private copy of it: a directory
/// of the tree's own that alice's group may write (`root:PHYSICS 2775`, as a
/// tree's /var/mail or /var/local are for mail or staff) takes nothing of
/// hers into the generation every caller shares.
#[test]
fn row31_nobody_writes_the_tree_through_a_pin_even_where_their_group_may() {
    require_root!();
    let tree = known_tree("pin-readonly");
    sh(&format!(
        "mkdir -p {t}/var/shared && chown root:{PHYSICS} {t}/var/shared && chmod 2775 {t}/var/shared",
        t = tree.display()
    ));
    let dir = test_dir("readonly", &sysroot("known", &tree, "binds = [\"/home\"]"));
    let script = r#"first "$A" known true
$A $BIN known sh -c 'touch /var/shared/x' 2>&1 | grep -o "Read-only file system"
hold a "$A" known
relation a known
"#;
    let out = in_ns("shared", &dir, script);
    assert_eq!(lines(&out), ["Read-only file system", "a in the pin"], "{}", stderr(&out));
    assert!(!tree.join("var/shared/x").exists(), "alice's file is in the tree");
}

/// A caller's new passwd line (their gecos changed, as `chfn` lets a user do)
/// replaces their own account's pin only: however often bob changes it, he
/// holds one pin, and alice's stays (one user cannot crowd the others out).
#[test]
fn row31_a_callers_new_lines_replace_their_own_pin_only() {
    require_root!();
    let tree = known_tree("pin-chfn");
    let dir = test_dir("chfn", &sysroot("known", &tree, "binds = [\"/home\"]"));
    let script = r#"UNDO="usermod -c '$(getent passwd $BOB | cut -d: -f5)' $BOB; $UNDO"
first "$A" known true
alices=$(pins known 0)
for i in 1 2 3 4 5 6; do
    usermod -c "room $i" $BOB
    for _ in $(seq 20); do $B $BIN known true; [ -n "$(pins known | grep -v '\.0$' | xargs -r -n1 sh -c 'nsenter --mount=$0/$1 cat /etc/passwd' $PINS | grep "room $i")" ] && break; done
done
echo "bob's pins: $(pins known | grep -vc '\.0$')"
echo "bob's lines there: $(nsenter --mount=$PINS/$(pins known | grep -v '\.0$') grep -c "^$BOB:.*room 6" /etc/passwd)"
[ "$(pins known 0)" = "$alices" ] && echo "alice's pin stays"
"#;
    let out = in_ns("shared", &dir, script);
    assert_eq!(lines(&out), ["bob's pins: 1", "bob's lines there: 1", "alice's pin stays"], "{}", stderr(&out));
}

#[test]
fn callers_are_themselves_on_the_fast_path_and_see_nothing_of_each_other() {
    require_root!();
    let tree = known_tree("pin-who");
    let dir = test_dir("who", &sysroot("known", &tree, "binds = [\"/home\"]"));
    // bob and nobody are not in the tree: their own lines are shown in a pin
    // of their account each, which two of bob's entries at once share. alice
    // is, with all her groups: she only joins the pin of the callers the
    // tree knows, so two of her entries at once share its namespace.
    let script = r#"N="setpriv --reuid=nobody --regid=nogroup --init-groups --"
who='echo $(whoami; id -gn; id -Gn)'
for U in "$A" "$B" "$N"; do $U $BIN known sh -c "$who"; done
$N sh -c "$who"
first "$A" known true
hold b1 "$B" known
hold b2 "$B" known
hold a1 "$A" known
hold a2 "$A" known
[ "$(cat $D/b1.ns)" = "$(cat $D/b2.ns)" ] && echo "bob's entries share one namespace"
relation b1 known
[ "$(cat $D/a1.ns)" = "$(cat $D/a2.ns)" ] && echo "alice's entries share one namespace"
relation a1 known
echo "bob's lines seen by bob: $($B $BIN known cat /etc/passwd /etc/group | grep -c "^$BOB:")"
echo "by alice: $($A $BIN known cat /etc/passwd /etc/group | grep -c "$BOB" || true)"
echo "by nobody: $($N $BIN known cat /etc/passwd /etc/group | grep -c "$BOB" || true)"
echo "in the pin: $(nsenter --mount=$PINS/$(pins known 0) cat /etc/passwd /etc/group | grep -c "$BOB\|nobody" || true)"
"#;
    let out = in_ns("shared", &dir, script);
    let got = lines(&out);
    let on_host = |user| stdout(&run(as_user(user, "sh").args(["-c", "echo $(whoami; id -gn; id -Gn)"])));
    let host = [on_host(ALICE), on_host(BOB), got[3].clone()];
    assert_eq!(got[..3], host.map(|l| l.trim_end().to_string()), "inside, then on the host: {got:?}\n{}", stderr(&out));
    assert!(got[0].starts_with(&format!("{ALICE} {ALICE} ")) && got[2].starts_with("nobody "), "{got:?}");
    assert_eq!(
        got[4..],
        [
            "bob's entries share one namespace",
            "b1 in an account's pin",
            "alice's entries share one namespace",
            "a1 in the pin",
            "bob's lines seen by bob: 2",
            "by alice: 0",
            "by nobody: 0",
            "in the pin: 0",
        ],
        "{}",
        stderr(&out)
    );
}

#[test]
fn what_only_the_caller_sees_is_added_to_the_pinned_view_without_hiding_any_of_it_or_writing_the_tree() {
    require_root!();
    // Rows: an installed tree (with /run) and a hand-made one without /run.
    let with_run = known_tree("pin-add");
    let without_run = known_tree("pin-add-norun");
    fs::remove_dir(without_run.0.join("run")).expect("rmdir run");
    let dir = test_dir(
        "add",
        &(sysroot("withrun", &with_run, "binds = [\"/home\"]")
            + &sysroot("norun", &without_run, "binds = [\"/home\"]")),
    );
    let before = [&with_run, &without_run].map(|t| test_support::tree_listing(t));
    // alice builds each pin; bob and nobody, whom the trees do not know, get
    // their passwd and group lines added to the view: everything the pin
    // shows stays (the host's files), and nothing is written in the tree.
    let script = r#"N="setpriv --reuid=nobody --regid=nogroup --init-groups --"
for s in withrun norun; do
    first "$A" $s true
    count $s
    for u in $BOB nobody; do
        if [ $u = nobody ]; then U=$N; else U=$B; fi
        echo "$s $u host: $($U sh -c "$FACTS" $u $D)"
        echo "$s $u inside: $($U $BIN $s sh -c "$FACTS; grep -c ^$u: /etc/passwd" $u $D 2>/dev/null | tr '\n' ' ')"
    done
done
"#;
    let out = in_ns("shared", &dir, script);
    let got = lines(&out);
    assert_eq!(got.len(), 10, "{got:?}\n{}", stderr(&out));
    let mut wrong = Vec::new();
    for sysroot in got.chunks(5) {
        assert!(sysroot[0].ends_with(": 1 pin, 0 marker"), "{got:?}");
        for pair in sysroot[1..].chunks(2) {
            let host = pair[0].split_once(" host: ").expect("host facts").1;
            let inside = pair[1].split_once(" inside: ").expect("facts inside").1;
            if inside != format!("{host} 1 ") {
                wrong.push(format!("{}\n{}", pair[0], pair[1]));
            }
        }
    }
    let after = [&with_run, &without_run].map(|t| test_support::tree_listing(t));
    for ((before, after), tree) in before.iter().zip(&after).zip([&with_run, &without_run]) {
        if before != after {
            wrong.push(format!("{} was written:\n{}", tree.display(), test_support::diff_lines(before, after)));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn row31_a_tree_changed_in_place_never_leaves_a_pin_showing_less_than_the_whole_view() {
    require_root!();
    let tree = known_tree("pin-inplace");
    let dir = test_dir("inplace", &sysroot("known", &tree, "binds = [\"/home\"]"));
    // Rows: files under the pin's binds replaced in the tree as dpkg or an
    // editor replaces them (a new file renamed over the old), and a
    // directory a bind lands on made again. The kernel drops a mount whose
    // mount point is replaced, in every namespace: in the pin too.
    let script = format!(
        r#"first "$A" known sh -c "$FACTS" $ALICE $D
for f in hosts resolv.conf; do echo "the tree's new" > {t}/etc/$f.new; mv {t}/etc/$f.new {t}/etc/$f; done
$A $BIN known sh -c "$FACTS" $ALICE $D
mv {t}/home {t}/home.old && mkdir -m 755 {t}/home && mv {t}/home.old/* {t}/home/ && rmdir {t}/home.old
$A $BIN known sh -c "$FACTS" $ALICE $D
$A sh -c "$FACTS" $ALICE $D
"#,
        t = tree.display()
    );
    let out = in_ns("shared", &dir, &script);
    let got = lines(&out);
    assert_eq!(got.len(), 4, "{got:?}\n{}", stderr(&out));
    let host = got[3].clone();
    assert_eq!(
        got[..3],
        [host.clone(), host.clone(), host],
        "before, after the files, after /home were replaced in the tree"
    );
}

#[test]
fn row31_a_pin_whose_passwd_is_not_the_one_an_entry_shows_is_never_used() {
    require_root!();
    let tree = known_tree("pin-mismatch");
    let dir = test_dir("mismatch", &sysroot("known", &tree, "binds = [\"/home\"]"));
    // bob is not in the tree: his lines are in a pin of his account's,
    // found by a hash of them. Root changes the file that pin shows (as a
    // name collision would give another caller's): bob's entries see it is
    // not what they would show, leave it, and take the per-entry path.
    let script = r#"for _ in $(seq 100); do $B $BIN known true; [ -z "$(pins known | grep -v '\.0$')" ] || break; sleep 0.05; done
account=$(pins known | grep -v '\.0$')
echo "bob's pin: $(echo $account | wc -w)"
f=$(nsenter --mount=$PINS/$account cat /proc/self/mountinfo | awk '$5 == "/etc/passwd" { print $4 }')
echo "bob's lines in it: $(grep -c "^$BOB:" $f)"
echo "evil:x:0:0::/:/bin/sh" >> $f
hold b1 "$B" known
relation b1 known
$B $BIN known sh -c 'whoami; grep -c "^evil:" /etc/passwd || true'
"#;
    let out = in_ns("shared", &dir, script);
    assert_eq!(
        lines(&out),
        ["bob's pin: 1", "bob's lines in it: 1", "b1 in a namespace of its own", BOB, "0"],
        "{}",
        stderr(&out)
    );
}
