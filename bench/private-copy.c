/* What a private copy of a pinned namespace costs the kernel, per entry:
 * fork + setns(pin) + exit, against the same with unshare(CLONE_NEWNS)
 * (the copy, and its teardown when the process exits), and with one bind
 * mount made in the copy as well. Prints the median microseconds of each
 * over N rounds, interleaved. Run by bench/private-copy.sh, which finds a
 * pin; as root.
 *
 *   private-copy PIN_FILE N
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s PIN_FILE N\n", argv[0]);
        return 2;
    }
    int pin = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (pin < 0) {
        perror(argv[1]);
        return 1;
    }
    int n = atoi(argv[2]);
    const char *what[3] = {"fork, setns into the pin, exit",
                           "+ unshare(CLONE_NEWNS): a private copy, torn down at exit",
                           "+ one bind mount in the copy"};
    double *t[3];
    for (int m = 0; m < 3; m++) t[m] = calloc(n, sizeof(double));
    for (int i = 0; i < n; i++) {
        for (int m = 0; m < 3; m++) {
            double start = now_us();
            pid_t child = fork();
            if (child == 0) {
                if (setns(pin, CLONE_NEWNS) != 0) _exit(2);
                if (m >= 1 && unshare(CLONE_NEWNS) != 0) _exit(3);
                if (m == 2 && mount("/tmp", "/tmp", NULL, MS_BIND, NULL) != 0) _exit(4);
                _exit(0);
            }
            int status;
            if (child < 0 || waitpid(child, &status, 0) != child || status != 0) {
                fprintf(stderr, "private-copy: round %d, step %d failed (status %d)\n", i, m, status);
                return 1;
            }
            t[m][i] = now_us() - start;
        }
    }
    for (int m = 0; m < 3; m++) {
        qsort(t[m], n, sizeof(double), cmp);
        printf("%8.1f us  %s\n", t[m][n / 2], what[m]);
    }
    return 0;
}
