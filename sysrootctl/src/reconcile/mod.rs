//! Bringing one tree (and the host's links to it) to the declared state.
//!
//! Every step runs in two modes: `plan` reads the live tree and says what it
//! would change; `apply` changes a new generation (never the live one). The same
//! code decides both, so `plan` cannot promise something `apply` does not do.
//! Steps are idempotent: on an unchanged declaration each returns no change.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::accounts;
use crate::decl::{Build, Declared};
use crate::runner;
use crate::store::Record;
use crate::util::{self, Phase, Verbosity, in_tree};

pub mod bind_targets;

/// Host-side places, from the command line (defaults are the production ones).
#[derive(Debug, Clone)]
pub struct Host {
    pub imageswitch: PathBuf,
    pub alias_dir: PathBuf,
    pub applications_dir: PathBuf,
}

pub struct Ctx<'a> {
    pub decl: &'a Declared,
    pub build: &'a Build,
    pub tree: PathBuf,
    /// false: only say what would change.
    pub apply: bool,
    pub verbosity: Verbosity,
    pub host: &'a Host,
    /// The record of the generation the tree was copied from.
    pub prev: Record,
    /// Filled in for the generation being built.
    pub record: Record,
    /// Things worth saying that are not changes (extra packages).
    pub notes: Vec<String>,
}

impl Ctx<'_> {
    fn name(&self) -> &str {
        &self.decl.sysroot.name
    }

    fn linux32(&self) -> bool {
        self.decl.sysroot.personality == imageswitch::config::Personality::Linux32
    }

    fn run_in(&self, argv: &[&str]) -> Result<String> {
        runner::run_in(&self.tree, self.linux32(), argv, self.verbosity)
    }
}

/// All tree steps, in the order apply runs them.
pub fn tree_steps(ctx: &mut Ctx<'_>) -> Result<Vec<String>> {
    let mut changes = Vec::new();
    changes.extend(leftovers(ctx)?);
    changes.extend(packages(ctx)?);
    changes.extend(services(ctx)?);
    changes.extend(users(ctx)?);
    changes.extend(overlays(ctx)?);
    changes.extend(tree_links(ctx)?);
    changes.extend(bind_destinations(ctx)?);
    Ok(changes)
}

/// What an interrupted `shell` or `apply` left in the tree it worked on.
fn leftovers(ctx: &mut Ctx<'_>) -> Result<Vec<String>> {
    if !runner::services_left_blocked(&ctx.tree)? {
        return Ok(Vec::new());
    }
    if ctx.apply {
        runner::unblock_services(&ctx.tree)?;
    }
    Ok(vec![
        "remove /usr/sbin/policy-rc.d (left by an interrupted sysrootctl; it blocks every service start)".to_string(),
    ])
}

fn bind_destinations(ctx: &mut Ctx<'_>) -> Result<Vec<String>> {
    let changes = bind_targets::diff(&bind_targets::observe(&ctx.tree, &ctx.decl.binds));
    if ctx.apply {
        bind_targets::act(&ctx.tree, &changes)?;
    }
    Ok(changes.iter().map(ToString::to_string).collect())
}

// ---------------------------------------------------------------- packages

#[derive(Debug)]
struct Installed {
    arch: String,
    priority: String,
    essential: bool,
}

/// dpkg's view: `None` when the tree has no dpkg database.
fn dpkg_installed(tree: &Path) -> Result<Option<BTreeMap<String, Installed>>> {
    let status = in_tree(tree, Path::new("/var/lib/dpkg/status"), true)?;
    let Ok(text) = fs::read_to_string(&status) else { return Ok(None) };
    let mut out = BTreeMap::new();
    for stanza in text.split("\n\n") {
        let field = |key: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')).map(|v| v.trim().to_string()))
        };
        let (Some(name), Some(state)) = (field("Package"), field("Status")) else { continue };
        if state != "install ok installed" {
            continue;
        }
        out.insert(
            name,
            Installed {
                arch: field("Architecture").unwrap_or_default(),
                priority: field("Priority").unwrap_or_default(),
                essential: field("Essential").is_some_and(|e| e == "yes"),
            },
        );
    }
    Ok(Some(out))
}

/// Names of the packages dpkg has installed (empty for other trees): the
/// baseline of a tree sysrootctl did not build itself.
pub fn installed_packages(tree: &Path) -> Vec<String> {
    dpkg_installed(tree).ok().flatten().map(|p| p.into_keys().collect()).unwrap_or_default()
}

/// Packages apt installed as dependencies.
fn apt_auto(tree: &Path) -> BTreeSet<String> {
    let path = in_tree(tree, Path::new("/var/lib/apt/extended_states"), true).unwrap_or_default();
    let text = fs::read_to_string(path).unwrap_or_default();
    text.split("\n\n")
        .filter(|s| s.lines().any(|l| l.trim() == "Auto-Installed: 1"))
        .filter_map(|s| s.lines().find_map(|l| l.strip_prefix("Package:").map(|v| v.trim().to_string())))
        .collect()
}

fn rpm_installed(tree: &Path) -> Result<Option<BTreeSet<String>>> {
    let db = crate::backend::rpm_dbpath(tree);
    if !in_tree(tree, Path::new(db), true).is_ok_and(|p| p.is_dir()) {
        return Ok(None);
    }
    let mut cmd = crate::namespace::tool("rpm");
    cmd.arg("--root").arg(tree).arg("--dbpath").arg(db).args(["-qa", "--qf", "%{NAME}\\n"]);
    let out = util::run(&mut cmd, Verbosity(1))?;
    Ok(Some(out.lines().map(str::to_string).collect()))
}

fn is_installed(installed: &BTreeMap<String, Installed>, want: &str) -> bool {
    match want.split_once(':') {
        Some((name, arch)) => installed.get(name).is_some_and(|p| p.arch == arch),
        None => installed.contains_key(want),
    }
}

fn packages(ctx: &mut Ctx<'_>) -> Result<Vec<String>> {
    let declared = &ctx.build.packages;
    if let Some(installed) = dpkg_installed(&ctx.tree)? {
        // A fresh tree: what the bootstrap brought is the baseline, not an extra.
        ctx.record.baseline = if ctx.prev.baseline.is_empty() && ctx.prev.generation == 0 {
            installed.keys().cloned().collect()
        } else {
            ctx.prev.baseline.clone()
        };
        let auto = apt_auto(&ctx.tree);
        let base: BTreeSet<&str> = declared.iter().map(|p| p.split(':').next().unwrap_or(p)).collect();
        let extras: Vec<&str> = installed
            .iter()
            .filter(|(n, p)| {
                !p.essential
                    && !matches!(p.priority.as_str(), "required" | "important")
                    && !auto.contains(*n)
                    && !base.contains(n.as_str())
                    && !ctx.record.baseline.contains(n)
            })
            .map(|(n, _)| n.as_str())
            .collect();
        if !extras.is_empty() {
            ctx.notes.push(format!("installed but not declared (left alone): {}", extras.join(" ")));
        }
        let missing: Vec<&str> = declared.iter().filter(|p| !is_installed(&installed, p)).map(String::as_str).collect();
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        let change = format!("install packages: {}", missing.join(" "));
        if !ctx.apply {
            return Ok(vec![change]);
        }
        let phase = Phase::start(ctx.name(), &change, ctx.verbosity);
        runner::with_services_blocked(&ctx.tree, || {
            ctx.run_in(&["apt-get", "-q", "update"])?;
            let mut argv = vec![
                "apt-get",
                "-q",
                "-y",
                "--no-install-recommends",
                "-o",
                "Dpkg::Options::=--force-confold",
                "install",
            ];
            argv.extend(&missing);
            ctx.run_in(&argv)?;
            ctx.run_in(&["apt-get", "clean"])
        })?;
        phase.done();
        let now = dpkg_installed(&ctx.tree)?.unwrap_or_default();
        if let Some(p) = missing.iter().find(|p| !is_installed(&now, p)) {
            bail!("package {p} is still not installed after apt-get install");
        }
        return Ok(vec![change]);
    }
    if let Some(installed) = rpm_installed(&ctx.tree)? {
        let missing: Vec<&str> = declared.iter().filter(|p| !installed.contains(*p)).map(String::as_str).collect();
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        let change = format!("install packages: {}", missing.join(" "));
        if !ctx.apply {
            return Ok(vec![change]);
        }
        let phase = Phase::start(ctx.name(), &change, ctx.verbosity);
        crate::backend::dnf_install(ctx.build, &ctx.tree, &missing, ctx.verbosity)?;
        phase.done();
        return Ok(vec![change]);
    }
    if declared.is_empty() {
        Ok(Vec::new())
    } else {
        bail!("packages are declared but the tree has neither a dpkg nor an rpm database")
    }
}

// ---------------------------------------------------------------- services

fn unit_of(tree: &Path, service: &str) -> Option<String> {
    let unit = if service.contains('.') { service.to_string() } else { format!("{service}.service") };
    ["/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"]
        .iter()
        .any(|d| in_tree(tree, &Path::new(d).join(&unit), true).is_ok_and(|p| p.exists()))
        .then_some(unit)
}

fn sysv_script(tree: &Path, service: &str) -> bool {
    in_tree(tree, &Path::new("/etc/init.d").join(service), true).is_ok_and(|p| p.is_file())
}

fn glob_exists(dir: &Path, matches: impl Fn(&str) -> bool) -> bool {
    fs::read_dir(dir).map(|e| e.flatten().any(|e| matches(&e.file_name().to_string_lossy()))).unwrap_or(false)
}

fn systemd_enabled(tree: &Path, unit: &str) -> bool {
    let Ok(etc) = in_tree(tree, Path::new("/etc/systemd/system"), true) else { return false };
    fs::read_dir(etc)
        .map(|entries| {
            entries.flatten().any(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                (n.ends_with(".wants") || n.ends_with(".requires")) && fs::symlink_metadata(e.path().join(unit)).is_ok()
            })
        })
        .unwrap_or(false)
}

fn sysv_enabled(tree: &Path, service: &str) -> bool {
    (2..=5).any(|level| {
        in_tree(tree, Path::new(&format!("/etc/rc{level}.d")), true)
            .is_ok_and(|dir| glob_exists(&dir, |n| n.starts_with('S') && n.get(3..) == Some(service)))
    })
}

/// (enabled everywhere it can be, enabled anywhere)
fn service_state(tree: &Path, service: &str) -> Option<(bool, bool)> {
    let unit = unit_of(tree, service);
    let sysv = sysv_script(tree, service);
    if unit.is_none() && !sysv {
        return None;
    }
    let on_systemd = unit.as_deref().map(|u| systemd_enabled(tree, u));
    let on_sysv = sysv.then(|| sysv_enabled(tree, service));
    let all = on_systemd.unwrap_or(true) && on_sysv.unwrap_or(true);
    let any = on_systemd.unwrap_or(false) || on_sysv.unwrap_or(false);
    Some((all, any))
}

fn set_service(ctx: &Ctx<'_>, service: &str, enable: bool) -> Result<()> {
    let verb = if enable { "enable" } else { "disable" };
    if let Some(unit) = unit_of(&ctx.tree, service) {
        // `--root` edits the unit links offline: nothing is ever started.
        let mut cmd = crate::namespace::tool("systemctl");
        cmd.arg(format!("--root={}", ctx.tree.display())).arg("--quiet").arg(verb).arg(&unit);
        if which("systemctl") {
            util::run(&mut cmd, ctx.verbosity)?;
        } else {
            ctx.run_in(&["deb-systemd-helper", verb, &unit])?;
        }
    }
    if sysv_script(&ctx.tree, service) {
        runner::with_services_blocked(&ctx.tree, || {
            if enable {
                ctx.run_in(&["update-rc.d", service, "defaults"])?;
            }
            ctx.run_in(&["update-rc.d", service, verb])
        })?;
    }
    Ok(())
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file())).unwrap_or(false)
}

fn services(ctx: &mut Ctx<'_>) -> Result<Vec<String>> {
    let mut changes = Vec::new();
    let wants: Vec<(String, bool)> = ctx
        .build
        .enable
        .iter()
        .map(|s| (s.clone(), true))
        .chain(ctx.build.disable.iter().map(|s| (s.clone(), false)))
        .collect();
    for (service, enable) in wants {
        let state = service_state(&ctx.tree, &service);
        let needed = match state {
            Some((all, any)) => {
                if enable {
                    !all
                } else {
                    any
                }
            }
            // In a plan the package providing it may be about to be installed.
            None if !ctx.apply => enable,
            None if enable => bail!("service {service}: no systemd unit or /etc/init.d script in the tree"),
            None => false,
        };
        if !needed {
            continue;
        }
        let change = format!("{} service {service} (not started)", if enable { "enable" } else { "disable" });
        if ctx.apply {
            set_service(ctx, &service, enable)?;
            match service_state(&ctx.tree, &service) {
                Some((true, _)) if enable => {}
                Some((_, false)) if !enable => {}
                _ => {
                    bail!("service {service}: still not {} after {change}", if enable { "enabled" } else { "disabled" })
                }
            }
        }
        changes.push(change);
    }
    Ok(changes)
}

// ---------------------------------------------------------------- users

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

fn users(ctx: &mut Ctx<'_>) -> Result<Vec<String>> {
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

// ---------------------------------------------------------------- overlays

/// What a file (content and mode) or a link (target) was, to tell drift in the
/// tree from a change in the overlay. FNV-1a: stable, and no need to resist
/// forgery (both sides are root's).
fn fingerprint(path: &Path, mode: Option<u32>) -> String {
    let meta = fs::symlink_metadata(path).ok();
    let bytes = match &meta {
        Some(m) if m.file_type().is_symlink() => {
            fs::read_link(path).map(|t| t.into_os_string().into_encoded_bytes()).unwrap_or_default()
        }
        Some(_) => fs::read(path).unwrap_or_default(),
        None => return String::new(),
    };
    let mode = match &meta {
        Some(m) if m.file_type().is_symlink() => 0,
        Some(m) => mode.unwrap_or(m.mode() & 0o7777),
        None => 0,
    };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes.iter().chain(mode.to_le_bytes().iter()) {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The source's mode without group/other write: imageswitch refuses trees with
/// writable critical entries, and nothing in a tree should be writable by users.
fn overlay_mode(meta: &fs::Metadata) -> u32 {
    meta.mode() & 0o7755
}

fn overlays(ctx: &mut Ctx<'_>) -> Result<Vec<String>> {
    let mut changes = Vec::new();
    let mut written = Vec::new();
    for overlay in &ctx.build.files {
        let meta =
            fs::symlink_metadata(&overlay.src).with_context(|| format!("overlay source {}", overlay.src.display()))?;
        let mut stack = vec![(overlay.src.clone(), overlay.dst.clone(), meta)];
        while let Some((src, dst, meta)) = stack.pop() {
            let target = in_tree(&ctx.tree, &dst, false)?;
            let shown = dst.display().to_string();
            if meta.is_dir() {
                let existing = fs::symlink_metadata(&target).ok();
                if !existing.as_ref().is_some_and(|m| m.is_dir())
                    && in_tree(&ctx.tree, &dst, true).map(|p| !p.is_dir()).unwrap_or(true)
                {
                    changes.push(format!("create directory {shown}"));
                    if ctx.apply {
                        fs::DirBuilder::new().recursive(true).mode(overlay_mode(&meta)).create(&target)?;
                    }
                }
                let mut entries: Vec<_> = fs::read_dir(&src)?.flatten().collect();
                entries.sort_by_key(|e| std::cmp::Reverse(e.file_name()));
                for e in entries {
                    stack.push((e.path(), dst.join(e.file_name()), e.metadata()?));
                }
                continue;
            }
            written.push(shown.clone());
            let want = fingerprint(&src, Some(overlay_mode(&meta)));
            ctx.record.file_sums.insert(shown.clone(), want.clone());
            let current = fs::symlink_metadata(&target).ok();
            let same = if meta.file_type().is_symlink() {
                current.as_ref().is_some_and(|m| m.file_type().is_symlink())
                    && fs::read_link(&target).ok() == fs::read_link(&src).ok()
            } else {
                current
                    .as_ref()
                    .is_some_and(|m| m.is_file() && m.mode() & 0o7777 == overlay_mode(&meta) && m.uid() == 0)
                    && fs::read(&target).ok() == Some(fs::read(&src)?)
            };
            if same {
                continue;
            }
            // Ours before: did the tree drift from what we wrote, or did the overlay change?
            let change = match ctx.prev.file_sums.get(&shown) {
                None => format!("write {shown}"),
                Some(sum) if *sum == fingerprint(&target, None) => format!("update {shown} (the overlay changed)"),
                Some(_) => format!("restore {shown} (changed in the tree)"),
            };
            changes.push(change);
            if !ctx.apply {
                continue;
            }
            if let Some(parent) = target.parent() {
                fs::DirBuilder::new().recursive(true).mode(0o755).create(parent)?;
            }
            if current.as_ref().is_some_and(|m| m.is_dir()) {
                bail!("overlay {}: {shown} is a directory in the tree", src.display());
            }
            if meta.file_type().is_symlink() {
                util::symlink_atomic(&fs::read_link(&src)?, &target)?;
            } else {
                util::write_atomic(&target, &fs::read(&src)?, overlay_mode(&meta))?;
                chown(&target, Some(0), Some(0))?;
                fs::set_permissions(&target, fs::Permissions::from_mode(overlay_mode(&meta)))?;
            }
        }
    }
    ctx.record.files = written;
    Ok(changes)
}

// ---------------------------------------------------------------- links

/// Makes `dir` hold one symlink per name, pointing where `target(name)` says;
/// foreign files are left alone; with `sweep` (a directory only this sysroot
/// uses), other links we made are removed as stale.
fn sync_links(
    dir: &Path,
    shown: &str,
    names: &[String],
    target: &dyn Fn(&str) -> PathBuf,
    ours: &dyn Fn(&Path) -> bool,
    sweep: bool,
    apply: bool,
) -> Result<Vec<String>> {
    let mut changes = Vec::new();
    if !dir.is_dir() {
        changes.push(format!("create {shown}"));
        if apply {
            fs::DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
        }
    }
    let mut added = 0;
    for name in names {
        let link = dir.join(name);
        let want = target(name);
        match fs::symlink_metadata(&link) {
            Ok(m) if m.file_type().is_symlink() && fs::read_link(&link)? == want => continue,
            Ok(m) if m.file_type().is_symlink() && ours(&fs::read_link(&link)?) => {}
            Ok(_) => bail!(
                "refusing to replace {}: it is not a link sysrootctl made (want a link to {})",
                link.display(),
                want.display()
            ),
            Err(_) => {}
        }
        added += 1;
        if apply {
            util::symlink_atomic(&want, &link)?;
        }
    }
    if added > 0 {
        changes.push(format!("link {added} entr{} in {shown}", if added == 1 { "y" } else { "ies" }));
    }
    let mut stale = Vec::new();
    if let Ok(entries) = fs::read_dir(dir).map(|e| e.filter(|_| sweep)) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if names.contains(&name) {
                continue;
            }
            if fs::read_link(e.path()).is_ok_and(|t| ours(&t)) {
                stale.push(name);
                if apply {
                    fs::remove_file(e.path())?;
                }
            }
        }
    }
    if !stale.is_empty() {
        stale.sort();
        changes.push(format!("remove stale links in {shown}: {}", stale.join(" ")));
    }
    Ok(changes)
}

/// Inside the tree: `BIN_DIR/NAME -> /bin/NAME`, so `#!/bin5/sh` works there too.
pub fn tree_links(ctx: &mut Ctx<'_>) -> Result<Vec<String>> {
    let Some(bin_dir) = ctx.decl.sysroot.bin_dir.clone() else { return Ok(Vec::new()) };
    let names = util::tree_bin_names(&ctx.tree)?;
    let dir = in_tree(&ctx.tree, &bin_dir, true)?;
    let shown = format!("{} (in the tree)", bin_dir.display());
    sync_links(&dir, &shown, &names, &|n| Path::new("/bin").join(n), &|t| t.starts_with("/bin/"), true, ctx.apply)
}

/// Whether a host link is one sysrootctl made: it points at imageswitch, here
/// or where it was installed before (moved from `/usr/local/sbin` to the
/// package's `/usr/sbin`, say), so such links are re-pointed, never refused.
fn points_at_imageswitch(target: &Path, exe: &Path) -> bool {
    target == exe || (target.is_absolute() && target.file_name() == Some(std::ffi::OsStr::new("imageswitch")))
}

/// On the host: aliases and `BIN_DIR/NAME` -> imageswitch, and the launcher.
pub fn host_links(ctx: &Ctx<'_>) -> Result<Vec<String>> {
    let sysroot = &ctx.decl.sysroot;
    let exe = ctx.host.imageswitch.clone();
    let is_exe = |t: &Path| points_at_imageswitch(t, &exe);
    let mut changes = Vec::new();
    if !sysroot.aliases.is_empty() {
        let shown = ctx.host.alias_dir.display().to_string();
        // Shared by every sysroot: dropped aliases go by their record (stale_aliases).
        changes.extend(sync_links(
            &ctx.host.alias_dir,
            &shown,
            &sysroot.aliases,
            &|_| exe.clone(),
            &is_exe,
            false,
            ctx.apply,
        )?);
    }
    if let Some(bin_dir) = &sysroot.bin_dir {
        let names = util::tree_bin_names(&ctx.tree)?;
        let shown = format!("{} (on the host)", bin_dir.display());
        changes.extend(sync_links(bin_dir, &shown, &names, &|_| exe.clone(), &is_exe, true, ctx.apply)?);
    }
    changes.extend(stale_aliases(ctx)?);
    let desktop = ctx.host.applications_dir.join(format!("sysroot-{}.desktop", sysroot.name));
    let text = desktop_entry(&sysroot.name, &exe);
    if fs::read_to_string(&desktop).ok().as_deref() != Some(text.as_str()) {
        changes.push(format!("write launcher {}", desktop.display()));
        if ctx.apply {
            fs::DirBuilder::new().recursive(true).mode(0o755).create(&ctx.host.applications_dir)?;
            util::write_atomic(&desktop, text.as_bytes(), 0o644)?;
        }
    }
    Ok(changes)
}

/// Alias links made for names no longer declared: the links made are listed in
/// `STORE/NAME.aliases` (one path a line), so a dropped alias is removed when it
/// still points at imageswitch, and nothing else ever is.
fn stale_aliases(ctx: &Ctx<'_>) -> Result<Vec<String>> {
    let sysroot = &ctx.decl.sysroot;
    let list = ctx.build.store.join(format!("{}.aliases", sysroot.name));
    let current: Vec<PathBuf> = sysroot.aliases.iter().map(|a| ctx.host.alias_dir.join(a)).collect();
    let previous: Vec<PathBuf> = fs::read_to_string(&list).unwrap_or_default().lines().map(PathBuf::from).collect();
    let mut changes = Vec::new();
    for old in previous.iter().filter(|p| !current.contains(p)) {
        if fs::read_link(old).is_ok_and(|t| points_at_imageswitch(&t, &ctx.host.imageswitch)) {
            changes.push(format!("remove alias link {} (no longer declared)", old.display()));
            if ctx.apply {
                fs::remove_file(old)?;
            }
        }
    }
    if ctx.apply && previous != current {
        let text: String = current.iter().map(|p| format!("{}\n", p.display())).collect();
        fs::DirBuilder::new().recursive(true).mode(0o755).create(&ctx.build.store)?;
        util::write_atomic(&list, text.as_bytes(), 0o644)?;
    }
    Ok(changes)
}

/// A launcher that opens a terminal with the user's shell in the sysroot.
pub fn desktop_entry(name: &str, imageswitch: &Path) -> String {
    format!(
        "[Desktop Entry]\nType=Application\nName=Sysroot {name}\nComment=Shell inside the {name} sysroot\nExec={} {name}\nIcon=utilities-terminal\nTerminal=true\nCategories=System;\n",
        imageswitch.display()
    )
}

/// Checks the new generation before it is published.
pub fn verify(ctx: &Ctx<'_>) -> Result<()> {
    let sh = in_tree(&ctx.tree, Path::new("/bin/sh"), true)?;
    if sh.exists() {
        ctx.run_in(&["/bin/sh", "-c", ":"]).context("the new generation cannot run /bin/sh")?;
    }
    for secret in ["/etc/shadow", "/etc/gshadow"] {
        if let Ok(m) = fs::metadata(in_tree(&ctx.tree, Path::new(secret), true)?) {
            if m.mode() & 0o027 != 0 || m.uid() != 0 {
                bail!("{secret} in the new generation is mode {:o} owner {}", m.mode() & 0o7777, m.uid());
            }
        }
    }
    let left = util::processes_rooted_in(&ctx.tree);
    if !left.is_empty() {
        bail!("processes still running in the new generation: {:?}", left.iter().map(|(p, _)| p).collect::<Vec<_>>());
    }
    Ok(())
}

/// Creates a missing directory in a tree (used by bootstraps that leave some out).
pub fn ensure_dir(tree: &Path, inner: &str) -> Result<()> {
    let path = in_tree(tree, Path::new(inner), true)?;
    if !path.exists() {
        fs::DirBuilder::new().recursive(true).mode(0o755).create(&path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_to_imageswitch_anywhere_are_ours() {
        let exe = Path::new("/usr/sbin/imageswitch");
        for (target, ours) in [
            ("/usr/sbin/imageswitch", true),
            ("/usr/local/sbin/imageswitch", true),
            ("/opt/imageswitch/bin/imageswitch", true),
            ("imageswitch", false),
            ("/usr/bin/python3", false),
            ("/usr/sbin/imageswitch.old", false),
        ] {
            assert_eq!(points_at_imageswitch(Path::new(target), exe), ours, "{target}");
        }
    }
}
