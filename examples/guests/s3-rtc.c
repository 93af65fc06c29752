/* s3-rtc: suspends to RAM (ACPI S3) with the RTC alarm as its only wake-up event, as a PC test suite's S3 test does
 * (enable RTC_EN, arm the alarm for the next second, sleep), and checks that the alarm wakes it.
 *
 * Boot (protected mode, so it finds the tables wherever the firmware put them): the RSDP in 0xE0000-0xFFFFF, the
 * RSDT, the FADT (FIRMWARE_CTRL, PM1a_EVT_BLK, PM1a_CNT_BLK, flags). Prints
 *   s3-rtc: FACS 0x........ PM1a_EVT 0x.... PM1a_CNT 0x....
 * and fails with EXIT_NO_RTC_WAKE if the FADT sets FIX_RTC (the platform says its RTC cannot wake it). It copies a
 * real-mode wake stub to WAKE_VECTOR and stores that address in FACS.Firmware_Waking_Vector, clears PM1_STS, sets
 * PM1_EN = RTC_EN, then waits for an RTC update — the update-in-progress flag (register A, UIP) rising and falling, or
 * the seconds register changing when the polls missed UIP's short window — so the alarm, armed just after it, fires a
 * whole second later. Prints
 *   s3-rtc: update seen after N reads of register A (UIP|seconds changed)
 * arms the alarm with all three alarm registers "don't care" (it fires at every update), sets AIE, prints
 *   s3-rtc: suspending
 * and writes SLP_TYP=1 (S3 under QEMU's and tsvmm's PIIX4 numbering) | SLP_EN to PM1a_CNT. A machine that does not
 * stop it within ~3 RTC seconds: EXIT_NOT_SUSPENDED.
 *
 * Wake: the stub runs in real mode at the vector, reads PM1_STS before anything else can change it, goes back to
 * protected mode and calls resumed(), which prints
 *   s3-rtc: woke, PM1_STS 0x....
 * and exits with EXIT_WOKE_BY_RTC when WAK_STS and RTC_STS are both set, else EXIT_WOKE_OTHERWISE. A second boot
 * (no waking vector was used) finds its RAM marker (at 0x9000) and exits with EXIT_BOOTED_AGAIN. */
#include "runtime.h"

#define EXIT_WOKE_BY_RTC    0x10   /* status 33 */
#define EXIT_WOKE_OTHERWISE 0x11   /* woken, but RTC_STS is clear: status 35 */
#define EXIT_BOOTED_AGAIN   0x12   /* status 37 */
#define EXIT_NO_TABLES      0x20   /* status 65 */
#define EXIT_NO_RTC_WAKE    0x21   /* the FADT sets FIX_RTC: status 67 */
#define EXIT_NOT_SUSPENDED  0x23   /* status 71 */
#define EXIT_MARKER_LOST    0x24   /* woke, but RAM did not survive: status 73 */

#define WAKE_VECTOR 0x1000u        /* below 1 MiB, clear of the IVT and the BIOS data area */

/* ACPI (6.x, 5.2). */
#define RSDP_RSDT        16        /* u32 RsdtAddress */
#define SDT_LENGTH       4
#define SDT_HEADER_SIZE  36
#define FADT_FIRMWARE_CTRL 36
#define FADT_PM1A_EVT_BLK  56
#define FADT_PM1A_CNT_BLK  64
#define FADT_FLAGS       112
#define FADT_FLAG_FIX_RTC (1u << 6) /* RTC wake status is not in the fixed register space */
#define FACS_WAKING_VECTOR 12      /* u32 Firmware_Waking_Vector */
#define PM1_STS          0         /* offsets in PM1a_EVT_BLK */
#define PM1_EN           2
#define PM1_STS_RTC      0x0400
#define PM1_STS_WAK      0x8000
#define PM1_EN_RTC       0x0400
#define PM1_CNT_SLP_TYP_S3 (1u << 10)
#define PM1_CNT_SLP_EN   0x2000

/* MC146818. */
#define CMOS_INDEX 0x70
#define CMOS_DATA  0x71
#define RTC_SECONDS 0x00
#define RTC_SECONDS_ALARM 0x01
#define RTC_MINUTES_ALARM 0x03
#define RTC_HOURS_ALARM   0x05
#define RTC_REG_A  0x0a
#define RTC_REG_B  0x0b
#define RTC_REG_C  0x0c
#define REG_A_UIP  0x80
#define REG_B_AIE  0x20
#define ALARM_DONT_CARE 0xc0

#define MARKER ((volatile uint32_t *)0x9000) /* outside the image: a reload (a second boot) does not clear it */
#define MARKER_MAGIC 0x43545233u   /* "3RTC" */

static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static uint8_t cmos(uint8_t reg) { outb(CMOS_INDEX, reg); return inb(CMOS_DATA); }
static void cmos_write(uint8_t reg, uint8_t v) { outb(CMOS_INDEX, reg); outb(CMOS_DATA, v); }
static uint32_t rd32(uint32_t a) { return *(volatile uint32_t *)a; }

/* The wake stub (s3-rtc-wake.S) and the fields the guest fills in before copying it. */
extern const uint8_t wake_stub[], wake_stub_end[];
extern uint16_t wake_pm1_sts_port, wake_pm1_sts;
extern uint8_t wake_gdtr[6];
extern uint32_t wake_entry;
extern void resume32(void);
extern uint8_t guest_gdtr[6];

static uint32_t pm1_evt;

static uint32_t find_table(uint32_t rsdt, uint32_t sig) {
    uint32_t end = rsdt + rd32(rsdt + SDT_LENGTH);
    for (uint32_t p = rsdt + SDT_HEADER_SIZE; p + 4 <= end; p += 4) {
        uint32_t t = rd32(p);
        if (t && rd32(t) == sig) return t;
    }
    return 0;
}

static uint32_t find_rsdp(void) {
    for (uint32_t a = 0xe0000; a < 0x100000; a += 16) {
        if (strncmp((const char *)a, "RSD PTR ", 8)) continue;
        uint8_t sum = 0;
        for (int i = 0; i < 20; i++) sum += *(const uint8_t *)(a + i);
        if (sum == 0) return a;
    }
    return 0;
}

/* Called by resume32 (s3-rtc-wake.S) on the boot stack, in protected mode, after the wake stub ran. */
void resumed(void) __attribute__((noreturn));
void resumed(void) {
    serial_init();
    const volatile uint16_t *saved = (const volatile uint16_t *)(WAKE_VECTOR + ((const uint8_t *)&wake_pm1_sts - wake_stub));
    uint16_t sts = *saved;
    print("s3-rtc: woke, PM1_STS 0x%x\n", (uint32_t)sts);
    if (*MARKER != MARKER_MAGIC) { print("s3-rtc: FAIL: RAM marker lost\n"); debug_exit(EXIT_MARKER_LOST); }
    debug_exit((sts & (PM1_STS_WAK | PM1_STS_RTC)) == (PM1_STS_WAK | PM1_STS_RTC) ? EXIT_WOKE_BY_RTC : EXIT_WOKE_OTHERWISE);
}

void main(void) {
    if (*MARKER == MARKER_MAGIC) { print("s3-rtc: booted again from the start\n"); debug_exit(EXIT_BOOTED_AGAIN); }
    uint32_t rsdp = find_rsdp();
    uint32_t rsdt = rsdp ? rd32(rsdp + RSDP_RSDT) : 0;
    uint32_t fadt = rsdt ? find_table(rsdt, 0x50434146 /* "FACP" */) : 0;
    if (!fadt) { print("s3-rtc: FAIL: no RSDP/RSDT/FADT\n"); debug_exit(EXIT_NO_TABLES); }
    uint32_t facs = rd32(fadt + FADT_FIRMWARE_CTRL);
    pm1_evt = rd32(fadt + FADT_PM1A_EVT_BLK);
    uint32_t pm1_cnt = rd32(fadt + FADT_PM1A_CNT_BLK);
    print("s3-rtc: FACS 0x%x PM1a_EVT 0x%x PM1a_CNT 0x%x\n", facs, pm1_evt, pm1_cnt);
    if (rd32(fadt + FADT_FLAGS) & FADT_FLAG_FIX_RTC) { print("s3-rtc: FAIL: the FADT sets FIX_RTC\n"); debug_exit(EXIT_NO_RTC_WAKE); }

    wake_pm1_sts_port = (uint16_t)(pm1_evt + PM1_STS);
    memcpy(wake_gdtr, guest_gdtr, sizeof wake_gdtr);
    wake_entry = (uint32_t)resume32;
    memcpy((void *)WAKE_VECTOR, wake_stub, (size_t)(wake_stub_end - wake_stub));
    *(volatile uint32_t *)(facs + FACS_WAKING_VECTOR) = WAKE_VECTOR;

    outw((uint16_t)(pm1_evt + PM1_STS), 0xffff);           /* write 1 to clear every status bit */
    outw((uint16_t)(pm1_evt + PM1_EN), PM1_EN_RTC);

    /* Arm just after an update, so the alarm fires a whole second later: the update is seen either as UIP rising
     * (then wait for it to fall) or, when a slow or descheduled vCPU polls across UIP's 244 us window (a loaded host
     * running TCG missed it for 30 seconds in a row), as the seconds register changing. */
    uint32_t reads = 0;
    uint8_t sec = cmos(RTC_SECONDS);
    int uip = 0;
    for (;;) {
        reads++;
        if (cmos(RTC_REG_A) & REG_A_UIP) { uip = 1; break; }
        if (cmos(RTC_SECONDS) != sec) break;
    }
    while (cmos(RTC_REG_A) & REG_A_UIP) { }
    print("s3-rtc: update seen after %u reads of register A (%s)\n", reads, uip ? "UIP" : "seconds changed");

    (void)cmos(RTC_REG_C);
    cmos_write(RTC_SECONDS_ALARM, ALARM_DONT_CARE);
    cmos_write(RTC_MINUTES_ALARM, ALARM_DONT_CARE);
    cmos_write(RTC_HOURS_ALARM, ALARM_DONT_CARE);
    cmos_write(RTC_REG_B, cmos(RTC_REG_B) | REG_B_AIE);

    *MARKER = MARKER_MAGIC;
    print("s3-rtc: suspending\n");
    outw((uint16_t)pm1_cnt, PM1_CNT_SLP_TYP_S3 | PM1_CNT_SLP_EN);
    /* Still here: wait ~3 RTC seconds for the machine to stop us. */
    sec = cmos(RTC_SECONDS);
    for (int changes = 0; changes < 3;) {
        uint8_t now = cmos(RTC_SECONDS);
        if (now != sec) { sec = now; changes++; }
    }
    print("s3-rtc: FAIL: still running after SLP_EN\n");
    debug_exit(EXIT_NOT_SUSPENDED);
}
