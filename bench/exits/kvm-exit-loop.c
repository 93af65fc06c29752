/* kvm-exit-loop: the C reference for bench/exits. A minimal VMM that does what tsvmm does before the guest runs
 * (in-kernel irqchip and PIT, the VMX real-mode helper addresses, guest RAM, host CPUID) and then counts the guest's
 * port-I/O exits in the tightest KVM_RUN loop C allows: no device model, no lock, no allocation.
 *
 * usage: kvm-exit-loop IMAGE LOAD_ADDR LOOP_PORT NCPUS [SINK]
 *   IMAGE      flat binary loaded at LOAD_ADDR (< 1 MiB); the boot vCPU starts there in real mode (CS = 0)
 *   LOOP_PORT  the port the guest loops on: OUTs to it are counted (and timed, first to last, per vCPU)
 *   NCPUS      1..8 vCPUs; the others start in wait-for-SIPI, as on a PC (the guest wakes them with INIT-SIPI)
 *   SINK       optional file: each OUT to LOOP_PORT is also written to it with write(2), one call per exit, as a
 *              device model writing a console byte to a file would
 * Port 0xf4 (isa-debug-exit) ends the run. IN from 0x3fd (COM1 LSR) reads "transmitter empty"; any other IN reads
 * all ones, as an unclaimed port does in tsvmm.
 *
 * Prints one JSON line: {"cpus":[{"count":N,"firstNs":T0,"lastNs":T1},...],"exitStatus":V}
 * where T0/T1 are CLOCK_MONOTONIC stamps of the first and last counted exit of each vCPU. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RAM_SIZE (64ul << 20)           /* the same -m 64M that the tsvmm runs use */
#define IDENTITY_MAP_ADDR 0xfeffc000ul  /* tsvmm's (and QEMU's) VMX real-mode helper pages */
#define TSS_ADDR 0xfeffd000ul
#define DEBUG_EXIT_PORT 0xf4
#define COM1_LSR 0x3fd
#define LSR_THRE_TEMT 0x60              /* transmitter holding register and shift register empty */
#define MAX_CPUS 8
#define MAX_CPUID 256

struct vcpu {
    int id;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    volatile uint64_t count;
    volatile uint64_t first_ns;
    volatile uint64_t last_ns;
};

static int ncpus;
static unsigned loop_port;
static int sink_fd = -1;
static struct vcpu cpus[MAX_CPUS];
static pthread_mutex_t exit_lock = PTHREAD_MUTEX_INITIALIZER;

static void die(const char *what) {
    fprintf(stderr, "kvm-exit-loop: %s: %s\n", what, strerror(errno));
    exit(2);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void finish(uint32_t value) {
    pthread_mutex_lock(&exit_lock);
    printf("{\"cpus\":[");
    for (int i = 0; i < ncpus; i++) {
        printf("%s{\"count\":%llu,\"firstNs\":%llu,\"lastNs\":%llu}", i ? "," : "", (unsigned long long)cpus[i].count,
               (unsigned long long)cpus[i].first_ns, (unsigned long long)cpus[i].last_ns);
    }
    printf("],\"exitStatus\":%u}\n", value);
    fflush(stdout);
    _exit(0); /* the other vCPUs sit in KVM_RUN (hlt with an in-kernel irqchip): exit_group ends them */
}

static void *vcpu_loop(void *arg) {
    struct vcpu *v = arg;
    struct kvm_run *run = v->run;
    for (;;) {
        if (ioctl(v->fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            die("KVM_RUN");
        }
        switch (run->exit_reason) {
        case KVM_EXIT_IO: {
            uint8_t *data = (uint8_t *)run + run->io.data_offset;
            if (run->io.direction == KVM_EXIT_IO_OUT) {
                uint32_t value = 0;
                memcpy(&value, data, run->io.size);
                if (run->io.port == loop_port) {
                    uint64_t t = now_ns();
                    if (v->count++ == 0) v->first_ns = t;
                    v->last_ns = t;
                    if (sink_fd >= 0 && write(sink_fd, data, run->io.size * run->io.count) < 0) die("write sink");
                } else if (run->io.port == DEBUG_EXIT_PORT) {
                    finish(value);
                }
            } else {
                memset(data, 0xff, run->io.size * run->io.count);
                if (run->io.port == COM1_LSR) data[0] = LSR_THRE_TEMT;
            }
            break;
        }
        case KVM_EXIT_MMIO:
            if (!run->mmio.is_write) memset(run->mmio.data, 0xff, sizeof run->mmio.data);
            break;
        case KVM_EXIT_INTR:
            break;
        default:
            fprintf(stderr, "kvm-exit-loop: vCPU %d: unexpected exit reason %u\n", v->id, run->exit_reason);
            exit(3);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 5 || argc > 6) {
        fprintf(stderr, "usage: %s IMAGE LOAD_ADDR LOOP_PORT NCPUS [SINK]\n", argv[0]);
        return 2;
    }
    unsigned long load = strtoul(argv[2], NULL, 0);
    loop_port = (unsigned)strtoul(argv[3], NULL, 0);
    ncpus = atoi(argv[4]);
    if (ncpus < 1 || ncpus > MAX_CPUS || load >= 0x100000 || loop_port > 0xffff) {
        fprintf(stderr, "kvm-exit-loop: bad arguments\n");
        return 2;
    }
    if (argc == 6 && (sink_fd = open(argv[5], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) die("open sink");

    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) die("open /dev/kvm");
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) die("KVM_CREATE_VM");
    uint64_t identity = IDENTITY_MAP_ADDR;
    if (ioctl(vm, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0) die("KVM_SET_IDENTITY_MAP_ADDR");
    if (ioctl(vm, KVM_SET_TSS_ADDR, TSS_ADDR) < 0) die("KVM_SET_TSS_ADDR");
    if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0) die("KVM_CREATE_IRQCHIP");
    struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
    if (ioctl(vm, KVM_CREATE_PIT2, &pit) < 0) die("KVM_CREATE_PIT2");

    uint8_t *ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (ram == MAP_FAILED) die("mmap RAM");
    madvise(ram, RAM_SIZE, MADV_HUGEPAGE);
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = RAM_SIZE, .userspace_addr = (uint64_t)(uintptr_t)ram,
    };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");

    int image = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (image < 0) die("open IMAGE");
    struct stat st;
    if (fstat(image, &st) < 0) die("stat IMAGE");
    if ((unsigned long)st.st_size > 0x100000 - load) {
        fprintf(stderr, "kvm-exit-loop: image does not fit below 1 MiB\n");
        return 2;
    }
    if (read(image, ram + load, st.st_size) != st.st_size) die("read IMAGE");
    close(image);

    int mmap_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (mmap_size < 0) die("KVM_GET_VCPU_MMAP_SIZE");
    struct kvm_cpuid2 *cpuid = calloc(1, sizeof *cpuid + MAX_CPUID * sizeof(struct kvm_cpuid_entry2));
    cpuid->nent = MAX_CPUID;
    if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) die("KVM_GET_SUPPORTED_CPUID");

    for (int i = 0; i < ncpus; i++) {
        struct vcpu *v = &cpus[i];
        v->id = i;
        if ((v->fd = ioctl(vm, KVM_CREATE_VCPU, i)) < 0) die("KVM_CREATE_VCPU");
        for (unsigned e = 0; e < cpuid->nent; e++) {  /* the APIC id in leaf 1, as tsvmm's CPUID policy sets it */
            if (cpuid->entries[e].function == 1) cpuid->entries[e].ebx = (cpuid->entries[e].ebx & 0xffffff) | ((uint32_t)i << 24);
        }
        if (ioctl(v->fd, KVM_SET_CPUID2, cpuid) < 0) die("KVM_SET_CPUID2");
        v->run = mmap(NULL, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
        if (v->run == MAP_FAILED) die("mmap kvm_run");
    }

    /* The boot vCPU: real mode, every segment at 0, IP at the load address. */
    struct kvm_sregs sregs;
    if (ioctl(cpus[0].fd, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
    struct kvm_segment *segs[] = { &sregs.cs, &sregs.ds, &sregs.es, &sregs.fs, &sregs.gs, &sregs.ss };
    for (unsigned i = 0; i < sizeof segs / sizeof segs[0]; i++) { segs[i]->base = 0; segs[i]->selector = 0; }
    if (ioctl(cpus[0].fd, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
    struct kvm_regs regs = { .rip = load, .rflags = 2, .rsp = 0x1000 };
    if (ioctl(cpus[0].fd, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");

    for (int i = 1; i < ncpus; i++) {
        if (pthread_create(&cpus[i].thread, NULL, vcpu_loop, &cpus[i]) != 0) die("pthread_create");
    }
    vcpu_loop(&cpus[0]);
    return 0;
}
