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

pub(super) fn services(ctx: &mut Ctx<'_>) -> Result<Vec<String>> {
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
