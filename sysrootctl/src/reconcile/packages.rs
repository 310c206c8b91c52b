//! Packages: declared ones installed (apt inside dpkg trees, dnf from the host
//! for rpm trees); extras reported, never removed. *observe* reads the tree's
//! package database, whichever it has; the pure *diff* says what is missing
//! and what is extra; *act* runs the tree's package manager.
#![forbid(unsafe_code)]

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Manager {
    Dpkg,
    Rpm,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Installed {
    pub arch: String,
    pub priority: String,
    pub essential: bool,
}

/// A tree's package database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Observed {
    pub manager: Manager,
    pub installed: BTreeMap<String, Installed>,
    /// dpkg trees: what apt installed as a dependency.
    pub auto: BTreeSet<String>,
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

fn rpm_installed(tree: &Path) -> Result<Option<BTreeMap<String, Installed>>> {
    let db = crate::backend::rpm_dbpath(tree);
    if !in_tree(tree, Path::new(db), true).is_ok_and(|p| p.is_dir()) {
        return Ok(None);
    }
    let mut cmd = crate::namespace::tool("rpm");
    cmd.arg("--root").arg(tree).arg("--dbpath").arg(db).args(["-qa", "--qf", "%{NAME}\\n"]);
    let out = util::run(&mut cmd, Verbosity(1))?;
    Ok(Some(out.lines().map(|name| (name.to_string(), Installed::default())).collect()))
}

/// The tree's package database: `None` when it has neither dpkg's nor rpm's.
pub(super) fn observe(tree: &Path) -> Result<Option<Observed>> {
    if let Some(installed) = dpkg_installed(tree)? {
        return Ok(Some(Observed { manager: Manager::Dpkg, installed, auto: apt_auto(tree) }));
    }
    Ok(rpm_installed(tree)?.map(|installed| Observed { manager: Manager::Rpm, installed, auto: BTreeSet::new() }))
}

fn is_installed(installed: &BTreeMap<String, Installed>, want: &str) -> bool {
    match want.split_once(':') {
        Some((name, arch)) => installed.get(name).is_some_and(|p| p.arch == arch),
        None => installed.contains_key(want),
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Diff {
    pub install: Vec<String>,
    /// Installed, not declared, not brought by the bootstrap (`baseline`) or
    /// as a dependency, not essential: reported, never removed (dpkg trees).
    pub extras: Vec<String>,
}

/// Declared vs installed. Pure.
pub(super) fn diff(declared: &[String], o: &Observed, baseline: &[String]) -> Diff {
    let install = declared.iter().filter(|p| !is_installed(&o.installed, p)).cloned().collect();
    if o.manager != Manager::Dpkg {
        return Diff { install, extras: Vec::new() };
    }
    let base: BTreeSet<&str> = declared.iter().map(|p| p.split(':').next().unwrap_or(p)).collect();
    let extras = o
        .installed
        .iter()
        .filter(|(n, p)| {
            !p.essential
                && !matches!(p.priority.as_str(), "required" | "important")
                && !o.auto.contains(*n)
                && !base.contains(n.as_str())
                && !baseline.contains(n)
        })
        .map(|(n, _)| n.clone())
        .collect();
    Diff { install, extras }
}

/// Installs `missing` with the tree's own package manager.
fn act(ctx: &Ctx<'_>, manager: Manager, missing: &[String]) -> Result<()> {
    let missing: Vec<&str> = missing.iter().map(String::as_str).collect();
    match manager {
        Manager::Dpkg => runner::with_services_blocked(&ctx.tree, || {
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
            ctx.run_in(&["apt-get", "clean"]).map(|_| ())
        }),
        Manager::Rpm => crate::backend::dnf_install(ctx.build, &ctx.tree, &missing, ctx.verbosity),
    }
}

pub(super) fn packages(ctx: &mut Ctx<'_>) -> Result<Vec<Change>> {
    let declared = &ctx.build.packages;
    let Some(observed) = observe(&ctx.tree)? else {
        if declared.is_empty() {
            return Ok(Vec::new());
        }
        bail!("packages are declared but the tree has neither a dpkg nor an rpm database")
    };
    if observed.manager == Manager::Dpkg {
        // A fresh tree: what the bootstrap brought is the baseline, not an extra.
        ctx.record.baseline = if ctx.prev.baseline.is_empty() && ctx.prev.generation == 0 {
            observed.installed.keys().cloned().collect()
        } else {
            ctx.prev.baseline.clone()
        };
    }
    let d = diff(declared, &observed, &ctx.record.baseline);
    if !d.extras.is_empty() {
        ctx.notes.push(format!("installed but not declared (left alone): {}", d.extras.join(" ")));
    }
    if d.install.is_empty() {
        return Ok(Vec::new());
    }
    let change = format!("install packages: {}", d.install.join(" "));
    if ctx.apply {
        let phase = Phase::start(ctx.name(), &change, ctx.verbosity);
        act(ctx, observed.manager, &d.install)?;
        phase.done();
        let after = observe(&ctx.tree)?.with_context(|| format!("the package database is gone after {change}"))?;
        if let Some(p) = diff(declared, &after, &[]).install.first() {
            bail!("package {p} is still not installed after {change}");
        }
    }
    Ok(vec![Change::new("install_packages", change).names(&d.install)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(manager: Manager, packages: &[(&str, &str, &str, bool)], auto: &[&str]) -> Observed {
        let installed = packages
            .iter()
            .map(|(n, arch, priority, essential)| {
                (
                    n.to_string(),
                    Installed { arch: arch.to_string(), priority: priority.to_string(), essential: *essential },
                )
            })
            .collect();
        Observed { manager, installed, auto: auto.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn missing_packages_are_installed_and_extras_only_reported() {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let debian = tree(
            Manager::Dpkg,
            &[
                ("bash", "i386", "required", true),
                ("libc6", "i386", "required", false),
                ("cron", "i386", "important", false),
                ("python3", "i386", "optional", false),
                ("libpython3", "i386", "optional", false),
                ("vim", "i386", "optional", false),
                ("fromboot", "i386", "optional", false),
            ],
            &["libpython3"],
        );
        let fedora = tree(Manager::Rpm, &[("bash", "", "", false), ("vim", "", "", false)], &[]);
        // (tree, declared, baseline, install, extras)
        type Row<'a> = (&'a Observed, &'a [&'a str], &'a [&'a str], &'a [&'a str], &'a [&'a str]);
        let rows: &[Row] = &[
            (&debian, &["python3"], &["fromboot"], &[], &["vim"]),
            (&debian, &["python3", "vim"], &["fromboot"], &[], &[]),
            (
                &debian,
                &["python3:i386", "libc6:amd64", "nosuch"],
                &[],
                &["libc6:amd64", "nosuch"],
                &["fromboot", "vim"],
            ),
            (&debian, &[], &[], &[], &["fromboot", "python3", "vim"]),
            (&fedora, &["bash", "tmux"], &[], &["tmux"], &[]),
        ];
        for (observed, declared, baseline, install, extras) in rows {
            let want = Diff { install: strings(install), extras: strings(extras) };
            assert_eq!(diff(&strings(declared), observed, &strings(baseline)), want, "{declared:?}");
        }
    }
}
