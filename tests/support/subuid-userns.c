/* subuid-userns UID GID PROGRAM ARGS...: as root, runs PROGRAM as UID:GID in
 * a user namespace of UID's own whose map also holds a subordinate range
 * (what newuidmap writes from /etc/subuid: "0 UID 1" and "1 165536 65536"),
 * with real uid 1 and effective uid 0 there; exits with PROGRAM's status
 * (126 when a step fails). For threat row 28 (tests/threats.rs). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int put(pid_t pid, const char *file, const char *text) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc < 4)
        return 126;
    uid_t uid = (uid_t)atoi(argv[1]);
    gid_t gid = (gid_t)atoi(argv[2]);
    int ready[2], go[2];
    if (pipe(ready) || pipe(go))
        return 126;
    pid_t pid = fork();
    if (pid < 0)
        return 126;
    char c = 'x';
    if (pid == 0) {
        close(ready[0]);
        close(go[1]);
        if (setgroups(0, NULL) || setresgid(gid, gid, gid) || setresuid(uid, uid, uid) || unshare(CLONE_NEWUSER))
            _exit(126);
        if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
            _exit(126);
        if (setresuid(1, 0, 0))
            _exit(126);
        execv(argv[3], argv + 3);
        _exit(126);
    }
    close(ready[1]);
    close(go[0]);
    if (read(ready[0], &c, 1) != 1)
        return 126;
    char uids[64], gids[64];
    snprintf(uids, sizeof uids, "0 %u 1\n1 165536 65536\n", (unsigned)uid);
    snprintf(gids, sizeof gids, "0 %u 1\n1 165536 65536\n", (unsigned)gid);
    int failed = put(pid, "setgroups", "deny") || put(pid, "uid_map", uids) || put(pid, "gid_map", gids);
    if (failed) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return 126;
    }
    if (write(go[1], &c, 1) != 1)
        return 126;
    int status;
    if (waitpid(pid, &status, 0) < 0)
        return 126;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 126;
}
