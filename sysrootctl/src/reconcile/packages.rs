//! Packages: declared ones installed (apt inside dpkg trees, dnf from the host for rpm trees); extras reported, never removed.
#![forbid(unsafe_code)]

use super::*;

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

pub(super) fn packages(ctx: &mut Ctx<'_>) -> Result<Vec<String>> {
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
