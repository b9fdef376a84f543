/*
 * memwork: the Linux guest's memory workload (uvmhyp, issue 8), run by /init.
 *
 *   memwork anon MIB [SEED]        fill MIB MiB of fresh anonymous memory (mmap), then verify it
 *   memwork tmpfs PATH MIB [SEED]  write MIB MiB to a new file PATH on a tmpfs, then read it back
 *   memwork counter          print the virtual counter (CNTVCT_EL0) and its frequency
 *
 * Every 4 KiB page gets its own pattern: each 64-bit word holds the page's index, the word's
 * index and a salt, so a page mapped at the wrong place, a lost write or a page read back as
 * zeroes all fail the check. SEED (0..65535, default 0) goes into every word too: clones of one
 * VM given different seeds write different data, so one clone's write seen by another fails. Rates come from the guest's own clock (CLOCK_MONOTONIC). Output:
 *   uvmhyp-linux: anon 64 MiB: fill 812.3 MiB/s, verify 1523.9 MiB/s: PASS
 * or a FAIL line naming the first bad page; exit status 0 only on PASS.
 *
 * The counter mode gives the time since the counter's zero — QEMU's start when booted directly,
 * the VM's time base under a hypervisor that sets CNTVOFF_EL2 — and, under QEMU's -icount, a
 * deterministic count of instructions.
 *
 * Built with aarch64-linux-gnu-gcc -static (guest/linux/mkinitramfs.sh).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u
#define WORDS (PAGE / sizeof(uint64_t))
#define MIB (1024u * 1024u)
/* Upper bound on one workload's size: larger than any VM we run, small enough to never overflow. */
#define MAX_MIB 65536ul
/* Distinguishes the two workloads' patterns (a file page read into the anon area would show). */
#define SALT_ANON 0xa5a5000000000000ull
#define SALT_FILE 0x5a5a000000000000ull
/* File I/O in chunks of this many pages. */
#define CHUNK_PAGES 16u

static const char *tag = "uvmhyp-linux:";
/* SEED << 32, in every word. */
static uint64_t seed_bits;

static uint64_t word(uint64_t salt, uint64_t page, uint64_t i)
{
	return salt ^ seed_bits ^ (page << 16) ^ i;
}

static void fill_page(uint64_t *p, uint64_t salt, uint64_t page)
{
	for (uint64_t i = 0; i < WORDS; i++)
		p[i] = word(salt, page, i);
}

/* Index of the first bad word of `page`, or -1 when the page is intact. */
static long check_page(const uint64_t *p, uint64_t salt, uint64_t page)
{
	for (uint64_t i = 0; i < WORDS; i++)
		if (p[i] != word(salt, page, i))
			return (long)i;
	return -1;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double rate(unsigned long mib, double seconds)
{
	return seconds > 0 ? (double)mib / seconds : 0.0;
}

/* Parses a size in MiB: decimal, 1..MAX_MIB. Returns 0 on anything else. */
static unsigned long parse_mib(const char *s)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v == 0 || v > MAX_MIB)
		return 0;
	return v;
}

static int report(const char *what, unsigned long mib, double fill_s, double verify_s,
		  long bad_page, long bad_word, uint64_t got, uint64_t want)
{
	if (bad_page >= 0) {
		printf("%s %s %lu MiB: page %ld word %ld is %#018" PRIx64 ", expected %#018" PRIx64
		       ": FAIL\n", tag, what, mib, bad_page, bad_word, got, want);
		return 1;
	}
	printf("%s %s %lu MiB: fill %.1f MiB/s, verify %.1f MiB/s: PASS\n", tag, what, mib,
	       rate(mib, fill_s), rate(mib, verify_s));
	return 0;
}

static int anon(unsigned long mib)
{
	uint64_t pages = (uint64_t)mib * (MIB / PAGE);
	size_t len = (size_t)mib * MIB;
	uint64_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		printf("%s anon %lu MiB: mmap: %s: FAIL\n", tag, mib, strerror(errno));
		return 1;
	}
	double t0 = now();
	for (uint64_t pg = 0; pg < pages; pg++)
		fill_page(mem + pg * WORDS, SALT_ANON, pg);
	double t1 = now();
	long bad_page = -1, bad_word = -1;
	for (uint64_t pg = 0; pg < pages && bad_page < 0; pg++) {
		bad_word = check_page(mem + pg * WORDS, SALT_ANON, pg);
		if (bad_word >= 0)
			bad_page = (long)pg;
	}
	double t2 = now();
	uint64_t got = 0, want = 0;
	if (bad_page >= 0) {
		got = mem[(uint64_t)bad_page * WORDS + (uint64_t)bad_word];
		want = word(SALT_ANON, (uint64_t)bad_page, (uint64_t)bad_word);
	}
	munmap(mem, len);
	return report("anon", mib, t1 - t0, t2 - t1, bad_page, bad_word, got, want);
}

/* Whole-buffer write or read; -1 with errno on failure or a short transfer. */
static int io_all(int fd, void *buf, size_t len, int writing)
{
	char *p = buf;
	while (len > 0) {
		ssize_t n = writing ? write(fd, p, len) : read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int tmpfs(const char *path, unsigned long mib)
{
	static uint64_t buf[CHUNK_PAGES * WORDS];
	uint64_t pages = (uint64_t)mib * (MIB / PAGE);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		printf("%s tmpfs %lu MiB: open %s: %s: FAIL\n", tag, mib, path, strerror(errno));
		return 1;
	}
	double t0 = now();
	for (uint64_t pg = 0; pg < pages; pg += CHUNK_PAGES) {
		uint64_t n = pages - pg < CHUNK_PAGES ? pages - pg : CHUNK_PAGES;
		for (uint64_t k = 0; k < n; k++)
			fill_page(buf + k * WORDS, SALT_FILE, pg + k);
		if (io_all(fd, buf, n * PAGE, 1) < 0) {
			printf("%s tmpfs %lu MiB: write at page %" PRIu64 ": %s: FAIL\n", tag, mib, pg,
			       strerror(errno));
			close(fd);
			return 1;
		}
	}
	double t1 = now();
	if (lseek(fd, 0, SEEK_SET) != 0) {
		printf("%s tmpfs %lu MiB: lseek: %s: FAIL\n", tag, mib, strerror(errno));
		close(fd);
		return 1;
	}
	long bad_page = -1, bad_word = -1;
	uint64_t got = 0, want = 0;
	for (uint64_t pg = 0; pg < pages && bad_page < 0; pg += CHUNK_PAGES) {
		uint64_t n = pages - pg < CHUNK_PAGES ? pages - pg : CHUNK_PAGES;
		if (io_all(fd, buf, n * PAGE, 0) < 0) {
			printf("%s tmpfs %lu MiB: read at page %" PRIu64 ": %s: FAIL\n", tag, mib, pg,
			       strerror(errno));
			close(fd);
			return 1;
		}
		for (uint64_t k = 0; k < n && bad_page < 0; k++) {
			bad_word = check_page(buf + k * WORDS, SALT_FILE, pg + k);
			if (bad_word >= 0) {
				bad_page = (long)(pg + k);
				got = buf[k * WORDS + (uint64_t)bad_word];
				want = word(SALT_FILE, pg + k, (uint64_t)bad_word);
			}
		}
	}
	double t2 = now();
	close(fd);
	return report("tmpfs", mib, t1 - t0, t2 - t1, bad_page, bad_word, got, want);
}

static int counter(void)
{
	uint64_t cnt, frq;
	__asm__ volatile("isb; mrs %0, cntvct_el0" : "=r"(cnt));
	__asm__ volatile("mrs %0, cntfrq_el0" : "=r"(frq));
	printf("%s counter %" PRIu64 " at %" PRIu64 " Hz: %.3f s since the counter's zero\n", tag,
	       cnt, frq, frq ? (double)cnt / (double)frq : 0.0);
	return 0;
}

static int usage(void)
{
	printf("%s memwork: usage: memwork anon MIB [SEED] | memwork tmpfs PATH MIB [SEED] |"
	       " memwork counter (MIB 1..%lu, SEED 0..65535): FAIL\n", tag, MAX_MIB);
	return 2;
}

/* Parses SEED (decimal 0..65535) into seed_bits; 0 on success, -1 on anything else. */
static int parse_seed(const char *s)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v > 65535)
		return -1;
	seed_bits = (uint64_t)v << 32;
	return 0;
}

int main(int argc, char **argv)
{
	int rc;
	/* Lines must reach the console in order with the shell's, even through a pipe. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	if ((argc == 3 || argc == 4) && strcmp(argv[1], "anon") == 0) {
		unsigned long mib = parse_mib(argv[2]);
		rc = mib && (argc == 3 || parse_seed(argv[3]) == 0) ? anon(mib) : usage();
	} else if ((argc == 4 || argc == 5) && strcmp(argv[1], "tmpfs") == 0) {
		unsigned long mib = parse_mib(argv[3]);
		rc = mib && (argc == 4 || parse_seed(argv[4]) == 0) ? tmpfs(argv[2], mib) : usage();
	} else if (argc == 2 && strcmp(argv[1], "counter") == 0) {
		rc = counter();
	} else {
		rc = usage();
	}
	return rc;
}
