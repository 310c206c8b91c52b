//! `export` / `receive`: a generation built in one store is sent (rsync, as
//! the rollout role does, here without ssh) to another and published there.
//! The cluster test (tests/cluster.sh) does the same across machines.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn busybox(s: &Scratch) {
    pack(&cached_tree("busybox"), &s.path("bb.tar.gz"));
    let build = format!("method = \"tarball\"\nsource = \"{}\"\n", s.path("bb.tar.gz").display());
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
