# The whole test suite, as CI runs it. Installs what the tests need when it is missing.
.PHONY: test deps build bench

test: deps
	go vet ./...
	test -z "$$(gofmt -l .)" || (gofmt -l . && echo "gofmt needed" && exit 1)
	go test -race -count=1 -timeout 14m ./...

# Debian packages later tests need (PostgreSQL, Chromium, monitoring plugins) are installed
# here when the tests that use them land; today the suite needs only Go.
deps:
	@command -v go >/dev/null || (echo "Go is required: https://go.dev/doc/install" && exit 1)

build:
	go build -o bin/ferry ./cmd/ferry

bench:
	go run ./bench/loadgen -agents 1000
	go run ./bench/loadgen -agents 10000
