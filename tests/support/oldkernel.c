/* Runs a program as USER under a seccomp filter that makes the new mount API
 * (open_tree, move_mount, mount_setattr) and openat2 fail with ENOSYS, the
 * way a pre-5.12 kernel answers. Started as root: the filter is installed with
 * CAP_SYS_ADMIN and without no_new_privs, so a setuid program still gains
 * root when exec'd under it.
 *   oldkernel USER PROGRAM [ARGS...]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define DENY(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), \
                 BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS)

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: oldkernel USER PROGRAM [ARGS...]\n"); return 2; }
    struct passwd *pw = getpwnam(argv[1]);
    if (!pw) { fprintf(stderr, "oldkernel: no user %s\n", argv[1]); return 2; }
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        DENY(SYS_open_tree), DENY(SYS_move_mount), DENY(SYS_mount_setattr), DENY(SYS_openat2),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof filter / sizeof filter[0], .filter = filter };
    if (initgroups(pw->pw_name, pw->pw_gid) || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid)) { perror("groups"); return 2; }
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) { perror("seccomp"); return 2; }
    if (syscall(SYS_open_tree, -100, "/", 0) != -1 || errno != ENOSYS) { fprintf(stderr, "oldkernel: filter not in force\n"); return 2; }
    if (setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid)) { perror("setresuid"); return 2; }
    execv(argv[2], argv + 2);
    perror("execv");
    return 127;
}
