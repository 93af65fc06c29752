/* hello: the smallest end-to-end check. Prints one line on COM1 and exits with debug-exit value 0. */
#include "runtime.h"

void main(void) {
    puts_serial("Hello from tsvmm guest\n");
    debug_exit(0);
}
