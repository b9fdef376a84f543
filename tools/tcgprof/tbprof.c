/*
 * A QEMU TCG plugin for tools/tcgprof/run.sh: how many times each translated block ran between
 * two moments the script chooses, so that instructions executed can be summed per function.
 *
 * Why a plugin: a gdbstub sampler only stops a vCPU where its thread leaves translated code (at
 * a TLBI, an ISB, a WFI, an MMIO access), so it over-samples those and misses tight loops; the
 * counts here are exact. Debian's QEMU 7.2 supports plugins but ships no qemu-plugin.h, so the
 * few declarations of its (stable, version 1) API used here are written out below.
 *
 * Arguments (-plugin tbprof.so,ctl=DIR,out=FILE): counting starts when DIR/start exists and
 * stops when DIR/stop exists (a watcher thread looks every 2 ms); FILE then gets one line per
 * block that ran meanwhile: "vaddr instructions executions callee" (hex, decimal, decimal, hex), the
 * callee being the target of the block's last instruction when that is a BL or a B (0 if not), so
 * that the script can say who calls a function how often. Executions
 * are counted by inline adds from every vCPU thread, unsynchronised: a race loses a count now
 * and then, which a profile can afford.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/* One translation of a block (a block translated again gets another record). */
struct block {
    uint64_t vaddr, insns, runs, at_start, callee;
};

/* The target of the block's last instruction if it is an A64 BL or B (imm26, PC-relative). */
static uint64_t branch_target(const struct qemu_plugin_tb *tb, size_t n)
{
    if (n == 0)
        return 0;
    const struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, n - 1);
    if (qemu_plugin_insn_size(insn) != 4)
        return 0;
    uint32_t op;
    memcpy(&op, qemu_plugin_insn_data(insn), 4);
    if ((op & 0x7c000000) != 0x14000000) /* B 000101, BL 100101 */
        return 0;
    int64_t off = (int64_t)((uint64_t)(op & 0x03ffffff) << 38) >> 36;
    return qemu_plugin_insn_vaddr(insn) + off;
}

#define MAX_BLOCKS (1 << 22)
static struct block *blocks;
static int nblocks;
static pthread_mutex_t blocks_lock = PTHREAD_MUTEX_INITIALIZER;
static char start_path[4096], stop_path[4096], out_path[4096];

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    pthread_mutex_lock(&blocks_lock);
    if (nblocks < MAX_BLOCKS) {
        struct block *b = &blocks[nblocks++];
        b->vaddr = qemu_plugin_tb_vaddr(tb);
        b->insns = qemu_plugin_tb_n_insns(tb);
        b->callee = branch_target(tb, b->insns);
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->runs, 1);
    }
    pthread_mutex_unlock(&blocks_lock);
}

static int blocks_now(void)
{
    pthread_mutex_lock(&blocks_lock);
    int n = nblocks;
    pthread_mutex_unlock(&blocks_lock);
    return n;
}

static void *watch(void *arg)
{
    (void)arg;
    while (access(start_path, F_OK) != 0)
        usleep(2000);
    int n = blocks_now();
    for (int i = 0; i < n; i++)
        blocks[i].at_start = blocks[i].runs;
    while (access(stop_path, F_OK) != 0)
        usleep(2000);
    n = blocks_now();
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.part", out_path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        perror(tmp);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (blocks[i].runs > blocks[i].at_start)
            fprintf(f, "%lx %lu %lu %lx\n", (unsigned long)blocks[i].vaddr, (unsigned long)blocks[i].insns,
                    (unsigned long)(blocks[i].runs - blocks[i].at_start), (unsigned long)blocks[i].callee);
    fclose(f);
    rename(tmp, out_path); /* whole or not at all, for the script that waits for it */
    return NULL;
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                                               int argc, char **argv)
{
    (void)info;
    const char *ctl = NULL, *out = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], "ctl=", 4))
            ctl = argv[i] + 4;
        else if (!strncmp(argv[i], "out=", 4))
            out = argv[i] + 4;
    }
    if (!ctl || !out) {
        fprintf(stderr, "tbprof: needs ctl=DIR and out=FILE\n");
        return -1;
    }
    snprintf(start_path, sizeof start_path, "%s/start", ctl);
    snprintf(stop_path, sizeof stop_path, "%s/stop", ctl);
    snprintf(out_path, sizeof out_path, "%s", out);
    blocks = calloc(MAX_BLOCKS, sizeof *blocks);
    if (!blocks)
        return -1;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    pthread_t t;
    return pthread_create(&t, NULL, watch, NULL) ? -1 : 0;
}
