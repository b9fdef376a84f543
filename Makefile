# uvmhyp: `make run` and `make test` set up everything they need on a fresh Debian 12 (as root),
# build the hypervisor, the test guests and the host tools, then run.
#
#   make run                 default scenario: two VMs sharing the `image` guest + one `touch` VM
#   make test                lints, host unit tests (vm, tools, hyp's library), linux-direct + every QEMU scenario, with a summary
#   make lint                clippy with warnings as errors, host and aarch64
#   make debug SCENARIO=x    QEMU halted with a gdb stub; prints the gdb-multiarch command
#   make soak                the engine's model test at 1,000,000 operations, the interleaving explorer at 200,000 schedules a scenario
#   make bench               QEMU fault-cost scenarios (-icount), Linux boot under uvmhyp vs direct, criterion benches
#   make build               build only
#   make linux-artifacts     Linux guest: Debian 12 arm64 kernel + busybox into target/linux, our initramfs
#   make linux-direct        boot those directly under QEMU (no hypervisor): checks and baseline numbers
#   make linux [VMS=N]       N Linux VMs (default 2, 2 vCPUs and 256 MiB each) under uvmhyp

SHELL := /bin/bash
.DEFAULT_GOAL := run
export PATH := $(HOME)/.cargo/bin:$(PATH)

TARGET   := aarch64-unknown-none
TOOLS    := target/release/tools
SCENARIO ?= default

.PHONY: run test lint debug build setup soak bench list linux-artifacts linux-direct linux

# Host packages and the pinned Rust toolchain (rust-toolchain.toml: version, target, components).
setup:
	@missing=""; \
	command -v qemu-system-aarch64 >/dev/null || missing="$$missing qemu-system-arm"; \
	command -v cc >/dev/null || missing="$$missing gcc libc6-dev"; \
	if ! command -v cargo >/dev/null && ! command -v rustup >/dev/null; then \
	  command -v curl >/dev/null || missing="$$missing curl ca-certificates"; fi; \
	if [ -n "$$missing" ]; then \
	  echo "setup: apt-get install$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; fi
	@if ! command -v rustup >/dev/null; then \
	  echo "setup: installing rustup"; \
	  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain none; fi
	@rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
	@rustup target list --installed | grep -qx $(TARGET) || rustup target add $(TARGET)
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy

build: setup
	cargo build --release --target $(TARGET) -p hyp -p guest
	cargo build --release -p tools

run: build
	$(TOOLS) run $(SCENARIO)

# Clippy with warnings as errors: host crates, hyp's library, and the aarch64 binaries with every
# `unsafe` block needing its `// SAFETY:` comment.
lint: setup
	cargo clippy -p vm -p tools --all-targets -- -D warnings
	cargo clippy -p vm --features shuttle --all-targets -- -D warnings
	cargo clippy -p hyp --lib --tests -- -D warnings
	cargo clippy --release --target $(TARGET) -p hyp -p guest -- -D warnings -D clippy::undocumented_unsafe_blocks

# Lints, host unit tests, the Linux artifacts booted directly, then every QEMU scenario; the
# runner's summary line comes last.
test: build
	@$(MAKE) --no-print-directory lint; lint=$$?; \
	cargo test -p vm -p tools -p hyp; host=$$?; \
	cargo test -p vm --features shuttle --test interleave -- --nocapture || host=1; \
	$(MAKE) --no-print-directory linux-direct; linux=$$?; \
	$(TOOLS) test; qemu=$$?; \
	if [ $$lint -ne 0 ]; then echo "lints failed (make lint)"; fi; \
	if [ $$linux -ne 0 ]; then echo "the Linux artifacts failed their direct boot (make linux-direct)"; fi; \
	if [ $$host -ne 0 ]; then echo "host unit tests failed (cargo test -p vm -p tools -p hyp, or the interleaving explorer: cargo test -p vm --features shuttle --test interleave)"; fi; \
	exit $$(( lint != 0 || host != 0 || linux != 0 || qemu != 0 ))

debug: build
	$(TOOLS) debug $(SCENARIO)

list: build
	$(TOOLS) list

# The engine's model-based test at 1,000,000 operations from a random seed (CI runs 100,000 from
# a fixed seed in `make test`); it prints its seed: UVMHYP_MODEL_SEED=<seed> replays a run. Then
# the interleaving explorer at 200,000 schedules a scenario from a random seed (CI: 10,000 from a
# fixed one); it prints seed and count, and shuttle prints a failing schedule to replay with
# UVMHYP_INTERLEAVE_REPLAY (see vm/tests/interleave.rs).
soak: setup
	UVMHYP_MODEL_SEED=random UVMHYP_MODEL_OPS=1000000 cargo test -p vm --release --test model -- --nocapture
	UVMHYP_INTERLEAVE_SEED=random UVMHYP_INTERLEAVE_SCHEDULES=200000 cargo test -p vm --release --features shuttle --test interleave -- --nocapture

# Benchmarks, each beside its baseline measured in the same run: the QEMU `bench` scenario
# (instructions per page under -icount: fault vs memset/copy), the same without tracing
# (`bench-notrace`: the difference is the trace's cost per fault), Linux under uvmhyp vs direct,
# clone latency at 16 and 256 MiB resident (`clonebench` under -icount, `clonebench-host` in host
# time) and of a booted Linux VM at its clone point (`linux-clone`: the hypervisor's `cloned at its
# clone point` line), `dedup8` at its 512 pages a tick and at 64 (`tools compare`: frames saved,
# time to converge, B/A), the swap benchmarks (`tools/swapbench.sh`: swap-in and page-out
# throughput over the raw disk's, overcommit's time over the same VMs with room), then the
# engine's criterion benches (fault paths; dedup merge, scan and COW-break costs).
DEDUP_SLOW := target/uvmhyp/dedup8-64.toml
bench: build linux-artifacts
	$(TOOLS) run bench
	$(TOOLS) run bench-notrace
	$(TOOLS) run clonebench
	$(TOOLS) run clonebench-host
	$(TOOLS) run linux-clone
	guest/linux/bench.sh $(LINUX)
	$(TOOLS) run dedup8
	fast=$$(readlink -f target/uvmhyp/runs/latest); \
	sed 's/^pages_per_tick = 512$$/pages_per_tick = 64/' scenarios/dedup8.toml > $(DEDUP_SLOW); \
	grep -q '^pages_per_tick = 64$$' $(DEDUP_SLOW) && $(TOOLS) run $(DEDUP_SLOW) && \
	$(TOOLS) compare $$fast target/uvmhyp/runs/latest
	TOOLS=$(TOOLS) tools/swapbench.sh
	cargo bench -p vm --bench fault --bench dedup -- --warm-up-time 1 --measurement-time 3

# Linux guests (issue 8). The kernel and busybox come from Debian 12's arm64 packages (cached in
# target/linux/deb; `rm -r target/linux` to take a newer kernel); the initramfs is built by our
# own recipe in guest/linux/ (see mkinitramfs.sh).
LINUX := target/linux

linux-artifacts: $(LINUX)/Image $(LINUX)/initramfs.cpio.gz

$(LINUX)/Image $(LINUX)/busybox &: guest/linux/fetch.sh
	guest/linux/fetch.sh $(LINUX)

$(LINUX)/initramfs.cpio.gz: $(LINUX)/busybox guest/linux/mkinitramfs.sh guest/linux/init guest/linux/memwork.c
	guest/linux/mkinitramfs.sh $(LINUX)/busybox $@

# The kernel booted by QEMU itself at EL1: the boot marker, the workload's PASS lines, a clean
# poweroff, a bad command line handled; wall and -icount times to the marker (issue 8, point 10's
# "direct" side); then booted on the device tree and initrd placement of hyp's guest_fdt and
# linux_image (the host example hyp/examples/guest_dtb.rs).
linux-direct: setup linux-artifacts
	guest/linux/check-direct.sh $(LINUX)

# VMS Debian Linux VMs (2 vCPUs, 256 MiB, the 64 MiB workload each) at once under uvmhyp on
# -smp 4: the `linux` scenario's VMs, VMS of them (default 2).
VMS ?= 2
linux: build linux-artifacts
	guest/linux/scenario.sh $(VMS) > $(LINUX)/linux-$(VMS).toml
	$(TOOLS) run $(LINUX)/linux-$(VMS).toml
