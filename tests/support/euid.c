/* Prints its effective uid: installed setuid root, it shows whether the
 * setuid bit took effect where it runs. */
#include <stdio.h>
#include <unistd.h>

int main(void) {
    printf("%d\n", (int)geteuid());
    return 0;
}
