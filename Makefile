# The whole test suite, as CI runs it. Installs what the tests need when it is missing.
.PHONY: test deps build bench

test: deps
	go vet ./...
	test -z "$$(gofmt -l .)" || (gofmt -l . && echo "gofmt needed" && exit 1)
	go test -race -count=1 -timeout 14m ./...

# Debian packages the tests use, installed when missing: minisign (signature interoperability);
# postgresql, whose initdb and postgres (in /usr/lib/postgresql/VERSION/bin, off PATH) the
# PostgreSQL store's tests run throw-away clusters with, unless FERRY_TEST_POSTGRES names a server;
# python3-aiosmtpd, the SMTP server the notifier's email test mails through (Debian's python3,
# /usr/bin/python3, which another python3 first on PATH may hide); prometheus, whose promtool checks
# the /metrics exposition and whose server scrapes a real Ferry server; chromium, the headless
# browser the web interface's tests drive; monitoring-plugins-basic, the Nagios plugins
# (check_disk, check_tcp, check_load, check_http in /usr/lib/nagios/plugins, off PATH) the check
# runner's tests run.
DEB_TOOLS := minisign

deps:
	@command -v go >/dev/null || (echo "Go is required: https://go.dev/doc/install" && exit 1)
	@missing=""; for t in $(DEB_TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	[ -n "$$FERRY_TEST_POSTGRES" ] || command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || python3 -c 'import aiosmtpd' 2>/dev/null || missing="$$missing python3-aiosmtpd"; \
	command -v promtool >/dev/null && command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing="$$missing chromium"; \
	[ -x /usr/lib/nagios/plugins/check_disk ] || missing="$$missing monitoring-plugins-basic"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

build:
	go build -o bin/ferry ./cmd/ferry

bench:
	go run ./bench/loadgen -agents 1000
	go run ./bench/loadgen -agents 10000
	go run ./bench/blobs -mib 1024
	go run ./bench/wan
