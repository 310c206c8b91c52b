//! `export` / `receive`: a generation built in one store is sent (rsync, as
//! the rollout role does, here without ssh) to another and published there.
//! The cluster test (tests/cluster.sh) does the same across machines.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

fn busybox(s: &Scratch) {
    busybox_with(s, "");
}

/// `extra` goes into the build table.
fn busybox_with(s: &Scratch, extra: &str) {
    pack(&cached_tree("busybox"), &s.path("bb.tar.gz"));
    let build = format!("method = \"tarball\"\nsource = \"{}\"\n{extra}", s.path("bb.tar.gz").display());
    s.config("bb", "", &build);
}

fn export(s: &Scratch) -> serde_json::Value {
    serde_json::from_str(&s.expect(&["export", "bb", "--json"], 0)).expect("export --json")
}

fn field(v: &serde_json::Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}

fn rsync(args: &[&str]) {
    let status = Command::new("rsync").args(args).status().expect("run rsync");
    assert!(status.success(), "rsync {args:?}");
}

/// Returns once a file changed now has a newer ctime than `path`: what
/// happens next is, for the filesystem, after `path` arrived.
fn after_ctime_of(path: &str, probe: &Path) {
    let ctime = |p: &Path| {
        let m = fs::symlink_metadata(p).expect("stat");
        (m.ctime(), m.ctime_nsec())
    };
    let then = ctime(Path::new(path));
    wait_for("a newer ctime", Duration::from_secs(10), || {
        fs::write(probe, "").expect("probe");
        ctime(probe) > then
    });
}

#[test]
fn a_record_that_does_not_describe_the_tree_beside_it_is_never_trusted() {
    let test = "a_record_that_does_not_describe_the_tree_beside_it_is_never_trusted";
    if !root_or_skip(test) || !have_tool(test, "rsync", "rsync") {
        return;
    }
    let head = Scratch::new("stale-head");
    let overlay = format!("files = [{{ src = \"{}\", dst = \"/\" }}]\n", head.path("overlay").display());
    busybox_with(&head, &overlay);
    head.write("overlay/etc/release", "release 1\n");
    head.expect(&["apply"], 0);
    let one = export(&head);
    let node = Scratch::new("stale-node");
    busybox_with(&node, &overlay);
    let dst = export(&node);
    let incoming = format!("{}/", field(&dst, "incoming"));
    let record = field(&dst, "incoming_record");
    let send_tree = |sent: &serde_json::Value, only: &str| {
        let from = format!("{}/{only}", field(sent, "tree"));
        rsync(&["-aHAX", "--numeric-ids", "--delete", "--mkpath", &from, &format!("{incoming}{only}")]);
    };
    // An earlier transfer, complete, whose receive never ran.
    let leftover = || {
        send_tree(&one, "");
        rsync(&["-t", &field(&one, "record"), &record]);
        after_ctime_of(&record, &node.path("probe"));
    };
    // Another size: rsync's quick check skips a file whose size and mtime (to
    // the second) are unchanged.
    head.write("overlay/etc/release", "release two\n");
    head.expect(&["apply"], 0);
    let two = export(&head);
    assert_ne!(field(&one, "id"), field(&two, "id"));

    // The reviewer's case: then an interrupted rsync of the new tree (its /etc
    // arrived, the rest is still the old tree's).
    leftover();
    send_tree(&two, "etc/");
    node.write("store/bb/.incoming.json.AbC123", "{\"id\": \"");
    let out = node.expect(&["receive", "bb"], 1);
    assert!(out.contains("does not describe the tree beside it"), "{out}");
    assert_eq!(node.live("bb"), None, "the mixed tree is not published under the old record's id");
    assert!(!Path::new(&record).exists(), "the stale record is consumed");
    assert!(!node.path("store/bb/.incoming.json.AbC123").exists(), "a cut-off record transfer's file is removed");
    let kept = fs::read_to_string(node.path("store/bb/incoming/etc/release")).expect("the tree stays");
    assert_eq!(kept, "release two\n", "what arrived stays for the next transfer");

    // The whole new tree arrived, its record did not (ssh cut in between).
    leftover();
    send_tree(&two, "");
    let out = node.expect(&["receive", "bb"], 1);
    assert!(out.contains("does not describe the tree beside it"), "{out}");
    assert_eq!(node.live("bb"), None);

    // The new tree, then its own record: published under the new id.
    send_tree(&two, "");
    rsync(&["-t", &field(&two, "record"), &record]);
    let out = node.expect(&["receive", "bb"], 0);
    assert!(out.contains("bb: generation none -> 1"), "{out}");
    let status: serde_json::Value =
        serde_json::from_str(&node.expect(&["status", "bb", "--json"], 0)).expect("status --json");
    assert_eq!(status[0]["id"].as_str(), Some(field(&two, "id").as_str()), "{status}");
    assert_eq!(fs::read_to_string(node.path("store/bb/1/etc/release")).expect("release"), "release two\n");
    node.assert_clean();
}

#[test]
fn receive_publishes_only_a_complete_transfer_and_keeps_the_id() {
    if !root_or_skip("receive_publishes_only_a_complete_transfer_and_keeps_the_id")
        || !have_tool("receive_publishes_only_a_complete_transfer_and_keeps_the_id", "rsync", "rsync")
    {
        return;
    }
    let head = Scratch::new("send-head");
    busybox(&head);
    head.expect(&["apply"], 0);
    let sent = export(&head);
    let id = field(&sent, "id");
    assert_eq!(id.len(), 32, "a generation id: {sent}");
    assert!(head.expect(&["status", "bb"], 0).contains(&format!("id {id}")), "status shows the id");

    let node = Scratch::new("send-node");
    busybox(&node);
    let dst = export(&node);
    assert!(dst["id"].is_null() && dst["tree"].is_null(), "{dst}");

    // Nothing sent, then the tree alone (an interrupted transfer): nothing is published.
    let out = node.expect(&["receive", "bb"], 1);
    assert!(out.contains("nothing received for bb"), "{out}");
    let tree = format!("{}/", field(&sent, "tree"));
    let incoming = format!("{}/", field(&dst, "incoming"));
    rsync(&["-aHAX", "--numeric-ids", "--delete", "--mkpath", &tree, &incoming]);
    node.expect(&["receive", "bb"], 1);
    assert_eq!(node.live("bb"), None, "a tree without its record is never published");

    // The record after the tree: published, with the sender's id.
    rsync(&["-t", &field(&sent, "record"), &field(&dst, "incoming_record")]);
    let out = node.expect(&["receive", "bb"], 0);
    assert!(out.contains("bb: generation none -> 1"), "{out}");
    assert_eq!(node.live("bb"), Some(1));
    assert!(node.path("store/bb/1/bin/busybox").is_file());
    let status: serde_json::Value =
        serde_json::from_str(&node.expect(&["status", "bb", "--json"], 0)).expect("status --json");
    assert_eq!(status[0]["id"].as_str(), Some(id.as_str()), "{status}");
    assert!(!Path::new(&field(&dst, "incoming_record")).exists(), "the record is consumed");

    // The same generation again (after a rollback, say): published, not stored twice.
    rsync(&["-aHAX", "--numeric-ids", "--delete", "--mkpath", &tree, &incoming]);
    rsync(&["-t", &field(&sent, "record"), &field(&dst, "incoming_record")]);
    let out = node.expect(&["receive", "bb"], 0);
    assert!(out.contains("up to date"), "{out}");
    let entries: Vec<String> = node.generations("bb").into_iter().filter(|n| !n.starts_with('.')).collect();
    assert_eq!(entries, ["1", "1.json"], "one generation, the incoming copy removed");

    // A record whose id is not one of ours is refused and consumed.
    node.write("store/bb/incoming.json", "{\"id\": \"../../etc\"}");
    let out = node.expect(&["receive", "bb"], 1);
    assert!(out.contains("no valid generation id"), "{out}");
    assert!(!node.path("store/bb/incoming.json").exists());
    assert_eq!(node.live("bb"), Some(1));
    node.assert_clean();
}

/// Numbers are per machine, ids travel with a generation: a rollback across
/// machines names the generation by its id. The node built one generation
/// of its own first, so the head's generations 1 and 2 are its 2 and 3.
#[test]
fn rollback_names_a_generation_by_its_id_wherever_its_number_differs() {
    let test = "rollback_names_a_generation_by_its_id_wherever_its_number_differs";
    if !root_or_skip(test) || !have_tool(test, "rsync", "rsync") {
        return;
    }
    let head = Scratch::new("byid-head");
    let overlay = format!("files = [{{ src = \"{}\", dst = \"/\" }}]\n", head.path("overlay").display());
    busybox_with(&head, &overlay);
    let node = Scratch::new("byid-node");
    busybox_with(&node, "");
    node.expect(&["apply"], 0);
    let own = field(&export(&node), "id");
    let mut sent = Vec::new();
    for release in ["release 1\n", "release two\n"] {
        head.write("overlay/etc/release", release);
        head.expect(&["apply"], 0);
        let src = export(&head);
        let dst = export(&node);
        let tree = format!("{}/", field(&src, "tree"));
        rsync(&["-aHAX", "--numeric-ids", "--delete", "--mkpath", &tree, &format!("{}/", field(&dst, "incoming"))]);
        rsync(&["-t", &field(&src, "record"), &field(&dst, "incoming_record")]);
        node.expect(&["receive", "bb"], 0);
        sent.push(field(&src, "id"));
    }
    assert_eq!(node.live("bb"), Some(3));
    let listed = export(&node)["generations"].clone();
    let want = serde_json::json!([
        { "generation": 1, "id": own },
        { "generation": 2, "id": sent[0] },
        { "generation": 3, "id": sent[1] },
    ]);
    assert_eq!(listed, want, "export --json lists every generation with its id");

    let out = node.expect(&["rollback", "bb", "--to", &sent[0]], 0);
    assert!(out.contains("rolled back from generation 3 to 2"), "{out}");
    assert_eq!(fs::read_to_string(node.path("roots/bb/etc/release")).unwrap(), "release 1\n");
    node.expect(&["rollback", "bb", "--to", "1"], 0);
    assert_eq!(field(&export(&node), "id"), own, "a number is still this machine's own");
    let unknown = "0123456789abcdef0123456789abcdef";
    let out = node.expect(&["rollback", "bb", "--to", unknown], 1);
    assert!(out.contains(&format!("bb has no generation {unknown} (have: 1 2 3)")), "{out}");
    assert_eq!(node.live("bb"), Some(1));
    node.assert_clean();
}
