# Isthmus build, test and demo entry points. `make test` and `make demo` are
# all a fresh Debian machine needs.

GO      ?= go
BIN     := $(CURDIR)/bin
GNMIC   := $(CURDIR)/tools/gnmic/gnmic
# Packet programs are compiled by bpf2go with Debian bookworm's clang-14 and
# llvm-strip-14, pinned in dataplane/generate.go.
# Privileged tests (namespaces, eBPF) run as root; CI is root.
TEST_TIMEOUT ?= 28m
# `make test` has three lanes: the main lane, the race lane and the fuzz
# lane. The first two run side by side as two sides, each one package at a
# time (test-side-a, test-side-b), then the fuzz lane. On 2 cores the tests
# leave about half the CPU to waiting on daemons, clusters and timers:
# warm, on the AMD EPYC machine, the sides took 12.5-13 min together
# where the lanes one after the other took 16.5 (see the README).
#
# The race lane: these packages' tests with -race, one package at a time
# (-p 1): under the detector two of them side by side on 2 cores starved
# the BGP tests' 30 s waits (-p 2: 227 s and a timeout; -p 1: 306 s, busy
# machine). In make test's sides they run beside a main-lane package, and
# at the end kube/... beside the rest: three runs passed that way. Their tests run there
# only, the race detector's checks on top of every assertion, except nos's
# (ALSO_MAIN), whose allocation bounds are tighter without the detector,
# and RACE_SKIP.
# It covers every package whose concurrent code runs inside its own test
# binary: nos, server, bgp, cni and the Kubernetes controller (kube:
# informers, workers and leader election against a real kube-apiserver and
# etcd; 3-3.5 min under -race), and the small unprivileged rest (kube/...,
# internal/..., gen, tools/pathdoc, cmd/isthmus-controller,
# testbed/k8s/podserver: ~20 s). Some of these tests need root here as in
# the main lane (bgp's FRR peers, cni's pod namespaces, kube's isthmusd
# nodes); CI is root.
# It leaves to the main lane the packages whose tests are privileged
# throughout and do their work mostly outside the test binary:
# dataplane (eBPF programs in the kernel; 7 min under -race at load 8-12,
# no race found, too long for the 20-minute budget), testbed, testbed/k8s and
# cmd/isthmus-testbed (namespaces, FRR, a containerd cluster), cmd/isthmusd
# (bpffs, eBPF, the daemon as a subprocess) and deploy (containerd, a node
# namespace; helm, make images and the controller as subprocesses: 60 s
# under -race for little more than its own API calls).
RACE_PKGS ?= ./nos/... ./server/... ./bgp/... ./cni/... ./kube/... \
	./internal/... ./gen ./tools/pathdoc ./cmd/isthmus-controller \
	./testbed/k8s/podserver
# Race-lane packages whose tests the main lane runs too.
ALSO_MAIN ?= ./nos
# GoBGP v4.8.0 races with itself when a graceful-restart peer goes down:
# AdjRib.StaleAll marks the peer's paths stale (Path.MarkStale) on its FSM
# goroutine while WatchEvent reads them (Path.IsStale) on another. These two
# tests take a graceful-restart peer down; the race lane runs them first,
# without the detector.
RACE_SKIP ?= ^(TestGracefulRestart|TestStaleRoutesTime)$$
# The main lane starts these first, the longest (go test starts packages in
# the order it is given them), so that `make test-main`'s two slots end
# close together: testbed/k8s 4-4.5 min, dataplane 5.5-7, testbed 2.5.
MAIN_FIRST ?= ./testbed/k8s ./dataplane ./testbed ./deploy
# The sides of `make test`: side A runs the main lane but MAIN_SIDE_B, then
# RACE_SIDE_A with -race (10 + 3.5 min on the AMD EPYC machine); side B
# runs MAIN_SIDE_B, RACE_SKIP without the detector, then the rest of the
# race lane (7.5 + 0.5 + 5.5 min).
MAIN_SIDE_B ?= ./dataplane
RACE_SIDE_A ?= ./kube/...
export RACE_PKGS ALSO_MAIN MAIN_FIRST
# How long `make test` fuzzes each fuzz target (tools/fuzz.sh, docs/fuzzing.md).
FUZZTIME ?= 15s
# Image tag of `make images`: the chart's appVersion, the tag it runs.
VERSION ?= $(shell sed -n 's/^appVersion: *"\(.*\)"/\1/p' deploy/isthmus/Chart.yaml)

.PHONY: all deps gen build gnmic images kube-bins test test-main test-race test-side-a test-side-b test-fuzz vet bench demo demo-k8s clean

all: build

## deps: install missing system packages (clang, llvm, libbpf-dev, FRR, iproute2, ethtool, iperf3)
deps:
	@tools/deps.sh

## gen: regenerate ygot structs (gen/) and bpf2go output (dataplane/)
gen: deps
	$(GO) generate ./...

## build: build isthmusd, isthmus-cni, isthmus-testbed and gnmic into bin/
build:
	$(GO) build -o $(BIN)/ ./cmd/...
	$(MAKE) --no-print-directory gnmic

## gnmic: build (or reuse) the pinned gnmic in a cache keyed by tools/gnmic's files and link tools/gnmic/gnmic to it
gnmic:
	bin=$$(tools/gnmic/build.sh) && ln -sfn "$$bin" $(GNMIC)

vet:
	$(GO) vet ./...

## images: write image archives (docker load / ctr -n k8s.io images import) of isthmusd (with isthmus-cni), isthmus-cni and isthmus-controller into bin/images/
images:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(BIN)/static/ ./cmd/isthmusd ./cmd/isthmus-cni ./cmd/isthmus-controller
	cd tools/images && $(GO) run . build -out $(BIN)/images -version $(VERSION) \
		isthmusd=$(BIN)/static/isthmusd,$(BIN)/static/isthmus-cni \
		isthmus-cni=$(BIN)/static/isthmus-cni \
		isthmus-controller=$(BIN)/static/isthmus-controller

## kube-bins: build (or reuse) etcd, the Kubernetes v1.37.2 programs and the CNI loopback plugin for the tests, cached by tools/kube/go.sum
kube-bins:
	@tools/kube/build.sh >/dev/null

## test: install what tests need, run every test (privileged ones need root): the main and race lanes side by side, then the fuzz lane
test: deps vet kube-bins gnmic
	$(MAKE) --no-print-directory -j2 test-side-a test-side-b
	$(MAKE) --no-print-directory test-fuzz

## test-main: run the tests of every package the race lane leaves (and ALSO_MAIN's), MAIN_FIRST first
test-main:
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $$(tools/lanes.sh main)

## test-race: run RACE_SKIP without the race detector, then RACE_PKGS' tests with it; a data race fails
test-race:
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -run '$(RACE_SKIP)' ./bgp
	$(GO) test -race -p 1 -count=1 -timeout $(TEST_TIMEOUT) -skip '$(RACE_SKIP)' $(RACE_PKGS)

# The two sides of `make test` (above MAIN_SIDE_B), one package at a time each.
test-side-a:
	$(GO) test -p 1 -count=1 -timeout $(TEST_TIMEOUT) $$(tools/lanes.sh main | grep -vxF "$$($(GO) list $(MAIN_SIDE_B))")
	$(GO) test -race -p 1 -count=1 -timeout $(TEST_TIMEOUT) -skip '$(RACE_SKIP)' $(RACE_SIDE_A)

test-side-b:
	$(GO) test -p 1 -count=1 -timeout $(TEST_TIMEOUT) $(MAIN_SIDE_B)
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -run '$(RACE_SKIP)' ./bgp
	$(GO) test -race -p 1 -count=1 -timeout $(TEST_TIMEOUT) -skip '$(RACE_SKIP)' $$(tools/lanes.sh race | grep -vxF "$$($(GO) list $(RACE_SIDE_A))")

## test-fuzz: fuzz every Go fuzz target of the module for FUZZTIME each
test-fuzz:
	tools/fuzz.sh $(FUZZTIME)

## bench: run every benchmark once (results belong in docs/benchmarks.md)
bench: deps
	$(GO) test -run '^$$' -bench . -benchmem -timeout 60m ./...

## demo: build, bring the testbed up, run the scenarios, show telemetry, tear down (KEEP=1 leaves it up; K8S=1 then runs demo-k8s)
demo: deps build
	$(BIN)/isthmus-testbed demo $(if $(KEEP),--keep)
	$(if $(K8S),$(MAKE) --no-print-directory demo-k8s)

## demo-k8s: the testbed's cloud VPC as a Kubernetes cluster (kubelet + containerd on c1, c2), the kubectl scenarios, teardown (KEEP=1 leaves it up)
demo-k8s: deps build kube-bins images
	$(GO) run ./testbed/k8s/demo --bin $(BIN) --gnmic $(GNMIC) --images $(BIN)/images $(if $(KEEP),--keep)

clean:
	rm -rf $(BIN) $(GNMIC)
