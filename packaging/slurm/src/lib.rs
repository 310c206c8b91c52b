//! Slurm SPANK plugin for imageswitch: `srun|sbatch|salloc --sysroot=NAME`
//! runs every task of the job inside sysroot NAME as
//! `imageswitch --require-cwd NAME ARGV...`. The installed setuid binary does all checks and
//! all privileged work; the plugin only swaps the task's argv[0] for the
//! unprivileged helper `imageswitch-spank-exec` (src/bin), which builds that
//! command line after slurmstepd has finished preparing the task.
//!
//! plugstack.conf:
//! `required /usr/lib/x86_64-linux-gnu/slurm-wlm/imageswitch_spank.so imageswitch=/usr/sbin/imageswitch helper=/usr/libexec/imageswitch/imageswitch-spank-exec`

// The helper's half of the hand-over is compiled into the helper binary; it
// is here only so `cargo test` runs its tests.
#[cfg(test)]
mod handoff;
mod plan;
mod spank;
