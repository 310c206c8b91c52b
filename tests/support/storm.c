/* A SIGQUIT storm at the privileged phases of a setuid program (row 15 of
 * THREATS.md, tests/threats.rs).
 *
 * `storm RUNS UID PROGRAM ARGS...`: runs PROGRAM RUNS times; each time it
 * watches /proc/PID/status and sends SIGQUIT the moment the process is
 * imageswitch past its start — phase A: euid 0 with the fsuid switched to
 * UID (a bind source opened as the user); phase B: every id UID again after
 * euid 0 was seen, not yet exec'd. Not before: between a setuid exec and the
 * program's first instruction every setuid program is dumpable under
 * suid_dumpable=2 (the kernel's "suidsafe" mode), and nothing it does can
 * change that. (The kernel names the process before it switches the ids:
 * "imageswitch" with the caller's ids is that moment, not phase B.)
 * Prints `run PID PHASE` per run (`-` when it was not hit).
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int runs = atoi(argv[1]), uid = atoi(argv[2]);
    struct rlimit unlimited = {RLIM_INFINITY, RLIM_INFINITY};
    setrlimit(RLIMIT_CORE, &unlimited);
    for (int i = 0; i < runs; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            int null = open("/dev/null", O_RDWR);
            dup2(null, 1);
            dup2(null, 2);
            execv(argv[3], argv + 3);
            _exit(127);
        }
        char path[64], buf[4096], phase = '-';
        snprintf(path, sizeof path, "/proc/%d/status", pid);
        int fd = open(path, O_RDONLY), started = 0, root_seen = 0;
        for (long spin = 0; fd >= 0 && spin < 1000000; spin++) {
            ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
            if (n <= 0) break;
            buf[n] = 0;
            if (strstr(buf, "\nState:\tZ")) break;
            if (strncmp(buf, "Name:\timageswitch\n", 18) != 0) {
                if (started) break;
                continue;
            }
            started = 1;
            char *u = strstr(buf, "\nUid:\t");
            int r, e, s, f;
            if (!u || sscanf(u + 6, "%d %d %d %d", &r, &e, &s, &f) != 4) continue;
            if (e == 0) root_seen = 1;
            if (e == 0 && f == uid) phase = 'A';
            else if (root_seen && r == uid && e == uid && s == uid && f == uid) phase = 'B';
            else continue;
            kill(pid, SIGQUIT);
            break;
        }
        if (fd >= 0) close(fd);
        int status;
        waitpid(pid, &status, 0);
        printf("run %d %c\n", pid, phase);
    }
    return 0;
}
