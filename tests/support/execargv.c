/* execve(PATH) with exactly the argv given (empty when only PATH is):
 *   execargv PATH [ARGV0 ARGS...]
 */
#include <stdio.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    execve(argv[1], argv + 2, environ);
    perror("execve");
    return 126;
}
