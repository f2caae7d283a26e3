#!/usr/bin/env bash
# End-to-end tests of the web console in a real browser: Debian's headless Chromium, driven by
# playwright-core (pinned in package-lock.json; its own browser download is never used),
# against a real `tocsin serve`. Builds nothing: give it the `tocsin` binary.
#
#   bash tests/console/run.sh target/debug/tocsin
#
# Installs what it needs: chromium with apt-get when /usr/bin/chromium is missing, and the
# npm packages with `npm ci`. Starts the server on a fresh data directory and a free loopback
# port, as a new user would (its first start creates the owner, with TOCSIN_OWNER_PASSWORD), runs
# console.test.js, which saves its screenshots to target/console-screenshots/ (or, with
# UPDATE_SCREENSHOTS=1, over the README's in docs/screenshots/, to be committed), and always
# stops the server. Test runs thus leave the working tree as they found it.
#
# A tool that cannot be installed is a skip on a developer's machine and a failure under
# CI=true: CI must never pass by not running the test.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: bash tests/console/run.sh PATH/TO/tocsin" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="$1"
[[ "$bin" == /* ]] || bin="$PWD/$bin"
if [[ ! -x "$bin" ]]; then
  echo "console: $1 is not an executable tocsin binary (build it with cargo build -p tocsin)" >&2
  exit 2
fi

unavailable() {
  if [[ "${CI:-}" == "true" ]]; then
    echo "console: FAILED: $1 (CI=true: this test must run in CI)" >&2
    exit 1
  fi
  echo "console: SKIPPED: $1" >&2
  exit 0
}

apt_install() {
  if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    return 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

chromium="${TOCSIN_TEST_CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$chromium" ]]; then
  echo "console: $chromium is missing; installing Debian's chromium" >&2
  apt_install chromium fonts-dejavu-core || unavailable "cannot install chromium with apt-get (run as root on Debian, or set TOCSIN_TEST_CHROMIUM)"
  [[ -x "$chromium" ]] || unavailable "apt-get installed chromium but $chromium does not exist"
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "console: node or npm is missing; installing Debian's nodejs and npm" >&2
  apt_install nodejs npm || unavailable "cannot install node and npm with apt-get"
fi
# playwright-core needs Node 20 or newer.
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
  unavailable "node $(node --version) is too old; playwright-core needs Node 20 or newer"

# Fails loudly: a registry or network problem is not a reason to report success.
if ! (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
  echo "console: FAILED: npm ci in $here failed" >&2
  exit 1
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/tocsin-console.XXXXXX")"
server_pid=""
stop_server() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
cleanup() {
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# This run is self-contained: nothing from a developer's environment points it elsewhere.
unset TOCSIN_CONFIG TOCSIN_DATABASE_URL TOCSIN_PUBLIC_URL TOCSIN_REGIONS TOCSIN_SECRET_FILE \
  TOCSIN_LISTEN TOCSIN_DATA_DIR TOCSIN_OWNER_PASSWORD

owner_email="owner@localhost"
owner_password="console-test-$(node -e 'process.stdout.write(require("crypto").randomBytes(9).toString("hex"))')"

url=""
for attempt in 1 2 3; do
  port="$(node -e 'const s = require("net").createServer(); s.listen(0, "127.0.0.1", () => { process.stdout.write(String(s.address().port)); s.close(); })')"
  data="$work/data$attempt"
  log="$work/server$attempt.log"
  # The first start creates the owner with this password (for the console) and a first key
  # in owner-token (for the test's API checks).
  TOCSIN_OWNER_PASSWORD="$owner_password" "$bin" serve --listen "127.0.0.1:$port" --data-dir "$data" >"$log" 2>&1 &
  server_pid=$!
  if node - "http://127.0.0.1:$port" "$server_pid" <<'EOF'
const [base, pid] = process.argv.slice(2);
const deadline = Date.now() + 30000;
(async () => {
  while (Date.now() < deadline) {
    try { process.kill(Number(pid), 0); } catch (_) { process.exit(1); }
    try { if ((await fetch(base + "/healthz")).ok) process.exit(0); } catch (_) {}
    await new Promise((r) => setTimeout(r, 100));
  }
  process.exit(1);
})();
EOF
  then
    url="http://127.0.0.1:$port"
    break
  fi
  echo "console: the server did not become healthy on port $port (attempt $attempt); its log:" >&2
  cat "$log" >&2
  stop_server
done
if [[ -z "$url" ]]; then
  echo "console: FAILED: could not start $bin serve" >&2
  exit 1
fi

if [[ "${UPDATE_SCREENSHOTS:-}" == 1 ]]; then
  shots="$root/docs/screenshots"
else
  target_dir="${CARGO_TARGET_DIR:-target}"
  [[ "$target_dir" = /* ]] || target_dir="$root/$target_dir"
  shots="$target_dir/console-screenshots"
fi
mkdir -p "$shots"
set +e
TOCSIN_URL="$url" TOCSIN_OWNER_EMAIL="$owner_email" TOCSIN_OWNER_PASSWORD="$owner_password" \
  TOCSIN_OWNER_TOKEN_FILE="$data/owner-token" TOCSIN_TEST_CHROMIUM="$chromium" \
  TOCSIN_SCREENSHOTS="$shots" TOCSIN_TEST_SUMMARY="$work/summary" \
  node --test-reporter=spec "$here/console.test.js"
status=$?
set -e
if [[ -s "$work/summary" ]]; then
  cat "$work/summary"
elif [[ $status -eq 0 ]]; then
  echo "console: FAILED: the test script ended without running its steps" >&2
  status=1
fi
if [[ $status -ne 0 ]]; then
  echo "console: console.test.js failed (exit $status); the server's log:" >&2
  tail -n 200 "$log" >&2
fi
exit "$status"
