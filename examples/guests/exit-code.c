/* exit-code: exits through isa-debug-exit with the value of `code=N` on the multiboot command line (default 42).
 * Built as an a.out-kludge multiboot image (flat .bin), so it also exercises that loader path. */
#include "runtime.h"

void main(void) {
    uint32_t code = cmdline_uint("code=", 42);
    print("exit-code: exiting with %u\n", code);
    debug_exit(code);
}
