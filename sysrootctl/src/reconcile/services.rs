//! Services enabled or disabled offline (systemctl --root, update-rc.d): nothing is ever started.
#![forbid(unsafe_code)]

use super::*;

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

/// A declared service, whether it is to be enabled, and its state in the
/// tree: (enabled everywhere it can be, enabled anywhere), `None` when the
/// tree has neither a unit nor a script for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Observed {
    pub service: String,
    pub enable: bool,
    pub state: Option<(bool, bool)>,
}

pub(super) fn observe(tree: &Path, build: &crate::decl::Build) -> Vec<Observed> {
    let wants = build.enable.iter().map(|s| (s, true)).chain(build.disable.iter().map(|s| (s, false)));
    wants
        .map(|(service, enable)| Observed { service: service.clone(), enable, state: service_state(tree, service) })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Change {
    pub service: String,
    pub enable: bool,
    /// Not in the tree: in a plan, a package about to be installed may bring
    /// it; in an apply (after the packages) it is an error.
    pub absent: bool,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} service {} (not started)", if self.enable { "enable" } else { "disable" }, self.service)
    }
}

/// Declared vs found. Pure.
pub(super) fn diff(observed: &[Observed]) -> Vec<Change> {
    observed
        .iter()
        .filter_map(|o| {
            let (needed, absent) = match o.state {
                Some((all, any)) => (if o.enable { !all } else { any }, false),
                None => (o.enable, true),
            };
            needed.then(|| Change { service: o.service.clone(), enable: o.enable, absent })
        })
        .collect()
}

fn act(ctx: &Ctx<'_>, changes: &[Change]) -> Result<()> {
    for c in changes {
        if c.absent {
            bail!("service {}: no systemd unit or /etc/init.d script in the tree", c.service);
        }
        set_service(ctx, &c.service, c.enable)?;
        match service_state(&ctx.tree, &c.service) {
            Some((true, _)) if c.enable => {}
            Some((_, false)) if !c.enable => {}
            _ => bail!("service {}: still not {} after {c}", c.service, if c.enable { "enabled" } else { "disabled" }),
        }
    }
    Ok(())
}

pub(super) fn services(ctx: &mut Ctx<'_>) -> Result<Vec<super::Change>> {
    let changes = diff(&observe(&ctx.tree, ctx.build));
    if ctx.apply {
        act(ctx, &changes)?;
    }
    Ok(changes
        .iter()
        .map(|c| {
            let kind = if c.enable { "enable_service" } else { "disable_service" };
            super::Change::new(kind, c.to_string()).names(std::slice::from_ref(&c.service))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_change_only_where_the_tree_differs() {
        let row = |service: &str, enable: bool, state| Observed { service: service.to_string(), enable, state };
        let rows = [
            (row("cron", true, Some((true, true))), None),
            (row("cron", true, Some((false, true))), Some("enable service cron (not started)")),
            (row("cron", true, Some((false, false))), Some("enable service cron (not started)")),
            (row("cron", true, None), Some("enable service cron (not started)")),
            (row("ssh", false, Some((false, false))), None),
            (row("ssh", false, Some((false, true))), Some("disable service ssh (not started)")),
            (row("ssh", false, Some((true, true))), Some("disable service ssh (not started)")),
            (row("ssh", false, None), None),
        ];
        for (observed, want) in rows {
            let got = diff(std::slice::from_ref(&observed));
            assert_eq!(got.first().map(ToString::to_string).as_deref(), want, "{observed:?}");
            assert_eq!(got.first().is_some_and(|c| c.absent), observed.state.is_none() && want.is_some());
        }
    }
}
