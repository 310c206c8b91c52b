/* Tries to take privilege back after imageswitch dropped it; prints
 * "call errno" per attempt (0 = it worked):
 *   privs NODE_PATH
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <sched.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <linux/capability.h>
static void report(const char *what, long rc) { printf("%s %d\n", what, rc == 0 ? 0 : errno); }
int main(int argc, char **argv) {
    report("setuid", setuid(0));
    report("seteuid", seteuid(0));
    report("setresuid", setresuid(0, 0, 0));
    report("setgid", setgid(0));
    report("setgroups", setgroups(0, NULL));
    report("chroot", chroot("."));
    report("unshare-mount", unshare(CLONE_NEWNS));
    report("mount", mount("none", "/tmp", "tmpfs", 0, NULL));
    report("mknod", mknod(argv[1], S_IFCHR | 0666, makedev(1, 5)));
    report("ambient-raise", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_SYS_ADMIN, 0, 0));
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2] = {{~0u, ~0u, ~0u}, {~0u, ~0u, ~0u}};
    report("capset", syscall(SYS_capset, &h, d));
    return 0;
}
