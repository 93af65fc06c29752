/* panic: reports a guest panic through QEMU's pvpanic ISA device (docs/specs/pvpanic.rst), as Linux's pvpanic
 * driver does on panic(): read the port for the events the device offers, then write PANICKED.
 *
 * With a pvpanic device the VM ends at the write (tsvmm: status 126; QEMU: its -action panic=…). Without one
 * the read floats high (0xff, so bit 0 looks offered) and the write goes nowhere: the guest is still running and
 * says so through isa-debug-exit. `port=N` on the command line moves the port (-device pvpanic,ioport=N). */
#include "runtime.h"

#define PVPANIC_DEFAULT_PORT 0x505
#define PVPANIC_PANICKED     0x01   /* event bit 0: the host should handle the panic */

#define EXIT_NOT_OFFERED     0x21   /* the port does not offer PANICKED (status 67) */
#define EXIT_STILL_RUNNING   0x22   /* the PANICKED write did not end the VM (status 69) */

void main(void) {
    uint16_t port = (uint16_t)cmdline_uint("port=", PVPANIC_DEFAULT_PORT);
    uint8_t events = inb(port);
    print("panic: port 0x%x offers events 0x%x\n", port, events);
    if (!(events & PVPANIC_PANICKED)) {
        print("panic: PANICKED is not offered\n");
        debug_exit(EXIT_NOT_OFFERED);
    }
    print("panic: reporting a panic\n");
    outb(port, PVPANIC_PANICKED);
    print("panic: still running after the PANICKED write\n");
    debug_exit(EXIT_STILL_RUNNING);
}
