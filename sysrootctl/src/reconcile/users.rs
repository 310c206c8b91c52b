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

fn read_db(tree: &Path, file: &str, width: usize) -> Result<(PathBuf, Vec<accounts::Line>)> {
    let path = in_tree(tree, Path::new(file), true)?;
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    Ok((path, accounts::parse(&text, width)))
}

/// Writes a database file if its content changed; shadow files keep 0640 or
/// stricter and their group.
fn write_db(
    ctx: &Ctx<'_>,
    path: &Path,
    lines: &[accounts::Line],
    secret: bool,
    changes: &mut Vec<String>,
    inner: &str,
) -> Result<()> {
    let text = accounts::render(lines);
    let old = fs::read_to_string(path).unwrap_or_default();
    let meta = fs::metadata(path).ok();
    let mode = meta.as_ref().map(|m| m.mode() & 0o7777);
    let wanted_mode = match (secret, mode) {
        (true, Some(m)) if m & 0o027 == 0 => m,
        (true, _) => 0o640,
        (false, Some(m)) => m,
        (false, None) => 0o644,
    };
    if old == text && mode == Some(wanted_mode) {
        return Ok(());
    }
    changes.push(format!("update {inner}"));
    if ctx.apply {
        let gid = meta.as_ref().map(|m| m.gid()).unwrap_or(0);
        util::write_atomic(path, text.as_bytes(), wanted_mode)?;
        chown(path, Some(0), Some(gid))?;
    }
    Ok(())
}

pub(super) fn users(ctx: &mut Ctx<'_>) -> Result<Vec<String>> {
    let sync = &ctx.build.users;
    if !sync.sync {
        return Ok(Vec::new());
    }
    let tree = ctx.tree.clone();
    let (passwd_path, passwd) = read_db(&tree, "/etc/passwd", 7)?;
    let (group_path, group) = read_db(&tree, "/etc/group", 4)?;
    let host_users = accounts::in_range(getent("passwd")?, sync.uid_min, sync.uid_max);
    let host_groups = accounts::in_range(getent("group")?, sync.uid_min, sync.uid_max);
    let (new_passwd, users) = accounts::merge(&accounts::USERS, &passwd, &host_users, &ctx.prev.users)?;
    let (new_group, groups) = accounts::merge(&accounts::GROUPS, &group, &host_groups, &ctx.prev.groups)?;
    let gone = |prev: &[String], now: &[String]| prev.iter().filter(|p| !now.contains(p)).cloned().collect::<Vec<_>>();
    let gone_users = gone(&ctx.prev.users, &users);
    let gone_groups = gone(&ctx.prev.groups, &groups);
    let (shadow_path, shadow) = read_db(&tree, "/etc/shadow", 9)?;
    let (gshadow_path, gshadow) = read_db(&tree, "/etc/gshadow", 4)?;
    let members: BTreeMap<String, String> =
        new_group.iter().map(|l| (l.fields[0].clone(), l.fields[3].clone())).collect();
    let new_shadow = accounts::lock_shadow(&shadow, &users, &gone_users, 9, &|_| String::new());
    let new_gshadow =
        accounts::lock_shadow(&gshadow, &groups, &gone_groups, 4, &|g| members.get(g).cloned().unwrap_or_default());
    let mut changes = Vec::new();
    write_db(ctx, &passwd_path, &new_passwd, false, &mut changes, "/etc/passwd")?;
    write_db(ctx, &group_path, &new_group, false, &mut changes, "/etc/group")?;
    write_db(ctx, &shadow_path, &new_shadow, true, &mut changes, "/etc/shadow")?;
    if gshadow_path.exists() || !groups.is_empty() {
        write_db(ctx, &gshadow_path, &new_gshadow, true, &mut changes, "/etc/gshadow")?;
    }
    for (_, home) in accounts::unbound_homes(&host_users, &ctx.decl.binds) {
        let inner = in_tree(&tree, &home, true)?;
        if !inner.exists() {
            changes.push(format!("create mount point {} (a home outside the bound paths)", home.display()));
            if ctx.apply {
                fs::DirBuilder::new().recursive(true).mode(0o755).create(&inner)?;
            }
        }
    }
    if !changes.is_empty() {
        let added: Vec<&String> = users.iter().filter(|u| !ctx.prev.users.contains(u)).collect();
        let mut summary = format!("merge host accounts ({} users, {} groups", users.len(), groups.len());
        if !added.is_empty() {
            summary.push_str(&format!("; new: {}", added.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")));
        }
        if !gone_users.is_empty() {
            summary.push_str(&format!("; removed: {}", gone_users.join(" ")));
        }
        summary.push(')');
        changes.insert(0, summary);
    }
    ctx.record.users = users;
    ctx.record.groups = groups;
    Ok(changes)
}
