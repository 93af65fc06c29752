/* fwcfg: reads the fw_cfg signature and the CPU count through the I/O-port interface. Exits 0 if the signature is
 * "QEMU", 1 otherwise. Built as an a.out-kludge image. */
#include "runtime.h"

void main(void) {
    char sig[5] = { 0 };
    uint16_t cpus = 0;
    fw_cfg_read(FW_CFG_SIGNATURE, sig, 4);
    fw_cfg_read(FW_CFG_NB_CPUS, &cpus, 2);
    for (int i = 0; i < 4; i++) if (sig[i] < 0x20 || sig[i] > 0x7e) sig[i] = '?';
    print("fw_cfg: %s cpus=%u\n", sig, (uint32_t)cpus);
    debug_exit(strncmp(sig, "QEMU", 4) == 0 ? 0 : 1);
}
