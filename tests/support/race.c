/* The race driver of the reliability tests, built static and non-PIE so
 * the marker variable sits at the same address in every process made from
 * it and the busybox tree (no libc) can run it:
 *   race target                   wait for EOF on stdin, exit 0
 *   race race N BIN SYSROOT       the ptrace / /proc/PID/mem race, N entries
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* 0x5eed in a freshly exec'd image; the race driver sets 1 before forking, so
 * memory reading 1 is the forked child before exec, 0x5eed the user's own
 * command after imageswitch, anything else (or nothing) imageswitch itself. */
volatile long phase = 0x5eed;
#define PRE_EXEC 1L
#define COMMAND 0x5eedL

enum { OK_PRE, OK_COMMAND, OK_PRIVILEGED, E_PERM, E_ACCES, E_SRCH, E_OTHER, NCLASS };
static const char *class_name[NCLASS] = {"ok_before_exec", "ok_own_command", "ok_PRIVILEGED",
                                          "eperm", "eacces", "esrch", "other_error"};
static long attach[NCLASS], mem[NCLASS];
static long other_errno_attach, other_errno_mem, exec_traps, other_stops, hung;
static long dropped_attach_denied, dropped_mem_denied;

/* Whether the target is imageswitch after it switched to our uids (before
 * its exec): the window where only PR_SET_DUMPABLE 0 keeps us out. */
static int imageswitch_with_our_uids(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int named = 0, ours = 0;
    long me = (long)getuid();
    while (fgets(line, sizeof line, f)) {
        long r, e, s, fs;
        if (!strncmp(line, "Name:\timageswitch\n", 18)) named = 1;
        if (sscanf(line, "Uid: %ld %ld %ld %ld", &r, &e, &s, &fs) == 4) {
            ours = r == me && e == me && s == me && fs == me;
            break;
        }
    }
    fclose(f);
    return named && ours;
}

static int errno_class(int e) {
    return e == EPERM ? E_PERM : e == EACCES ? E_ACCES : e == ESRCH ? E_SRCH : E_OTHER;
}

static int any_uid_zero(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 1;
    int zero = 1;
    while (fgets(line, sizeof line, f)) {
        long r, e, s, fs;
        if (sscanf(line, "Uid: %ld %ld %ld %ld", &r, &e, &s, &fs) == 4) {
            zero = r == 0 || e == 0 || s == 0 || fs == 0;
            break;
        }
    }
    fclose(f);
    return zero;
}

static int classify(long value, int readable) {
    if (!readable) return OK_PRIVILEGED;
    if (value == PRE_EXEC) return OK_PRE;
    if (value == COMMAND) return OK_COMMAND;
    return OK_PRIVILEGED;
}

/* One PTRACE_ATTACH; on success the target is stopped, so what it is can be
 * read without racing it. Returns 1 when the child was reaped meanwhile. */
static int try_attach(pid_t pid, int *status) {
    if (ptrace(PTRACE_ATTACH, pid, 0, 0) != 0) {
        int c = errno_class(errno);
        if (c == E_OTHER) other_errno_attach = errno;
        attach[c]++;
        return 0;
    }
    /* The stop for our SIGSTOP; any other stop first is recorded and the
     * tracee resumed without its signal (a SIGTRAP here means an execve
     * completed while we were attached). */
    int st;
    for (;;) {
        if (waitpid(pid, &st, __WALL) != pid || !WIFSTOPPED(st)) {
            attach[OK_PRIVILEGED]++; /* attached, then gone: unclassifiable, count against us */
            *status = st;
            return 1;
        }
        if (WSTOPSIG(st) == SIGSTOP) break;
        if (WSTOPSIG(st) == SIGTRAP) exec_traps++;
        else other_stops++;
        ptrace(PTRACE_CONT, pid, 0, 0);
    }
    errno = 0;
    long value = ptrace(PTRACE_PEEKDATA, pid, (void *)&phase, 0);
    int c = classify(value, errno == 0);
    if (any_uid_zero(pid)) c = OK_PRIVILEGED;
    attach[c]++;
    ptrace(PTRACE_DETACH, pid, 0, 0);
    return 0;
}

static void try_mem(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", pid);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int c = errno_class(errno);
        if (c == E_OTHER) other_errno_mem = errno;
        mem[c]++;
        return;
    }
    long value = 0;
    ssize_t n = pread(fd, &value, sizeof value, (off_t)(unsigned long)&phase);
    /* Opened in the last part of an execve (credentials and memory already
     * the new image's, the ELF loader still mapping it): the descriptor holds
     * that memory, so look again once the loader is done. imageswitch's own
     * memory never has anything at this fixed address. */
    for (int retry = 0; n != (ssize_t)sizeof value && retry < 1000; retry++) {
        usleep(100);
        n = pread(fd, &value, sizeof value, (off_t)(unsigned long)&phase);
    }
    mem[classify(value, n == (ssize_t)sizeof value)]++;
    close(fd);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int race(long runs, const char *bin, const char *sysroot, const char *self) {
    long exits[256] = {0}, signaled = 0, entries_reached_command = 0;
    phase = PRE_EXEC;
    for (long i = 0; i < runs; i++) {
        int exec_seen[2], hold[2];
        if (pipe2(exec_seen, O_CLOEXEC) || pipe2(hold, O_CLOEXEC)) { perror("pipe"); return 2; }
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); return 2; }
        if (pid == 0) {
            dup2(hold[0], 0);
            char *argv[] = {"imageswitch", (char *)sysroot, (char *)self, "target", NULL};
            char *envp[] = {"PATH=/usr/bin:/bin", NULL};
            execve(bin, argv, envp);
            _exit(126);
        }
        close(exec_seen[1]);
        close(hold[0]);
        char b;
        /* EOF: the close-on-exec descriptor is gone, the exec is under way. */
        while (read(exec_seen[0], &b, 1) < 0 && errno == EINTR) {}
        close(exec_seen[0]);
        long ok_command_before = attach[OK_COMMAND] + mem[OK_COMMAND];
        int status = 0, reaped = 0;
        double deadline = now() + 10.0;
        for (long k = 0; k < 200000 && now() < deadline; k++) {
            int dropped = imageswitch_with_our_uids(pid);
            long denied_before = attach[E_PERM], mem_denied_before = mem[E_ACCES];
            if (try_attach(pid, &status)) { reaped = 1; break; }
            try_mem(pid);
            if (dropped) {
                dropped_attach_denied += attach[E_PERM] - denied_before;
                dropped_mem_denied += mem[E_ACCES] - mem_denied_before;
            }
            pid_t w = waitpid(pid, &status, WNOHANG | __WALL);
            if (w == pid) { reaped = 1; break; }
            /* Once the user's command has been reached by both means, stop. */
            if (attach[OK_COMMAND] + mem[OK_COMMAND] - ok_command_before >= 2) break;
        }
        close(hold[1]);
        /* The command exits on EOF; a process that does not within 10 s is a
         * defect of this driver (left stopped): counted, killed, reported. */
        for (double end = now() + 10.0; !reaped; ) {
            if (waitpid(pid, &status, WNOHANG | __WALL) == pid) { reaped = 1; break; }
            if (now() > end) { hung++; kill(pid, SIGKILL); waitpid(pid, &status, __WALL); reaped = 1; break; }
            usleep(200);
        }
        if (attach[OK_COMMAND] + mem[OK_COMMAND] > ok_command_before) entries_reached_command++;
        if (WIFEXITED(status)) exits[WEXITSTATUS(status)]++;
        else signaled++;
    }
    printf("entries=%ld\nentries_reached_command=%ld\nsignaled=%ld\n", runs, entries_reached_command, signaled);
    for (int s = 0; s < 256; s++)
        if (exits[s]) printf("exit_%d=%ld\n", s, exits[s]);
    for (int c = 0; c < NCLASS; c++) printf("attach_%s=%ld\n", class_name[c], attach[c]);
    for (int c = 0; c < NCLASS; c++) printf("mem_%s=%ld\n", class_name[c], mem[c]);
    printf("attach_other_errno=%ld\nmem_other_errno=%ld\n", other_errno_attach, other_errno_mem);
    printf("exec_traps=%ld\nother_stops=%ld\nhung=%ld\n", exec_traps, other_stops, hung);
    printf("dropped_attach_denied=%ld\ndropped_mem_denied=%ld\n", dropped_attach_denied, dropped_mem_denied);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "target")) {
        char buf[64];
        while (read(0, buf, sizeof buf) > 0) {}
        return phase == COMMAND ? 0 : 3;
    }
    if (argc == 5 && !strcmp(argv[1], "race")) return race(atol(argv[2]), argv[3], argv[4], argv[0]);
    fprintf(stderr, "usage: race target | race N BIN SYSROOT\n");
    return 2;
}
