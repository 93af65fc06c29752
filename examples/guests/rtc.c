/* rtc: reads the MC146818 RTC once no update is in progress, and prints the time as "rtc: YYYY-MM-DD hh:mm:ss".
 * Handles BCD or binary and 12- or 24-hour mode as register B says; the century comes from CMOS 0x32 (as QEMU
 * keeps it) when that holds a sane value, else 20. */
#include "runtime.h"

#define CMOS_INDEX 0x70
#define CMOS_DATA  0x71
#define RTC_SECONDS 0x00
#define RTC_MINUTES 0x02
#define RTC_HOURS   0x04
#define RTC_DAY     0x07
#define RTC_MONTH   0x08
#define RTC_YEAR    0x09
#define RTC_REG_A   0x0a
#define RTC_REG_B   0x0b
#define RTC_CENTURY 0x32
#define REG_A_UIP   0x80     /* update in progress */
#define REG_B_24H   0x02
#define REG_B_BINARY 0x04
#define HOUR_PM     0x80     /* 12-hour mode: PM flag in the hours register */

static uint8_t cmos(uint8_t reg) { outb(CMOS_INDEX, reg); return inb(CMOS_DATA); }

struct rtc_time { uint8_t sec, min, hour, day, month, year, century; };

static void read_raw(struct rtc_time *t) {
    for (unsigned i = 0; i < 100000 && (cmos(RTC_REG_A) & REG_A_UIP); i++) { }
    t->sec = cmos(RTC_SECONDS);
    t->min = cmos(RTC_MINUTES);
    t->hour = cmos(RTC_HOURS);
    t->day = cmos(RTC_DAY);
    t->month = cmos(RTC_MONTH);
    t->year = cmos(RTC_YEAR);
    t->century = cmos(RTC_CENTURY);
}

static uint8_t from_bcd(uint8_t v) { return (v >> 4) * 10 + (v & 0xf); }

void main(void) {
    struct rtc_time a, b;
    /* Read until two consecutive reads agree: an update between the UIP check and the reads cannot slip through. */
    read_raw(&a);
    for (int tries = 0; tries < 10; tries++) {
        read_raw(&b);
        if (a.sec == b.sec && a.min == b.min && a.hour == b.hour && a.day == b.day && a.month == b.month
            && a.year == b.year && a.century == b.century) break;
        a = b;
    }
    uint8_t regb = cmos(RTC_REG_B);
    uint8_t pm = b.hour & HOUR_PM;
    b.hour &= ~HOUR_PM;
    if (!(regb & REG_B_BINARY)) {
        b.sec = from_bcd(b.sec); b.min = from_bcd(b.min); b.hour = from_bcd(b.hour);
        b.day = from_bcd(b.day); b.month = from_bcd(b.month); b.year = from_bcd(b.year);
        b.century = from_bcd(b.century);
    }
    if (!(regb & REG_B_24H)) {
        if (b.hour == 12) b.hour = 0;
        if (pm) b.hour += 12;
    }
    uint32_t century = b.century >= 19 && b.century <= 99 ? b.century : 20;
    print("rtc: %u%02u-%02u-%02u %02u:%02u:%02u\n", century, (uint32_t)b.year, (uint32_t)b.month, (uint32_t)b.day,
          (uint32_t)b.hour, (uint32_t)b.min, (uint32_t)b.sec);
    debug_exit(0);
}
