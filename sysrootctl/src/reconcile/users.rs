//! Host accounts merged into the tree's passwd and group files; never a password hash.
#![forbid(unsafe_code)]

use super::*;

pub(crate) fn getent(db: &str) -> Result<Vec<accounts::Line>> {
    let out = Command::new("getent").arg(db).output().with_context(|| format!("cannot run getent {db}"))?;
    if !out.status.success() {
        bail!("getent {db} failed ({})", out.status);
    }
    let width = if db == "passwd" { 7 } else { 4 };
    Ok(accounts::parse(&String::from_utf8_lossy(&out.stdout), width))
}

/// One account database in the tree, as found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Db {
    pub path: PathBuf,
    pub text: String,
    /// `None`: the file does not exist.
    pub mode: Option<u32>,
    pub gid: u32,
}

fn read_db(tree: &Path, file: &str) -> Result<Db> {
    let path = in_tree(tree, Path::new(file), true)?;
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let meta = fs::metadata(&path).ok();
    Ok(Db { text, mode: meta.as_ref().map(|m| m.mode() & 0o7777), gid: meta.map_or(0, |m| m.gid()), path })
}

/// The tree's databases, the host's accounts in range, and for each home
/// outside the bound paths whether the tree has its mount point.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Observed {
    pub passwd: Db,
    pub group: Db,
    pub shadow: Db,
    pub gshadow: Db,
    pub host_users: Vec<accounts::Line>,
    pub host_groups: Vec<accounts::Line>,
    pub homes: Vec<(PathBuf, PathBuf, bool)>,
}

pub(super) fn observe(ctx: &Ctx<'_>) -> Result<Observed> {
    let sync = &ctx.build.users;
    let tree = &ctx.tree;
    let host_users = accounts::in_range(getent("passwd")?, sync.uid_min, sync.uid_max);
    let mut homes = Vec::new();
    for (_, home) in accounts::unbound_homes(&host_users, &ctx.decl.binds) {
        let inner = in_tree(tree, &home, true)?;
        let exists = inner.exists();
        homes.push((home, inner, exists));
    }
    Ok(Observed {
        passwd: read_db(tree, "/etc/passwd")?,
        group: read_db(tree, "/etc/group")?,
        shadow: read_db(tree, "/etc/shadow")?,
        gshadow: read_db(tree, "/etc/gshadow")?,
        host_users,
        host_groups: accounts::in_range(getent("group")?, sync.uid_min, sync.uid_max),
        homes,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Change {
    /// A database's new content; shadow files keep 0640 or stricter and their group.
    Write { inner: &'static str, path: PathBuf, text: String, mode: u32, gid: u32 },
    /// A root-owned 0755 directory for a home outside the bound paths.
    MountPoint { home: PathBuf, path: PathBuf },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Write { inner, .. } => write!(f, "update {inner}"),
            Change::MountPoint { home, .. } => {
                write!(f, "create mount point {} (a home outside the bound paths)", home.display())
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Diff {
    pub changes: Vec<Change>,
    /// The merged accounts, recorded so they can leave again.
    pub users: Vec<String>,
    pub groups: Vec<String>,
    /// One line saying what the merge does, when anything changes.
    pub summary: Option<String>,
}

fn write_if_changed(db: &Db, inner: &'static str, lines: &[accounts::Line], secret: bool) -> Option<Change> {
    let text = accounts::render(lines);
    let mode = match (secret, db.mode) {
        (true, Some(m)) if m & 0o027 == 0 => m,
        (true, _) => 0o640,
        (false, Some(m)) => m,
        (false, None) => 0o644,
    };
    (db.text != text || db.mode != Some(mode)).then(|| Change::Write {
        inner,
        path: db.path.clone(),
        text,
        mode,
        gid: db.gid,
    })
}

/// Declared (the host's accounts, those merged before) vs the tree's files. Pure.
pub(super) fn diff(o: &Observed, prev_users: &[String], prev_groups: &[String]) -> Result<Diff> {
    let (passwd, group) = (accounts::parse(&o.passwd.text, 7), accounts::parse(&o.group.text, 4));
    let (new_passwd, users) = accounts::merge(&accounts::USERS, &passwd, &o.host_users, prev_users)?;
    let (new_group, groups) = accounts::merge(&accounts::GROUPS, &group, &o.host_groups, prev_groups)?;
    let gone = |prev: &[String], now: &[String]| prev.iter().filter(|p| !now.contains(p)).cloned().collect::<Vec<_>>();
    let gone_users = gone(prev_users, &users);
    let gone_groups = gone(prev_groups, &groups);
    let members: BTreeMap<String, String> =
        new_group.iter().map(|l| (l.fields[0].clone(), l.fields[3].clone())).collect();
    let new_shadow =
        accounts::lock_shadow(&accounts::parse(&o.shadow.text, 9), &users, &gone_users, 9, &|_| String::new());
    let new_gshadow = accounts::lock_shadow(&accounts::parse(&o.gshadow.text, 4), &groups, &gone_groups, 4, &|g| {
        members.get(g).cloned().unwrap_or_default()
    });
    let mut changes: Vec<Change> = [
        write_if_changed(&o.passwd, "/etc/passwd", &new_passwd, false),
        write_if_changed(&o.group, "/etc/group", &new_group, false),
        write_if_changed(&o.shadow, "/etc/shadow", &new_shadow, true),
    ]
    .into_iter()
    .flatten()
    .collect();
    if o.gshadow.mode.is_some() || !groups.is_empty() {
        changes.extend(write_if_changed(&o.gshadow, "/etc/gshadow", &new_gshadow, true));
    }
    changes.extend(
        o.homes
            .iter()
            .filter(|(_, _, exists)| !exists)
            .map(|(home, path, _)| Change::MountPoint { home: home.clone(), path: path.clone() }),
    );
    let summary = (!changes.is_empty()).then(|| {
        let added: Vec<&str> = users.iter().filter(|u| !prev_users.contains(u)).map(String::as_str).collect();
        let mut summary = format!("merge host accounts ({} users, {} groups", users.len(), groups.len());
        if !added.is_empty() {
            summary.push_str(&format!("; new: {}", added.join(" ")));
        }
        if !gone_users.is_empty() {
            summary.push_str(&format!("; removed: {}", gone_users.join(" ")));
        }
        summary + ")"
    });
    Ok(Diff { changes, users, groups, summary })
}

fn act(changes: &[Change]) -> Result<()> {
    for change in changes {
        match change {
            Change::Write { path, text, mode, gid, .. } => {
                util::write_atomic(path, text.as_bytes(), *mode)?;
                chown(path, Some(0), Some(*gid))?;
            }
            Change::MountPoint { path, .. } => fs::DirBuilder::new().recursive(true).mode(0o755).create(path)?,
        }
    }
    Ok(())
}

pub(super) fn users(ctx: &mut Ctx<'_>) -> Result<Vec<super::Change>> {
    if !ctx.build.users.sync {
        return Ok(Vec::new());
    }
    let d = diff(&observe(ctx)?, &ctx.prev.users, &ctx.prev.groups)?;
    if let Some(diffs) = ctx.diffs.as_mut() {
        for change in &d.changes {
            match change {
                // Password data is never shown, not even the tree's own.
                Change::Write { inner, path, text, .. } => match hidden(inner, &[path]) {
                    Some(hidden) => diffs.push(hidden),
                    None => diffs.push(unified(inner, path, text.as_bytes())?),
                },
                Change::MountPoint { .. } => {}
            }
        }
    }
    if ctx.apply {
        act(&d.changes)?;
    }
    let summary = d.summary.map(|s| super::Change::new("merge_accounts", s).names(&d.users));
    let changes = d.changes.iter().map(|c| match c {
        Change::Write { inner, .. } => {
            super::Change::new("write_file", c.to_string()).path(Path::new(inner)).reason("accounts_merged")
        }
        Change::MountPoint { home, .. } => {
            super::Change::new("create_directory", c.to_string()).path(home).reason("home_mount_point")
        }
    });
    let out = summary.into_iter().chain(changes).collect();
    ctx.record.users = d.users;
    ctx.record.groups = d.groups;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(text: &str, mode: u32) -> Db {
        Db { path: PathBuf::from("/t"), text: text.to_string(), mode: Some(mode), gid: 42 }
    }

    fn tree() -> Observed {
        Observed {
            passwd: db("root:x:0:0:root:/root:/bin/sh\n", 0o644),
            group: db("root:x:0:\n", 0o644),
            shadow: db("root:*:1:0:99999:7:::\n", 0o640),
            gshadow: db("root:*::\n", 0o640),
            ..Observed::default()
        }
    }

    #[test]
    fn host_accounts_are_merged_locked_and_removed_again() {
        let alice = accounts::parse("alice:x:1001:1001::/home/alice:/bin/sh\n", 7);
        let alice_group = accounts::parse("alice:x:1001:\n", 4);
        let merged = {
            let mut o = tree();
            o.host_users = alice.clone();
            o.host_groups = alice_group.clone();
            let d = diff(&o, &[], &[]).unwrap();
            act_in_memory(&mut o, &d.changes);
            Observed { host_users: Vec::new(), host_groups: Vec::new(), ..o }
        };
        let shown =
            |d: &Diff| d.summary.iter().cloned().chain(d.changes.iter().map(ToString::to_string)).collect::<Vec<_>>();
        let alice_s = ["alice".to_string()];
        type Row<'a> = (&'a str, Observed, &'a [String], Vec<&'a str>);
        let rows: Vec<Row> = vec![
            ("nothing to merge", tree(), &[], vec![]),
            (
                "a new host user",
                {
                    let mut o = tree();
                    o.host_users = alice.clone();
                    o.host_groups = alice_group.clone();
                    o
                },
                &[],
                vec![
                    "merge host accounts (1 users, 1 groups; new: alice)",
                    "update /etc/passwd",
                    "update /etc/group",
                    "update /etc/shadow",
                    "update /etc/gshadow",
                ],
            ),
            (
                "merged already",
                {
                    let mut o = merged.clone();
                    o.host_users = alice.clone();
                    o.host_groups = alice_group.clone();
                    o
                },
                &alice_s,
                vec![],
            ),
            (
                "left the host",
                merged.clone(),
                &alice_s,
                vec![
                    "merge host accounts (0 users, 0 groups; removed: alice)",
                    "update /etc/passwd",
                    "update /etc/group",
                    "update /etc/shadow",
                    "update /etc/gshadow",
                ],
            ),
            (
                "a readable shadow",
                {
                    let mut o = tree();
                    o.shadow.mode = Some(0o644);
                    o
                },
                &[],
                vec!["merge host accounts (0 users, 0 groups)", "update /etc/shadow"],
            ),
            (
                "a home outside the binds",
                {
                    let mut o = tree();
                    o.homes = vec![
                        ("/srv/h/a".into(), "/t/srv/h/a".into(), false),
                        ("/srv/h/b".into(), "/t/srv/h/b".into(), true),
                    ];
                    o
                },
                &[],
                vec![
                    "merge host accounts (0 users, 0 groups)",
                    "create mount point /srv/h/a (a home outside the bound paths)",
                ],
            ),
        ];
        for (case, observed, prev, want) in rows {
            let d = diff(&observed, prev, prev).unwrap();
            assert_eq!(shown(&d), want, "{case}");
        }
        let d = diff(
            &{
                let mut o = tree();
                o.host_users = alice;
                o.host_groups = alice_group;
                o
            },
            &[],
            &[],
        )
        .unwrap();
        let shadow = d.changes.iter().find_map(|c| match c {
            Change::Write { inner: "/etc/shadow", text, mode, gid, .. } => Some((text.clone(), *mode, *gid)),
            _ => None,
        });
        assert_eq!(shadow, Some(("root:*:1:0:99999:7:::\nalice:!::0:99999:7:::\n".to_string(), 0o640, 42)));
    }

    /// What `act` would leave in the files, without touching any.
    fn act_in_memory(o: &mut Observed, changes: &[Change]) {
        for c in changes {
            if let Change::Write { inner, text, mode, .. } = c {
                let db = match *inner {
                    "/etc/passwd" => &mut o.passwd,
                    "/etc/group" => &mut o.group,
                    "/etc/shadow" => &mut o.shadow,
                    _ => &mut o.gshadow,
                };
                db.text = text.clone();
                db.mode = Some(*mode);
            }
        }
    }
}
